"""The lease's heartbeat over real stores: a write that may wait, made off the waiting thread.

A heartbeat can wait long for the database: SQLite's file locked by another process (up to the
busy timeout), a PostgreSQL row locked by another transaction. The thread that enforces the
stage timeouts must not wait with it, and a heartbeat that lands after its run ended must not
renew anything.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from story_fsm import (
    StoryWorkflowOrchestrator,
    Trigger,
    Worker,
    WorkflowConfig,
    WorkflowState,
    WorkflowStateManager,
)
from story_fsm._records import Lease
from tests.stages import ScriptedPolisher, ScriptedReviewer, review

CONFIG = WorkflowConfig(retry_backoff_seconds=0)
#: A lease of 0.3 s: a heartbeat is due every 0.1 s.
LEASE_SECONDS = 0.3


@contextmanager
def write_blocked(store: WorkflowStateManager, url: str, story_id: str) -> Iterator[None]:
    """Hold what a write of *story_id* needs, from a connection of its own, as another
    process would: SQLite's file lock (``BEGIN IMMEDIATE``), or PostgreSQL's row lock."""
    if sa.make_url(url).get_backend_name() == "sqlite":
        other = sqlite3.connect(sa.make_url(url).database or "", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            yield
            other.rollback()
        finally:
            other.close()
        return
    engine = sa.create_engine(url)
    wf = store.schema.workflows
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.select(wf.c.story_id).where(wf.c.story_id == story_id).with_for_update()
            )
            yield
    finally:
        engine.dispose()


def held_back(
    store: WorkflowStateManager, monkeypatch: pytest.MonkeyPatch, until: threading.Event
) -> tuple[threading.Event, threading.Event, list[bool]]:
    """Make the store's first heartbeat wait for *until* before its write, as if in I/O.

    Returns when it was sent, when its write returned, and what the write answered.
    """
    real = store.heartbeat
    sent, landed, answers = threading.Event(), threading.Event(), []

    def heartbeat(story_id: str, lease: Lease) -> bool:
        if sent.is_set():
            return real(story_id, lease)
        sent.set()
        until.wait(10)
        answers.append(real(story_id, lease))
        landed.set()
        return answers[-1]

    monkeypatch.setattr(store, "heartbeat", heartbeat)
    return sent, landed, answers


def lease_of(store: WorkflowStateManager, story_id: str) -> tuple[object, object]:
    row = store.load_row(story_id)
    assert row is not None
    return row.summary.lease_owner, row.summary.lease_expires_at


class TestStuckHeartbeat:
    def test_a_timeout_is_enforced_while_a_heartbeat_waits_for_the_database(
        self, store: WorkflowStateManager, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Another connection holds the lock a heartbeat waits for: the attempt that runs out
        of time meanwhile is taken over all the same, and one heartbeat at most is out.

        The waiting thread used to make the heartbeat itself, and took the attempt over only
        once the lock was given back (SQLite: after up to the busy timeout, 30 s).
        """
        locked, holding, took_over, late = (threading.Event() for _ in range(4))
        held_at_takeover: list[bool] = []

        def hold_the_lock() -> None:
            with write_blocked(store, database_url, "s-1"):
                holding.set()
                locked.set()
                # Given back once the attempt was taken over, or (the bug) after 10 s.
                held_at_takeover.append(took_over.wait(10))
                holding.clear()

        holder = threading.Thread(target=hold_the_lock)

        def hanging_review() -> dict[str, Any]:
            holder.start()
            locked.wait(5)
            late.wait(10)  # past the stage timeout: this answer is dropped
            return review(50)

        append = store.append

        def watched_append(story_id: str, expected_seq: int, write: Any, *args: Any) -> Any:
            if write.trigger is Trigger.ATTEMPT_FAILED:
                took_over.set()  # the new carrier records the timed-out attempt
            return append(story_id, expected_seq, write, *args)

        heartbeat, guard = store.heartbeat, threading.Lock()
        beats = {"in_flight": 0, "most": 0, "while_held": 0}

        def counted_heartbeat(story_id: str, lease: Lease) -> bool:
            with guard:
                beats["in_flight"] += 1
                beats["most"] = max(beats["most"], beats["in_flight"])
                beats["while_held"] += holding.is_set()
            try:
                return heartbeat(story_id, lease)
            finally:
                with guard:
                    beats["in_flight"] -= 1

        monkeypatch.setattr(store, "append", watched_append)
        monkeypatch.setattr(store, "heartbeat", counted_heartbeat)
        config = WorkflowConfig(
            stage_timeout_seconds=1.0, max_stage_retries=2, retry_backoff_seconds=0
        )
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(hanging_review, review(99, "publish")), ScriptedPolisher(), store,
            config, lease_seconds=LEASE_SECONDS,
        )  # fmt: skip
        try:
            result = orchestrator.run_story_workflow("s-1", "T", "Once upon a time.", {})
        finally:
            took_over.set()
            late.set()
            holder.join(15)
        assert held_at_takeover == [True]
        assert result.state is WorkflowState.COMPLETE
        failed = [r for r in store.history("s-1") if r.trigger is Trigger.ATTEMPT_FAILED]
        assert len(failed) == 1 and "review took longer than 1s" in (failed[0].error or "")
        assert beats["most"] == 1 and beats["while_held"] == 1

    def test_a_heartbeat_landing_after_the_run_finished_renews_nothing(
        self, store: WorkflowStateManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The run completes while its heartbeat is still out: when it lands, the lease the
        last row freed stays free, and no lost lease is reported."""
        finished = threading.Event()
        sent, landed, answers = held_back(store, monkeypatch, until=finished)

        def review_while_a_heartbeat_is_out() -> dict[str, Any]:
            sent.wait(5)
            return review(99, "publish")

        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(review_while_a_heartbeat_is_out), ScriptedPolisher(), store, CONFIG,
            lease_seconds=LEASE_SECONDS,
        )  # fmt: skip
        with capture_logs() as logs:
            result = orchestrator.run_story_workflow("s-1", "T", "Once upon a time.", {})
            finished.set()
            assert landed.wait(10)
        assert result.state is WorkflowState.COMPLETE
        assert answers == [False]  # the fence: the finished row holds no lease to renew
        assert lease_of(store, "s-1") == (None, None)
        assert [e for e in logs if e["event"] in ("lease_lost", "heartbeat_failed")] == []

    def test_a_heartbeat_landing_after_a_drained_worker_released_renews_nothing(
        self, store: WorkflowStateManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A worker drains while its heartbeat is out: the claim it released stays free once
        the heartbeat lands, and that is not reported as a lost lease."""
        released = threading.Event()
        sent, landed, answers = held_back(store, monkeypatch, until=released)
        release = store.release

        def watched_release(story_id: str, lease: Lease) -> bool:
            try:
                return release(story_id, lease)
            finally:
                released.set()

        monkeypatch.setattr(store, "release", watched_release)
        StoryWorkflowOrchestrator(None, None, store, CONFIG).submit("s-1", "T", "Script.", {})
        stop: list[Callable[[], None]] = []

        def review_then_drain() -> dict[str, Any]:
            stop[0]()  # SIGTERM while the review runs: it is recorded, no polish starts
            sent.wait(5)
            return review(60)

        worker = Worker(
            ScriptedReviewer(review_then_drain), ScriptedPolisher(), store, CONFIG,
            concurrency=1, lease_seconds=LEASE_SECONDS, poll_seconds=0.05,
        )  # fmt: skip
        stop.append(worker.stop)
        with capture_logs() as logs:
            stats = worker.run()
            assert landed.wait(10)
        assert stats.released == 1
        assert answers == [False]  # the fence: the released row holds no lease to renew
        row = store.load_row("s-1")
        assert row is not None and row.summary.state is WorkflowState.POLISHING
        assert lease_of(store, "s-1") == (None, None)
        assert [e for e in logs if e["event"] in ("lease_lost", "heartbeat_failed")] == []
