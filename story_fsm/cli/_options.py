"""Options shared by several commands, declared once so they read the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "DATABASE_ENV",
    "DEFAULT_DATABASE_URL",
    "DbOption",
    "JsonOption",
    "OutputOption",
    "QuietOption",
]

#: The environment variable naming the database when ``--db`` is not given.
DATABASE_ENV = "STORY_FSM_DATABASE_URL"

#: The database used when neither ``--db`` nor ``STORY_FSM_DATABASE_URL`` is set.
DEFAULT_DATABASE_URL = "sqlite:///story_fsm.db"

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar=DATABASE_ENV,
        show_envvar=True,
        metavar="URL",
        help=(
            "Database URL: sqlite:///FILE (?timeout=SECONDS: how long a write waits for "
            "the file's lock, default 30) or postgresql://user@host/db."
        ),
        show_default=True,
    ),
]

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the data as JSON on stdout, and nothing else.")
]

OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Write to this file instead of stdout.", show_default=False
    ),
]

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display on stderr.")]
