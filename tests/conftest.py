"""Fixtures: real stores (a SQLite file per test, a PostgreSQL schema per test), real stages.

PostgreSQL: the URL comes from ``STORY_FSM_TEST_POSTGRES_URL``, else the project machines'
server at 127.0.0.1:5432 is tried. When none answers the PostgreSQL variants skip with the
reason, except under ``CI=true``, where they must run and a missing server fails them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import structlog

from story_fsm import WorkflowConfig, WorkflowStateManager
from story_fsm.store.engine import with_driver

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


def _pg_base_url() -> str:
    # Read as the store reads it, so that the tests' own engines use the same driver.
    url = with_driver(sa.make_url(os.environ.get("STORY_FSM_TEST_POSTGRES_URL", DEFAULT_PG_URL)))
    return url.render_as_string(hide_password=False)


_pg_state: dict[str, str | None] = {}


def _pg_unavailable() -> str | None:
    """Return why PostgreSQL can't be used (cached), or None when it answers."""
    if "reason" not in _pg_state:
        try:
            engine = sa.create_engine(_pg_base_url(), connect_args={"connect_timeout": 3})
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            engine.dispose()
            _pg_state["reason"] = None
        except Exception as exc:  # any failure to connect means "no server here"
            _pg_state["reason"] = f"PostgreSQL at {_pg_base_url()} did not answer: {exc}"
    return _pg_state["reason"]


def require_postgres() -> str:
    """Return the PostgreSQL base URL, or skip (fail under CI=true) when none answers."""
    reason = _pg_unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true requires PostgreSQL: {reason}")
        pytest.skip(reason)
    return _pg_base_url()


@pytest.fixture(autouse=True)
def _structlog_unconfigured() -> Iterator[None]:
    """Every test starts with structlog as a host that never configured it leaves it.

    The CLI configures structlog for its process (a level filter among it); run in-process by
    a test, that would filter the log lines a later test captures.
    """
    yield
    structlog.reset_defaults()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    base = require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    """A SQLite file URL in the test's own temporary folder."""
    return f"sqlite:///{tmp_path}/story_fsm.db"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: a SQLite file, then a PostgreSQL schema."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
def store(database_url: str) -> Iterator[WorkflowStateManager]:
    """A migrated store on the current backend, closed after the test."""
    manager = WorkflowStateManager(database_url)
    yield manager
    manager.close()


@pytest.fixture
def fast_config() -> WorkflowConfig:
    """A config with no backoff sleeps, so failure tests run fast."""
    return WorkflowConfig(max_iterations=3, quality_threshold=95, retry_backoff_seconds=0)
