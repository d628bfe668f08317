"""``story-fsm db upgrade|current|downgrade``: the schema's alembic revisions, run from code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from alembic.util import CommandError

from story_fsm.cli._app import db_app
from story_fsm.cli._options import DEFAULT_DATABASE_URL, DbOption, JsonOption
from story_fsm.cli._output import print_json, stdout_console
from story_fsm.cli._store import display_url, refuse_in_memory
from story_fsm.errors import InputValidationError, SchemaVersionError, StoryFSMError
from story_fsm.store import migrate
from story_fsm.store._transactions import translate
from story_fsm.store.engine import (
    absent_sqlite_database,
    empty_sqlite_file,
    make_engine,
    missing_sqlite_file,
)

__all__ = ["current", "downgrade", "upgrade"]


@contextmanager
def _engine(url: str) -> Iterator[sa.Engine]:
    """An engine on *url* whose alembic and driver errors come out as story_fsm's."""
    refuse_in_memory(url)
    engine = make_engine(url)
    try:
        yield engine
    except StoryFSMError:
        raise
    except CommandError as exc:
        raise InputValidationError(f"migration refused: {exc}") from exc
    except AssertionError as exc:
        # alembic asserts, rather than refuses, on some revision strings ('', 'head+1').
        raise InputValidationError("migration refused: not a revision alembic can read") from exc
    except sa.exc.SQLAlchemyError as exc:
        raise translate(exc, None) from exc
    finally:
        engine.dispose()


def _revision_info(url: str, current: str | None) -> dict[str, Any]:
    head = migrate.head_revision()
    return {
        "database": display_url(url),
        "current": current,
        "head": head,
        "up_to_date": current == head,
    }


@db_app.command()
def current(db: DbOption = DEFAULT_DATABASE_URL, as_json: JsonOption = False) -> None:
    """Show the database's schema revision and the newest one this story_fsm ships."""
    unversioned = False
    if absent_sqlite_database(db) is not None:
        revision = None  # asking must not create the file, nor write an empty one
    else:
        with _engine(db) as engine:
            revision = migrate.current_revision(engine)
            if revision is None:
                try:
                    migrate.check_unversioned(engine)
                except SchemaVersionError:
                    unversioned = True
    info = _revision_info(db, revision)
    if as_json:
        print_json(info)
        return
    if info["up_to_date"]:
        state = "up to date"
    elif revision is not None and not migrate.is_known_revision(revision):
        state = "newer than this story_fsm knows; upgrade story_fsm"  # db upgrade cannot help
    elif unversioned:
        state = "story_fsm's tables exist with no revision: made by hand or by something else"
    else:
        state = "run 'story-fsm db upgrade'"
    stdout_console().print(
        f"{info['database']}: revision {revision or 'none'} (head {info['head']}; {state})"
    )


@db_app.command()
def upgrade(
    db: DbOption = DEFAULT_DATABASE_URL,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or upgrade the schema (to the newest revision by default)."""
    with _engine(db) as engine:
        before = migrate.current_revision(engine)
        if before is None:
            migrate.check_unversioned(engine)  # exit 2 with the reason, not a CREATE that fails
        migrate.check_known(before)  # "upgrade story_fsm", not alembic's "can't locate"
        migrate.upgrade(engine, revision)
        after = migrate.current_revision(engine)
    stdout_console().print(f"{display_url(db)}: revision {before or 'none'} → {after or 'none'}")


@db_app.command()
def downgrade(
    revision: Annotated[
        str, typer.Argument(help="Target revision; 'base' drops story_fsm's tables.")
    ],
    db: DbOption = DEFAULT_DATABASE_URL,
) -> None:
    """Downgrade the schema to REVISION ('base' removes every story_fsm table and its data).

    The emptied alembic_version table stays, as alembic leaves it.
    """
    if (path := missing_sqlite_file(db)) is not None:
        raise InputValidationError(f"no database file at {str(path)!r}; nothing to downgrade")
    if (path := empty_sqlite_file(db)) is not None:
        raise InputValidationError(
            f"the database file {str(path)!r} is empty; nothing to downgrade"
        )
    with _engine(db) as engine:
        before = migrate.current_revision(engine)
        migrate.check_known(before)
        migrate.downgrade(engine, revision)
        after = migrate.current_revision(engine)
    stdout_console().print(f"{display_url(db)}: revision {before or 'none'} → {after or 'none'}")
