"""Alembic, run from code: find the shipped migrations, upgrade, downgrade, check.

The migrations live at the repository's top level (``migrations/``) and are shipped inside the
wheel as ``story_fsm/_migrations``; :func:`script_location` finds whichever exists. Migrations
are never retried: they fail fast with a clear message.

Alembic is imported only when a migration has to run: opening a store on a database already
at :data:`HEAD_REVISION` reads the version with one plain SELECT (alembic and its templating
cost a process ≈ 0.2 s to import, which every CLI call and every resume after a crash pays).
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from story_fsm.errors import SchemaVersionError, StoreError
from story_fsm.store.schema import DEFAULT_TABLE_PREFIX, build_schema

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

__all__ = [
    "HEAD_REVISION",
    "check_known",
    "check_unversioned",
    "current_revision",
    "downgrade",
    "ensure_schema",
    "head_revision",
    "is_known_revision",
    "migration_connection",
    "migration_table_prefix",
    "script_location",
    "upgrade",
]

_PACKAGE_DIR = Path(__file__).resolve().parent.parent

#: The newest revision in ``migrations/versions`` (a test keeps it equal to alembic's head).
HEAD_REVISION = "0003"


def script_location() -> Path:
    """Return the alembic script directory (installed wheel first, then the source tree)."""
    for candidate in (_PACKAGE_DIR / "_migrations", _PACKAGE_DIR.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StoreError(f"story_fsm's migrations are missing (looked beside {_PACKAGE_DIR})")


def migration_table_prefix() -> str:
    """Return the table prefix of the migration being run (for env.py and revision files).

    Set by :func:`alembic_config` when run from code, or ``alembic -x table_prefix=...``.
    """
    from alembic import context  # only importable meaningfully while alembic runs

    prefix = context.config.attributes.get("table_prefix")
    if not prefix:
        prefix = context.get_x_argument(as_dictionary=True).get("table_prefix")
    return str(prefix or DEFAULT_TABLE_PREFIX)


def alembic_config(
    connection: sa.Connection | None = None, prefix: str = DEFAULT_TABLE_PREFIX
) -> Config:
    """Return an alembic ``Config`` for story_fsm's migrations, bound to *connection*."""
    from alembic.config import Config

    # alembic's default stdout is whatever sys.stdout was when alembic was first imported;
    # pass the current one (a lazily imported alembic may have met a temporary stream).
    cfg = Config(stdout=sys.stdout)
    cfg.set_main_option("script_location", str(script_location()))
    cfg.attributes["connection"] = connection
    cfg.attributes["table_prefix"] = prefix
    return cfg


@cache
def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """Return the newest revision this story_fsm ships."""
    head = _script().get_current_head()
    assert head is not None  # a release always ships at least one migration
    return head


def is_known_revision(revision: str) -> bool:
    """True when *revision* is one of the migrations this story_fsm ships."""
    try:
        return _script().get_revision(revision) is not None
    except Exception:  # alembic raises several types for an unknown id
        return False


def current_revision(engine: sa.Engine, prefix: str = DEFAULT_TABLE_PREFIX) -> str | None:
    """Return the database's revision for *prefix* (None for a database never migrated)."""
    table = build_schema(prefix).version_table
    if not sa.inspect(engine).has_table(table):
        return None
    with engine.connect() as conn:
        versions = sa.table(table, sa.column("version_num"))
        return conn.execute(sa.select(versions.c.version_num)).scalar()


def _stored_revision(engine: sa.Engine, prefix: str) -> str | None:
    """The revision by one SELECT; None when there is no version table (or no row).

    A database that cannot be reached raises (the connection is made outside the ``try``):
    taken for "no table", it would be tried again by the slow path, doubling the wait.
    """
    versions = sa.table(build_schema(prefix).version_table, sa.column("version_num"))
    with engine.connect() as conn:
        try:
            return conn.execute(sa.select(versions.c.version_num)).scalar()
        except sa.exc.DBAPIError:  # no version table yet: the slow path finds out why
            return None


@contextmanager
def migration_connection(engine: sa.Engine, prefix: str) -> Iterator[sa.Connection]:
    """Yield a connection in a transaction, set up for running migrations on *engine*.

    Every way of migrating goes through it (the store, ``story-fsm db``, the ``alembic``
    command): the whole run is one transaction on both backends (a crash part way leaves the
    schema as it was), SQLite's foreign keys off during the run, PostgreSQL's advisory lock
    held.
    """
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        driver: Any = None
        keys = 1
        if sqlite:
            # SQLite's batch mode rebuilds a table (copy, drop, rename); with foreign keys on,
            # dropping the old table would cascade-delete every row that references it (the
            # whole history). The pragma only takes effect outside a transaction. Its value
            # is put back after: a host's own engine may run with foreign keys off.
            keys = int(conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one())
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
            # sqlite3's legacy transaction control sends no BEGIN before DDL, so each CREATE
            # or DROP would commit on its own, and a crash part way would leave a half-built
            # schema that no later open accepts. With its implicit handling off, the BEGIN
            # below makes the migration one transaction (SQLite's DDL is transactional).
            driver = conn.connection.driver_connection
            legacy = driver.isolation_level
            driver.isolation_level = None
        try:
            with conn.begin():
                if sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                if conn.dialect.name == "postgresql":
                    # Many workers may start on a fresh database at once; one migrates, the
                    # others wait and then find it at head. The lock ends with the transaction.
                    key = zlib.crc32(f"story_fsm:{prefix}".encode())
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
                yield conn
        finally:
            if sqlite:
                driver.isolation_level = legacy
                conn.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if keys else 'OFF'}")
                conn.commit()


def upgrade(
    engine: sa.Engine, revision: str = "head", *, prefix: str = DEFAULT_TABLE_PREFIX
) -> None:
    """Upgrade the database to *revision* (default: the newest).

    Raises:
        SchemaVersionError: A table or index the upgrade would create exists already: the
            version row says an older revision than the tables are at (nothing is changed).
    """
    try:
        with migration_connection(engine, prefix) as conn:
            from alembic import command

            command.upgrade(alembic_config(conn, prefix), revision)
    except sa.exc.DBAPIError as exc:
        if not _already_exists(exc):
            raise
        # The run was one transaction, rolled back by now: the database is as it was.
        stored = current_revision(engine, prefix)
        raise SchemaVersionError(
            f"the database's version row says schema revision {stored!r}, but what a later "
            f"revision creates exists already ({_first_line(exc.orig)}): the row in "
            f"{build_schema(prefix).version_table} was changed outside story_fsm; set it "
            "back to the revision the tables are at"
        ) from exc


def _already_exists(exc: sa.exc.DBAPIError) -> bool:
    """True for "table/index ... already exists" (PostgreSQL 42P07 and 42710, SQLite's text)."""
    code = getattr(exc.orig, "sqlstate", None)
    if code is not None:
        return code in ("42P07", "42710")
    return "already exists" in str(exc.orig)


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def downgrade(engine: sa.Engine, revision: str, *, prefix: str = DEFAULT_TABLE_PREFIX) -> None:
    """Downgrade the database to *revision* (``"base"`` drops story_fsm's tables).

    A database with no story_fsm revision is already at base: left as it is (alembic would
    create an empty version table in it, a host application's database among others).
    """
    if revision == "base" and current_revision(engine, prefix) is None:
        return
    with migration_connection(engine, prefix) as conn:
        from alembic import command

        command.downgrade(alembic_config(conn, prefix), revision)


def _has_tables(engine: sa.Engine, prefix: str) -> bool:
    schema = build_schema(prefix)
    names = set(sa.inspect(engine).get_table_names())
    return bool(names & {schema.workflows.name, schema.transitions.name})


def check_known(revision: str | None) -> None:
    """Refuse a database at a revision this story_fsm does not ship (a newer story_fsm's).

    Neither an upgrade nor a downgrade can start from a revision alembic cannot find; the
    remedy is a newer story_fsm, and the error says so.

    Raises:
        SchemaVersionError: *revision* is set and unknown.
    """
    if revision is not None and not is_known_revision(revision):
        raise SchemaVersionError(
            f"the database is at schema revision {revision!r}, which this story_fsm does not "
            f"know (it ships up to {head_revision()!r}); upgrade story_fsm"
        )


def check_unversioned(engine: sa.Engine, prefix: str = DEFAULT_TABLE_PREFIX) -> None:
    """Refuse a database whose story_fsm tables carry no revision (migrating would fail).

    Raises:
        SchemaVersionError: Tables with *prefix* exist but no story_fsm revision does.
    """
    # The tables first, the revision after: a migration commits both at once, so a revision
    # read later than the tables it created is always seen. The other way round, another
    # process's migration committing between the two reads would look unversioned.
    if _has_tables(engine, prefix) and current_revision(engine, prefix) is None:
        raise SchemaVersionError(
            f"tables with prefix {prefix!r} exist but carry no story_fsm revision; "
            "they belong to something else, or were created by hand"
        )


def ensure_schema(
    engine: sa.Engine, *, prefix: str = DEFAULT_TABLE_PREFIX, auto_migrate: bool = True
) -> None:
    """Make sure the database is at this story_fsm's head revision.

    A fresh database (no tables, no revision) or one at an older known revision is upgraded
    when *auto_migrate* is true; a database at an unknown (newer) revision, or with story_fsm
    tables but no revision, is refused with :class:`SchemaVersionError`.
    """
    if _stored_revision(engine, prefix) == HEAD_REVISION:
        return
    current = current_revision(engine, prefix)
    head = head_revision()
    if current == head:
        return
    if current is None:
        check_unversioned(engine, prefix)
    check_known(current)
    if not auto_migrate:
        where = "has no story_fsm schema" if current is None else f"is at revision {current!r}"
        raise SchemaVersionError(f"the database {where}, not {head!r}; run 'story-fsm db upgrade'")
    upgrade(engine, prefix=prefix)
