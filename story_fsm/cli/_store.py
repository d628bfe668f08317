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
from story_fsm.store.engine import (
    empty_sqlite_file,
    in_memory_sqlite,
    make_engine,
    missing_sqlite_file,
)
from story_fsm.store.sql import WorkflowStateManager

__all__ = ["display_url", "open_store", "refuse_in_memory"]


def display_url(url: str) -> str:
    """Return *url* fit to print: the password, if any, masked."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return url


def refuse_in_memory(url: str) -> None:
    """Refuse an in-memory SQLite URL (``sqlite://``): it is gone when the command ends.

    A workflow submitted there could never be run, one upgraded never opened again, and a
    read or a worker would always find it empty (each process has its own).

    Raises:
        InputValidationError: *url* names an in-memory SQLite database.
    """
    if in_memory_sqlite(url):
        raise InputValidationError(
            f"{display_url(url)!r} is an in-memory database, gone when this command ends: "
            "give a file (sqlite:///story_fsm.db) or a PostgreSQL URL"
        )


@contextmanager
def open_store(
    url: str, *, must_exist: bool, migrate: bool, in_memory_ok: bool = False
) -> Iterator[WorkflowStateManager]:
    """Open the store at *url* for one command, and close it afterwards.

    Args:
        url: The database URL.
        must_exist: Refuse a SQLite file that does not exist (instead of creating it).
        migrate: Create or upgrade the schema as needed; when False an old schema raises
            ``SchemaVersionError`` naming ``story-fsm db upgrade``.
        in_memory_ok: Accept an in-memory SQLite URL (``run``, whose result is printed).

    Raises:
        InputValidationError: A bad URL, a missing SQLite file when *must_exist*, or an
            in-memory one unless *in_memory_ok*.
        SchemaVersionError: Not at head when *migrate* is False; an empty (0-byte) SQLite file
            is refused so without being opened, which would write to it.
    """
    if not in_memory_ok:
        refuse_in_memory(url)
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
