"""PostgreSQL for the benchmarks: find a server, and give each run a schema of its own.

The server is ``STORY_FSM_BENCH_PG`` or ``STORY_FSM_TEST_POSTGRES_URL``, else the project
machines' ``postgresql://postgres@127.0.0.1:5432/test``. Sections that need it are skipped,
with the reason, when none answers.
"""

from __future__ import annotations

import os
import uuid
from functools import cache
from typing import Any

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def base_url() -> str:
    """Return the configured server URL (a SQLAlchemy or libpq URL)."""
    return (
        os.environ.get("STORY_FSM_BENCH_PG")
        or os.environ.get("STORY_FSM_TEST_POSTGRES_URL")
        or DEFAULT_URL
    )


def libpq_url(url: str) -> str:
    """Return *url* as psycopg accepts it (no ``+driver`` suffix)."""
    scheme, sep, rest = url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


def sqlalchemy_url(url: str, schema: str) -> str:
    """Return a psycopg 3 SQLAlchemy URL whose connections use *schema* as search_path."""
    import sqlalchemy as sa

    parsed = sa.make_url(libpq_url(url)).set(drivername="postgresql+psycopg")
    parsed = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
    return parsed.render_as_string(hide_password=False)


def connect(url: str, schema: str | None = None, **kwargs: Any) -> Any:
    """Open a psycopg connection (search_path set to *schema* when given)."""
    import psycopg

    if schema is not None:
        kwargs["options"] = f"-csearch_path={schema}"
    return psycopg.connect(libpq_url(url), connect_timeout=3, **kwargs)


@cache
def unavailable() -> str | None:
    """Return why PostgreSQL can't be used here, or None when a server answers."""
    try:
        with connect(base_url()) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # any failure to connect means "no server here"
        return f"PostgreSQL at {base_url()} did not answer: {exc}"
    return None


def server_version() -> str | None:
    """Return the server's version string, or None without a server."""
    if unavailable():
        return None
    with connect(base_url()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else None


def create_schema() -> str:
    """Create a fresh schema for one run and return its name."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with connect(base_url(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return name


def drop_schema(name: str) -> None:
    """Drop a schema made by :func:`create_schema`, with everything in it."""
    with connect(base_url(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def schema_bytes(conn: Any, schema: str) -> int:
    """Return the on-disk size of every table in *schema* (heap, TOAST and indexes)."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'",
        (schema,),
    ).fetchone()
    return int(row[0])
