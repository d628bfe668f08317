"""Opening the store a command works on, with checks that save the user a silent mistake.

A command on an existing workflow (status, show, history, list, diagram, resume, retry) must not
create an empty SQLite file because of a typo in ``--db``; it says the file is missing
instead. run, submit, resume and worker migrate an old schema first; the others (the read
commands, and retry, which only re-queues) do not: an old schema is reported with the command
that upgrades it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from story_fsm.errors import InputValidationError, SchemaVersionError
from story_fsm.store.engine import empty_sqlite_file, make_engine, missing_sqlite_file
from story_fsm.store.sql import WorkflowStateManager

__all__ = ["display_url", "open_store"]


def display_url(url: str) -> str:
    """Return *url* fit to print: the password, if any, masked."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return url


@contextmanager
def open_store(url: str, *, must_exist: bool, migrate: bool) -> Iterator[WorkflowStateManager]:
    """Open the store at *url* for one command, and close it afterwards.

    Args:
        url: The database URL.
        must_exist: Refuse a SQLite file that does not exist (instead of creating it).
        migrate: Create or upgrade the schema as needed; when False an old schema raises
            ``SchemaVersionError`` naming ``story-fsm db upgrade``.

    Raises:
        InputValidationError: A bad URL, or a missing SQLite file when *must_exist*.
        SchemaVersionError: Not at head when *migrate* is False; an empty (0-byte) SQLite file
            is refused so without being opened, which would write to it.
    """
    if must_exist and (path := missing_sqlite_file(url)) is not None:
        raise InputValidationError(
            f"no database file at {str(path)!r}; check --db or STORY_FSM_DATABASE_URL"
        )
    if not migrate and (path := empty_sqlite_file(url)) is not None:
        make_engine(url).dispose()  # a bad URL (?timeout=x, a driver not installed) comes first
        raise SchemaVersionError(
            f"the database {str(path)!r} has no story_fsm schema (the file is empty); "
            "run 'story-fsm db upgrade'"
        )
    with WorkflowStateManager(url, auto_migrate=migrate) as store:
        yield store
