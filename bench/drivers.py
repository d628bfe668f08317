"""The persistence variants the per-transition section times, one per child process.

Each builds a :class:`Driver`: ``run_one(story_id)`` persists one story of the loop, and
``finish(last_story_id)`` reports the rows and bytes written (and, for story_fsm, what one
story's history holds). The raw variants are the physical limits story_fsm is compared with.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import pg, storage
from bench.tap import tap_writer
from bench.workload import NoOpPolisher, NoOpReviewer, loop_config, raw_steps, run_story

SQLITE_VARIANTS = (
    "raw_sqlite3",
    "sqlalchemy_core",
    "story_fsm_sql",
    "story_fsm",
    "story_fsm_unchanged",
)
PG_VARIANTS = ("raw_psycopg", "story_fsm_pg")
RAW_DDL = (
    "CREATE TABLE steps (story_id TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL, "
    "payload TEXT NOT NULL, created_at {real} NOT NULL, PRIMARY KEY (story_id, seq))"
)
RAW_INSERT = (
    "INSERT INTO steps (story_id, seq, state, payload, created_at) VALUES ({p}, {p}, {p}, {p}, {p})"
)


@dataclass
class Driver:
    """One variant, set up: run a story; then report rows, bytes and checks."""

    run_one: Callable[[str], None]
    finish: Callable[[str | None], dict[str, Any]]


def _raw_sqlite3(args: argparse.Namespace) -> Driver:
    path = args.workdir / "raw.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={args.sync}")
    conn.execute(RAW_DDL.format(real="REAL"))
    conn.commit()
    before = storage.sqlite_used_bytes(path)
    insert = RAW_INSERT.format(p="?")

    def run_one(story_id: str) -> None:
        for seq, state, payload in raw_steps(story_id):
            conn.execute(insert, (story_id, seq, state, payload, time.time()))
            conn.commit()

    def finish(_last: str | None) -> dict[str, Any]:
        rows = conn.execute("SELECT count(*) FROM steps").fetchone()[0]
        conn.close()
        return {"rows": rows, "bytes": storage.sqlite_used_bytes(path) - before}

    return Driver(run_one, finish)


def _sqlalchemy_core(args: argparse.Namespace) -> Driver:
    import sqlalchemy as sa

    path = args.workdir / "core.db"
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute(f"PRAGMA synchronous={args.sync}")

    table = sa.Table(
        "steps",
        sa.MetaData(),
        sa.Column("story_id", sa.Text, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    table.metadata.create_all(engine)
    before = storage.sqlite_used_bytes(path)
    insert = table.insert()

    def run_one(story_id: str) -> None:
        for seq, state, payload in raw_steps(story_id):
            with engine.begin() as conn:  # one transaction per step
                conn.execute(
                    insert,
                    {
                        "story_id": story_id,
                        "seq": seq,
                        "state": state,
                        "payload": payload,
                        "created_at": time.time(),
                    },
                )

    def finish(_last: str | None) -> dict[str, Any]:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        engine.dispose()
        return {"rows": rows, "bytes": storage.sqlite_used_bytes(path) - before}

    return Driver(run_one, finish)


def _story_fsm_driver(store: Any, measure: Callable[[], int], *, keep_script: bool) -> Driver:
    from story_fsm import StoryWorkflowOrchestrator

    orchestrator = StoryWorkflowOrchestrator(
        NoOpReviewer(), NoOpPolisher(keep_script=keep_script), store, loop_config()
    )
    before = measure()

    def run_one(story_id: str) -> None:
        run_story(orchestrator, story_id)

    def finish(last: str | None) -> dict[str, Any]:
        rows = sum(s.seq + 1 for s in store.list_workflows())
        out: dict[str, Any] = {"rows": rows}
        if last is not None:
            history = store.history(last)
            out["steps_per_story"] = len(history)
            out["script_checks"] = storage.script_checks(history)
        store.close()
        out["bytes"] = measure() - before
        return out

    return Driver(run_one, finish)


def _story_fsm_sqlite(args: argparse.Namespace, *, keep_script: bool = False) -> Driver:
    from story_fsm import WorkflowStateManager

    path = args.workdir / "story_fsm.db"
    store = WorkflowStateManager(f"sqlite:///{path}", sqlite_synchronous=args.sync)
    return _story_fsm_driver(
        store, lambda: storage.sqlite_used_bytes(path), keep_script=keep_script
    )


def _story_fsm_sql(args: argparse.Namespace) -> Driver:
    """story_fsm's own statements for one story, replayed on plain sqlite3: its SQL's floor.

    One story runs through the engine with its writer connection recorded (statements,
    parameters, commits); each timed story replays that list under a new story id, with
    cached statements and nothing of the engine around them. What story_fsm costs above this
    variant is the engine's own work, not its schema or its statements.
    """
    from story_fsm import StoryWorkflowOrchestrator, WorkflowStateManager

    path = args.workdir / "story_fsm_sql.db"
    store = WorkflowStateManager(f"sqlite:///{path}", sqlite_synchronous=args.sync)
    # Each commit closes the open transaction's list and opens the next one.
    transactions: list[list[tuple[str, Any]]] = [[]]
    tap_writer(
        store,
        lambda sql, params, _seconds: transactions[-1].append((sql, params)),
        lambda _seconds: transactions.append([]),
    )
    template = "template"
    run_story(
        StoryWorkflowOrchestrator(NoOpReviewer(), NoOpPolisher(), store, loop_config()),
        template,
    )
    transactions = [tx for tx in transactions if tx]
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={args.sync}")
    conn.execute("PRAGMA foreign_keys=ON")  # as the store's connections run
    before = storage.sqlite_used_bytes(path)
    (steps,) = conn.execute(
        "SELECT count(*) FROM story_fsm_transitions WHERE story_id = ?", (template,)
    ).fetchone()

    def run_one(story_id: str) -> None:
        for statements in transactions:
            conn.execute("BEGIN")
            for sql, params in statements:
                values = tuple(story_id if value == template else value for value in params)
                if conn.execute(sql, values).rowcount != 1:
                    raise AssertionError(f"replayed statement matched no row: {sql[:60]}")
            conn.execute("COMMIT")

    def finish(_last: str | None) -> dict[str, Any]:
        (rows,) = conn.execute(
            "SELECT count(*) FROM story_fsm_transitions WHERE story_id != ?", (template,)
        ).fetchone()
        conn.close()
        used = storage.sqlite_used_bytes(path) - before
        return {"rows": rows, "bytes": used, "steps_per_story": steps}

    return Driver(run_one, finish)


def _raw_psycopg(args: argparse.Namespace) -> Driver:
    conn = pg.connect(pg.base_url(), args.pg_schema)
    conn.execute(RAW_DDL.format(real="DOUBLE PRECISION"))
    conn.commit()
    before = pg.schema_bytes(conn, args.pg_schema)
    insert = RAW_INSERT.format(p="%s")

    def run_one(story_id: str) -> None:
        for seq, state, payload in raw_steps(story_id):
            conn.execute(insert, (story_id, seq, state, payload, time.time()))
            conn.commit()

    def finish(_last: str | None) -> dict[str, Any]:
        rows = conn.execute("SELECT count(*) FROM steps").fetchone()[0]
        used = pg.schema_bytes(conn, args.pg_schema) - before
        conn.close()
        return {"rows": rows, "bytes": used}

    return Driver(run_one, finish)


def _story_fsm_pg(args: argparse.Namespace) -> Driver:
    from story_fsm import WorkflowStateManager

    store = WorkflowStateManager(pg.sqlalchemy_url(pg.base_url(), args.pg_schema))

    def measure() -> int:
        with pg.connect(pg.base_url()) as conn:
            return pg.schema_bytes(conn, args.pg_schema)

    return _story_fsm_driver(store, measure, keep_script=False)


DRIVERS: dict[str, Callable[[argparse.Namespace], Driver]] = {
    "raw_sqlite3": _raw_sqlite3,
    "sqlalchemy_core": _sqlalchemy_core,
    "story_fsm_sql": _story_fsm_sql,
    "story_fsm": _story_fsm_sqlite,
    "story_fsm_unchanged": lambda args: _story_fsm_sqlite(args, keep_script=True),
    "raw_psycopg": _raw_psycopg,
    "story_fsm_pg": _story_fsm_pg,
}
