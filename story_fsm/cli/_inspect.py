"""``story-fsm status|show|history|list|diagram``: read what the database holds (never write)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from story_fsm.cli._app import app
from story_fsm.cli._errors import FollowedWorkflowDeleted
from story_fsm.cli._options import DEFAULT_DATABASE_URL, DbOption, JsonOption, OutputOption
from story_fsm.cli._output import (
    check_stdout_reader,
    json_text,
    print_json,
    shown,
    stderr_console,
    stdout_console,
    write_stdout,
)
from story_fsm.cli._render import history_line, history_table, status_table, workflows_table
from story_fsm.cli._store import display_url, open_store
from story_fsm.errors import InputValidationError, WorkflowNotFoundError
from story_fsm.models import WorkflowResult
from story_fsm.states import WorkflowState

if TYPE_CHECKING:
    from story_fsm._records import WorkflowRow
    from story_fsm.models import TransitionRecord
    from story_fsm.store.sql import WorkflowStateManager

__all__ = ["DiagramFormat", "diagram", "history", "list_workflows", "show", "status", "story_text"]

#: Seconds between two looks of ``history --follow`` when no ``--interval`` is given.
_FOLLOW_INTERVAL = 1.0

StoryIdArgument = Annotated[str, typer.Argument(help="The story's id.", show_default=False)]


class DiagramFormat(StrEnum):
    """The formats ``story-fsm diagram`` writes (``story_fsm.diagrams.FORMATS``)."""

    MMD = "mmd"
    DOT = "dot"
    SVG = "svg"


@app.command()
def status(
    story_id: StoryIdArgument, db: DbOption = DEFAULT_DATABASE_URL, as_json: JsonOption = False
) -> None:
    """Show where a workflow stands: state, iteration, last score, cost, lease, times."""
    with open_store(db, must_exist=True, migrate=False) as store:
        row = store.load_row(story_id)
    if row is None:
        raise WorkflowNotFoundError(story_id)
    if as_json:
        print_json(row.summary.to_dict())
    else:
        stdout_console().print(status_table(row.summary))


@app.command()
def show(
    story_id: StoryIdArgument,
    initial: Annotated[
        bool,
        typer.Option("--initial", help="The story as it was submitted, not as it is now."),
    ] = False,
    output: OutputOption = None,
    db: DbOption = DEFAULT_DATABASE_URL,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the whole result as JSON (both versions, every iteration), as run does.",
        ),
    ] = False,
) -> None:
    """Print a workflow's story: its title line, then its script (polished, once complete).

    The text is a story file as 'run' reads it, so 'story-fsm show s-42 > s-42.txt' gives a
    file that can be run again. Not yet COMPLETE, it is the latest committed version (a note
    on stderr says so).
    """
    if as_json and initial:
        raise InputValidationError(
            "--json prints the initial and the current version: drop --initial"
        )
    with open_store(db, must_exist=True, migrate=False) as store:
        found = store.load_state(story_id) if as_json else store.load_row(story_id)
    if found is None:
        raise WorkflowNotFoundError(story_id)
    if isinstance(found, WorkflowResult):
        _emit(json_text(found.to_dict()), output)
        return
    row = found
    text = story_text(row, initial=initial)
    state = row.summary.state
    if not initial and state is not WorkflowState.COMPLETE:
        stderr_console().print(
            f"note: {shown(story_id)} is {state.name}, not COMPLETE: this is its version as of "
            f"step {row.summary.seq}"
        )
    if output is None and stdout_console().is_terminal:
        # As ``ls`` does: an escape sequence in a model's text must not act on the terminal;
        # a pipe or a file gets the text as it is stored.
        text = shown(text)
    _emit(text, output)


def story_text(row: WorkflowRow, *, initial: bool = False) -> str:
    """The story of *row* as a story file holds it: the title, a blank line, the script.

    The current version, or the submitted one with *initial*. ``run`` reads such a file back
    as the same title and script (unless the title itself has a line break, which only the
    API or a model can give it: the JSON output keeps it exact).
    """
    title, script = (
        (row.initial_title, row.initial_script) if initial else (row.summary.title, row.script)
    )
    end = "" if script.endswith("\n") else "\n"
    return f"{title}\n\n{script}{end}"


@app.command()
def history(
    story_id: StoryIdArgument,
    db: DbOption = DEFAULT_DATABASE_URL,
    as_json: JsonOption = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help=(
                "One line per record (--json: one JSON object per line), then each new one "
                "as it is committed, until the workflow is COMPLETE or FAILED."
            ),
        ),
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option(
            min=0.05,
            max=3600,
            help=f"With --follow: seconds between two looks (default {_FOLLOW_INTERVAL:g}).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """List every stored step of a workflow: transitions and failed attempts, in order."""
    # None tells an --interval the user gave from none: given without --follow, it would be
    # ignored without a word.
    if interval is not None and not follow:
        raise InputValidationError(
            "--interval needs --follow (it is the wait between two looks): add --follow, "
            "or drop --interval"
        )
    with open_store(db, must_exist=True, migrate=False) as store:
        if follow:
            wait = _FOLLOW_INTERVAL if interval is None else interval
            _follow(store, story_id, wait, as_json=as_json)
            return
        records = store.history(story_id)
    if as_json:
        print_json([record.to_dict() for record in records])
    else:
        stdout_console().print(history_table(story_id, records))


def _follow(store: WorkflowStateManager, story_id: str, interval: float, *, as_json: bool) -> None:
    """Print the records of *story_id* as they are committed, until it is finished."""
    last: int | None = None
    started: datetime | None = None
    while True:
        row = store.load_row(story_id)
        if row is None and started is None:
            raise WorkflowNotFoundError(story_id)
        # Deleted, or deleted and started again: its start time tells the new workflow
        # (whose seq starts at 0 again) from the one followed so far.
        if row is None or started not in (None, row.summary.started_at):
            raise FollowedWorkflowDeleted(story_id)
        started = row.summary.started_at
        # The summary is read first: records past its seq may be printed already, and the
        # workflow is only done once every record up to its finishing one is out.
        if last is None or row.summary.seq > last:
            try:
                records = store.history(story_id, after=last)
            except WorkflowNotFoundError:
                raise FollowedWorkflowDeleted(story_id) from None
            for record in records:
                write_stdout(_follow_line(record, as_json=as_json))
                last = record.seq
        # A record past the summary's seq was committed after the summary was read (a
        # FAILED workflow retried or resumed since): the summary is read again, not trusted.
        if row.summary.state.is_terminal and last == row.summary.seq:
            return
        check_stdout_reader()
        time.sleep(interval)


def _follow_line(record: TransitionRecord, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(record.to_dict(), ensure_ascii=False) + "\n"
    return history_line(record) + "\n"


@app.command("list")
def list_workflows(
    state: Annotated[
        WorkflowState | None,
        typer.Option(
            case_sensitive=False, help="Only workflows in this state.", show_default=False
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            "-n",
            min=1,
            help="At most this many workflows.",
            show_default=False,
        ),
    ] = None,
    offset: Annotated[
        int,
        typer.Option(min=0, help="Skip this many first (paging with --limit)."),
    ] = 0,
    newest: Annotated[
        bool, typer.Option("--newest", help="Latest started first (--newest -n 20: the 20 latest).")
    ] = False,
    db: DbOption = DEFAULT_DATABASE_URL,
    as_json: JsonOption = False,
) -> None:
    """List the stored workflows, oldest first (--newest: latest first)."""
    with open_store(db, must_exist=True, migrate=False) as store:
        summaries = store.list_workflows(state, limit=limit, offset=offset, newest_first=newest)
    if as_json:
        print_json([summary.to_dict() for summary in summaries])
    elif not summaries:
        which = f" in state {state.value}" if state else ""
        past = f" past the first {offset}" if offset else ""
        stderr_console().print(f"no workflows{which}{past} in {display_url(db)}")
    else:
        stdout_console().print(workflows_table(summaries))


@app.command()
def diagram(
    story_id: Annotated[
        str | None,
        typer.Argument(
            help="A story's id; omit it to draw the state machine itself.", show_default=False
        ),
    ] = None,
    fmt: Annotated[
        DiagramFormat | None,
        typer.Option(
            "--format",
            "-f",
            case_sensitive=False,
            help="mmd (Mermaid, the default), dot or svg.",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            help="Regenerate the machine's .mmd, .dot and .svg files in this folder (the docs').",
            show_default=False,
        ),
    ] = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Draw one workflow's path, or the state machine itself (svg needs Graphviz's dot)."""
    from story_fsm.diagrams import render_workflow_diagram, workflow_diagram, write_diagrams
    from story_fsm.diagrams._files import unwritable

    if output_dir is not None:
        # It writes all three formats under their fixed names: a format, a file or a story
        # asked for beside it would be silently ignored.
        extra = [
            name
            for name, given in (("STORY_ID", story_id), ("--format", fmt), ("--output", output))
            if given is not None
        ]
        if extra:
            raise InputValidationError(
                f"--output-dir regenerates the machine's .mmd, .dot and .svg files; "
                f"drop {' and '.join(extra)}"
            )
        try:
            written = write_diagrams(output_dir)
        except OSError as exc:
            raise InputValidationError(unwritable(output_dir, exc)) from None
        for path in written:
            stderr_console().print(f"wrote {path}")
        return
    fmt = fmt or DiagramFormat.MMD
    if story_id is None:
        drawing = render_workflow_diagram(fmt.value)
    else:
        with open_store(db, must_exist=True, migrate=False) as store:
            drawing = workflow_diagram(store, story_id, fmt.value)
    _emit(drawing, output)


def _emit(drawing: str, output: Path | None) -> None:
    text = drawing if drawing.endswith("\n") else drawing + "\n"
    if output is None:
        write_stdout(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputValidationError(f"cannot write {str(output)!r}: {exc.strerror}") from None
    stderr_console().print(f"wrote {output}")
