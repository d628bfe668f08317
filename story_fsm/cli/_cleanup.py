"""``story-fsm delete`` and ``prune``: remove workflows from the database, for good.

Both ask first on a terminal and need ``--yes`` anywhere else, so that a script never deletes
by accident and an operator sees what is about to go.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from typing import Annotated

import typer

from story_fsm.cli._app import app
from story_fsm.cli._options import DEFAULT_DATABASE_URL, DbOption, JsonOption
from story_fsm.cli._output import (
    print_json,
    shown,
    stderr_console,
    stdout_console,
    write_stderr,
)
from story_fsm.cli._store import open_store
from story_fsm.errors import InputValidationError, WorkflowLeasedError, WorkflowNotFoundError
from story_fsm.models import WorkflowSummary
from story_fsm.store.sql import utcnow

__all__ = ["delete", "parse_age", "prune"]

YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask (needed when stdin is not a terminal).")
]

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
#: The longest age accepted: a hundred years.
_MAX_AGE = timedelta(days=36_525)


def parse_age(text: str) -> timedelta:
    """Read an age such as ``30d``, ``12h``, ``90m``, ``45s`` or ``2w`` (one number, one unit).

    Raises:
        InputValidationError: Anything else, or more than a hundred years.

    >>> parse_age("36h")
    datetime.timedelta(days=1, seconds=43200)
    """
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise InputValidationError(
            f"--older-than must be a number and a unit (s, m, h, d or w), like 30d; got {text!r}"
        )
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds > _MAX_AGE.total_seconds():  # compared first: timedelta overflows far later
        raise InputValidationError(f"--older-than must be at most 100 years, got {text!r}")
    return timedelta(seconds=seconds)


def _confirmed(question: str, *, yes: bool) -> bool:
    """True when the user agreed (or gave ``--yes``); refuse to ask a stdin that cannot answer."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InputValidationError("stdin is not a terminal to confirm on; pass --yes to go on")
    # Asked on stderr and read from stdin by hand: click's confirm(err=True) still writes
    # the space after the prompt to stdout, where --json consumers read.
    write_stderr(f"{question} [y/N]: ")
    return sys.stdin.readline().strip().lower() in ("y", "yes")


@app.command()
def delete(
    story_id: Annotated[
        str, typer.Argument(help="The workflow to delete, history included.", show_default=False)
    ],
    db: DbOption = DEFAULT_DATABASE_URL,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Delete one workflow and its whole history (refused while a live process runs it)."""
    with open_store(db, must_exist=True, migrate=False) as store:
        row = store.load_row(story_id)
        if row is None:
            raise WorkflowNotFoundError(story_id)
        # Refused before the question: a "y" could not be acted on. The deletion checks the
        # lease again, for a run that claims the story while the user answers.
        _refuse_if_held(row.summary)
        state = row.summary.state.name
        asked = f"Delete workflow {shown(story_id)!r} ({state}, {row.summary.seq + 1} rows)?"
        deleted = _confirmed(asked, yes=yes)
        if deleted:
            store.delete_workflow(story_id)
    if not deleted:
        stderr_console().print("nothing deleted")
    if as_json:  # declined as well: a --json reader always gets its object
        print_json({"story_id": story_id, "deleted": deleted, "state": row.summary.state.value})
    elif deleted:
        stdout_console().print(f"deleted workflow {shown(story_id)!r} ({state})")


def _refuse_if_held(summary: WorkflowSummary) -> None:
    """Raise :class:`WorkflowLeasedError` when a live process holds *summary*'s workflow."""
    owner, expires = summary.lease_owner, summary.lease_expires_at
    # As the deletion judges a lease: held until the moment it expires.
    if owner is not None and expires is not None and expires >= utcnow():
        raise WorkflowLeasedError(summary.story_id, owner, expires)


@app.command()
def prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Finished longer ago than this: 30d, 12h, 90m, 45s or 2w.",
            show_default=False,
        ),
    ],
    state: Annotated[
        str | None,
        typer.Option(metavar="STATE", help="Only complete or only failed ones (default: both)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")
    ] = False,
    db: DbOption = DEFAULT_DATABASE_URL,
    yes: YesOption = False,
    as_json: JsonOption = False,
) -> None:
    """Delete the finished workflows (COMPLETE, FAILED) that ended longer ago than --older-than."""
    before = utcnow() - parse_age(older_than)
    if state is not None:  # as list's --state: any case (COMPLETE, as status prints it)
        state = state.lower()
    with open_store(db, must_exist=True, migrate=False) as store:
        matched = store.prune_workflows(before, state=state, dry_run=True)
        which = f"{state} " if state else "finished "
        asked = f"Delete {matched} {which}workflow(s) ended before {_at(before)}, history included?"
        asking = not dry_run and matched > 0
        go = asking and _confirmed(asked, yes=yes)
        deleted = store.prune_workflows(before, state=state) if go else 0
    declined = asking and not go
    if declined:
        stderr_console().print("nothing deleted")
    if as_json:  # declined as well: a --json reader always gets its object
        print_json(
            {
                "matched": matched,
                "deleted": deleted,
                "dry_run": dry_run,
                "finished_before": _at(before),
            }
        )
    elif not declined:
        done = f"would delete {matched}" if dry_run else f"deleted {deleted}"
        stdout_console().print(f"{done} {which}workflow(s) ended before {_at(before)}")


def _at(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
