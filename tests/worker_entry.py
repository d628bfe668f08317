"""Subprocess entry for the worker tests: a real Worker process on a real database.

Usage: ``python -m tests.worker_entry DATABASE_URL WORKER_ID CONCURRENCY LEASE_SECONDS``

Every stage call first inserts ``(story_id, stage, iteration, worker_id)`` into the table
``test_calls`` of the same database (committed at once), then sleeps 20–50 ms (an LLM
stand-in; ``STAGE_SLEEP`` overrides), then answers: review v1 → polish, v2 → publish.
On exit it prints its stats as ``STATS claimed completed failed lost released``.
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from typing import Any

import sqlalchemy as sa

from story_fsm import Worker, WorkflowConfig, WorkflowStateManager
from story_fsm.store.engine import make_engine

CALLS = sa.table(
    "test_calls",
    sa.column("story_id"),
    sa.column("stage"),
    sa.column("iteration"),
    sa.column("worker_id"),
)


def create_calls_table(engine: sa.Engine) -> None:
    """Create the call log the stages write to (idempotent)."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS test_calls ("
                "story_id VARCHAR(200), stage VARCHAR(16), iteration INTEGER, worker_id VARCHAR(64))"
            )
        )


class LoggedStages:
    """Reviewer and polisher that log each call to the database before answering."""

    def __init__(self, engine: sa.Engine, worker_id: str) -> None:
        self.engine = engine
        self.worker_id = worker_id
        fixed = os.environ.get("STAGE_SLEEP")
        self.fixed_sleep = float(fixed) if fixed else None

    def _call(self, story_id: str, stage: str, iteration: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                CALLS.insert().values(
                    story_id=story_id, stage=stage, iteration=iteration, worker_id=self.worker_id
                )
            )
        # 20–50 ms, deterministic per call, like a fast LLM answer.
        jitter = zlib.crc32(f"{story_id}{stage}{iteration}".encode()) % 31
        time.sleep(self.fixed_sleep if self.fixed_sleep is not None else (20 + jitter) / 1000)

    def review_story(self, **kw: Any) -> dict[str, Any]:
        iteration = int(kw["story_version"][1:])
        self._call(kw["story_id"], "review", iteration)
        return {
            "decision": "publish" if iteration >= 2 else "polish",
            "quality_score": 70 + 10 * iteration,
        }

    def polish_story(self, **kw: Any) -> dict[str, Any]:
        self._call(kw["story_id"], "polish", kw["iteration_number"])
        return {"polished_script": kw["current_script"] + " +", "change_log": ["x"]}


def main(argv: list[str]) -> int:
    url, worker_id, concurrency, lease_seconds = argv[0], argv[1], int(argv[2]), float(argv[3])
    engine = make_engine(url)
    stages = LoggedStages(engine, worker_id)
    config = WorkflowConfig(retry_backoff_seconds=0)
    with WorkflowStateManager(url) as store:
        worker = Worker(
            stages, stages, store, config,
            concurrency=concurrency, lease_seconds=lease_seconds, worker_id=worker_id, poll_seconds=0.05,
        )  # fmt: skip
        worker.install_signal_handlers()
        print("READY", flush=True)
        stats = worker.run()
    engine.dispose()
    print(
        f"STATS {stats.claimed} {stats.completed} {stats.failed} {stats.lost} {stats.released}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
