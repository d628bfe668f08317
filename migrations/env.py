"""Alembic environment for story_fsm's tables.

Run from code (``story_fsm.store.migrate``), the caller passes an open connection and the
table prefix through ``config.attributes``; run by the ``alembic`` command (alembic.ini at the
repository's top), the URL comes from ``sqlalchemy.url`` or ``STORY_FSM_DATABASE_URL`` and the
prefix from ``-x table_prefix=...``.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from story_fsm.store.engine import make_engine
from story_fsm.store.migrate import migration_connection, migration_table_prefix
from story_fsm.store.schema import build_schema

config = context.config


def _prefix() -> str:
    return migration_table_prefix()


def _run(connection: sa.Connection) -> None:
    schema = build_schema(_prefix())
    context.configure(
        connection=connection,
        target_metadata=schema.metadata,
        version_table=schema.version_table,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("STORY_FSM_DATABASE_URL")
    return url or "sqlite:///story_fsm.db"


if context.is_offline_mode():
    schema = build_schema(_prefix())
    context.configure(
        url=_url(), target_metadata=schema.metadata, version_table=schema.version_table
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        engine = make_engine(_url())  # a plain postgresql:// URL gets psycopg 3, as elsewhere
        try:
            # As story_fsm migrates: on SQLite with foreign keys off, or rebuilding the summary
            # table would cascade-delete the whole history.
            with migration_connection(engine, _prefix()) as conn:
                _run(conn)
        finally:
            engine.dispose()
