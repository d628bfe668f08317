"""``story-fsm status|history|list|diagram``: read what the database holds (never write)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from story_fsm.cli._app import app
from story_fsm.cli._options import DEFAULT_DATABASE_URL, DbOption, JsonOption
from story_fsm.cli._output import print_json, stderr_console, stdout_console
from story_fsm.cli._render import history_table, status_table, workflows_table
from story_fsm.cli._store import display_url, open_store
from story_fsm.errors import InputValidationError, WorkflowNotFoundError
from story_fsm.states import WorkflowState

__all__ = ["DiagramFormat", "diagram", "history", "list_workflows", "status"]

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
def history(
    story_id: StoryIdArgument, db: DbOption = DEFAULT_DATABASE_URL, as_json: JsonOption = False
) -> None:
    """List every stored step of a workflow: transitions and failed attempts, in order."""
    with open_store(db, must_exist=True, migrate=False) as store:
        records = store.history(story_id)
    if as_json:
        print_json([record.to_dict() for record in records])
    else:
        stdout_console().print(history_table(story_id, records))


@app.command("list")
def list_workflows(
    state: Annotated[
        WorkflowState | None,
        typer.Option(
            case_sensitive=False, help="Only workflows in this state.", show_default=False
        ),
    ] = None,
    db: DbOption = DEFAULT_DATABASE_URL,
    as_json: JsonOption = False,
) -> None:
    """List the stored workflows, oldest first."""
    with open_store(db, must_exist=True, migrate=False) as store:
        summaries = store.list_workflows(state)
    if as_json:
        print_json([summary.to_dict() for summary in summaries])
    elif not summaries:
        which = f" in state {state.value}" if state else ""
        stderr_console().print(f"no workflows{which} in {display_url(db)}")
    else:
        stdout_console().print(workflows_table(summaries))


@app.command()
def diagram(
    story_id: StoryIdArgument,
    fmt: Annotated[
        DiagramFormat,
        typer.Option("--format", "-f", case_sensitive=False, help="mmd (Mermaid), dot or svg."),
    ] = DiagramFormat.MMD,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file instead of stdout.", show_default=False
        ),
    ] = None,
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Draw one workflow's path through the state machine (svg needs Graphviz's dot)."""
    from story_fsm.diagrams import workflow_diagram

    with open_store(db, must_exist=True, migrate=False) as store:
        drawing = workflow_diagram(store, story_id, fmt.value)
    text = drawing if drawing.endswith("\n") else drawing + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputValidationError(f"cannot write {str(output)!r}: {exc.strerror}") from None
    stderr_console().print(f"wrote {output}")
