"""Workers: claims, leases, draining, re-queue, and many processes sharing one database."""

from __future__ import annotations

import _thread
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from story_fsm import (
    ConcurrentAdvanceError,
    DatabaseBusyError,
    Event,
    InputValidationError,
    InvalidTransitionError,
    Stage,
    StageFailedError,
    StoreError,
    StoryWorkflowOrchestrator,
    Trigger,
    Worker,
    WorkerStats,
    WorkflowConfig,
    WorkflowState,
    WorkflowStateManager,
)
from story_fsm._records import Lease
from story_fsm.models import TransitionRecord
from story_fsm.ratelimit import StageRateLimiter
from story_fsm.store.engine import make_engine
from tests.pg_proxy import reply_dropping_proxy
from tests.stages import ScriptedPolisher, ScriptedReviewer, review
from tests.worker_entry import LoggedStages, create_calls_table

ROOT = Path(__file__).resolve().parent.parent
CONFIG = WorkflowConfig(retry_backoff_seconds=0)


def submit(store: WorkflowStateManager, n: int, prefix: str = "s") -> list[str]:
    orchestrator = StoryWorkflowOrchestrator(ScriptedReviewer(), ScriptedPolisher(), store, CONFIG)
    ids = [f"{prefix}{i:04d}" for i in range(n)]
    for story_id in ids:
        orchestrator.submit(story_id, "Title", "Script.", {"n": story_id})
    return ids


def worker(
    store: WorkflowStateManager, reviewer: Any = None, polisher: Any = None, **kw: Any
) -> Worker:
    kw.setdefault("poll_seconds", 0.05)
    return Worker(
        reviewer or ScriptedReviewer(review(99, "publish")),
        polisher or ScriptedPolisher(),
        store,
        CONFIG,
        **kw,
    )


class TestClaims:
    def test_worker_finishes_submitted_workflows(self, store: WorkflowStateManager) -> None:
        """Submitted workflows are claimed and completed; stop_when_idle then returns."""
        submit(store, 6)
        stats = worker(store, concurrency=3).run(stop_when_idle=True)
        assert (stats.claimed, stats.completed) == (6, 6)
        assert {s.state for s in store.list_workflows()} == {WorkflowState.COMPLETE}
        assert all(s.lease_owner is None for s in store.list_workflows())

    def test_claimed_run_returns_what_is_stored(self, store: WorkflowStateManager) -> None:
        """The result a worker's run builds in memory equals the stored state, field by field."""

        submit(store, 1)
        lease = Lease("me", "tok", 30)
        row = store.claim_next(lease)
        assert row is not None
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(50), review(99, "publish")), ScriptedPolisher(), store, CONFIG
        )
        result = orchestrator.advance_claimed(row, lease)
        assert result is not None and result.decision == "publish"
        assert result == store.load_state("s0000")

    def test_submit_runs_no_stage(self, store: WorkflowStateManager) -> None:
        """submit() records the workflow in INITIAL, unheld, without calling a stage."""
        reviewer = ScriptedReviewer()
        StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store).submit("x", "T", "S", {})
        [summary] = store.list_workflows()
        assert (summary.state, summary.lease_owner) == (WorkflowState.INITIAL, None)
        assert reviewer.calls == []

    def test_held_workflow_is_not_claimed(self, store: WorkflowStateManager) -> None:
        """A workflow whose lease is live is skipped; an expired lease makes it claimable."""

        submit(store, 1)
        held = Lease("other", "tok", 0.3)
        assert store.claim_next(held) is not None
        assert store.claim_next(Lease("me", "tok2", 30)) is None
        time.sleep(0.4)
        row = store.claim_next(Lease("me", "tok3", 30))
        assert row is not None and row.summary.lease_owner == "me"

    def test_a_claim_that_waited_for_the_file_s_lock_gets_its_whole_lease(
        self, sqlite_url: str
    ) -> None:
        """A claim kept waiting by another process's write still holds the story after it.

        Its expiry was reckoned before the wait: a wait longer than the lease made a claim
        that had lapsed already, and a second worker claimed the same story at once.
        """
        with WorkflowStateManager(sqlite_url) as store:
            submit(store, 1)
            other = sqlite3.connect(
                store.engine.url.database or "", isolation_level=None, check_same_thread=False
            )
            other.execute("BEGIN IMMEDIATE")  # another process writing, for 1.5 s
            threading.Timer(1.5, other.commit).start()
            try:
                assert store.claim_next(Lease("A", "tok-a", 1.0)) is not None
            finally:
                time.sleep(0.1)
                other.close()
            assert store.claim_next(Lease("B", "tok-b", 1.0)) is None

    def test_a_claim_run_again_after_an_outage_gets_its_whole_lease(self, pg_url: str) -> None:
        """A claim that waited for the server to come back still holds the story after it.

        Its expiry was reckoned before the outage: one longer than the lease made a claim
        that had lapsed already, and a second worker claimed the same story at once.
        """
        with reply_dropping_proxy(pg_url) as proxy:
            with WorkflowStateManager(proxy.url(pg_url)) as store:
                submit(store, 1)
                proxy.outage(1.5)
                assert store.claim_next(Lease("A", "tok-a", 1.0)) is not None
            assert proxy.refused >= 1  # the claim met the outage, and waited
            with WorkflowStateManager(pg_url) as direct:
                assert direct.claim_next(Lease("B", "tok-b", 1.0)) is None

    def test_requeue_makes_a_failed_workflow_runnable(self, store: WorkflowStateManager) -> None:
        """retry re-queues a FAILED workflow in its failed stage; a worker then finishes it."""
        config = WorkflowConfig(max_stage_retries=1, retry_backoff_seconds=0)
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(40)), ScriptedPolisher(RuntimeError("x")), store, config
        )
        with pytest.raises(StageFailedError):
            orchestrator.run_story_workflow("f", "T", "S", {})
        assert worker(store).run(stop_when_idle=True).claimed == 0  # FAILED waits for an operator
        summary = orchestrator.requeue("f")
        assert (summary.state, summary.lease_owner) == (WorkflowState.POLISHING, None)
        polisher = ScriptedPolisher()
        stats = worker(store, polisher=polisher).run(stop_when_idle=True)
        assert stats.completed == 1 and len(polisher.calls) == 1
        triggers = [r.trigger for r in store.history("f")][-4:]
        assert triggers[:2] == [Trigger.RETRY, Trigger.RESUME]

    def test_requeue_refuses_a_workflow_that_is_not_failed(
        self, store: WorkflowStateManager
    ) -> None:
        """Only FAILED workflows can be re-queued; the message names the state."""
        submit(store, 1)
        orchestrator = StoryWorkflowOrchestrator(ScriptedReviewer(), ScriptedPolisher(), store)
        with pytest.raises(InvalidTransitionError, match="can't retry when in INITIAL"):
            orchestrator.requeue("s0000")

    @pytest.mark.parametrize(
        "bad",
        [
            {"concurrency": 0},
            {"concurrency": 2.5},
            {"concurrency": 1025},  # each a thread: 10**11 of them would fill the memory
            {"lease_seconds": 0},
            # Beyond a week a lease is a mistake; 1e12 s is past the calendar's last date.
            {"lease_seconds": float("inf")},
            {"lease_seconds": float("nan")},
            {"lease_seconds": 1e12},
            {"lease_seconds": "30"},
            {"poll_seconds": float("inf")},
            {"poll_seconds": -1},
        ],
    )
    def test_bad_worker_settings(self, store: WorkflowStateManager, bad: dict[str, Any]) -> None:
        """Nonsense worker settings are refused up front."""
        with pytest.raises(InputValidationError, match=r"concurrency|lease_seconds|poll_seconds"):
            worker(store, **bad)

    @pytest.mark.parametrize("worker_id", ["w" * 201, "w\x00", "  ", 7])
    def test_a_worker_id_no_backend_stores_is_refused(
        self, store: WorkflowStateManager, worker_id: object
    ) -> None:
        """Checked when the worker is built, not met as a StoreError at its first claim."""
        with pytest.raises(InputValidationError, match="worker_id"):
            worker(store, worker_id=worker_id)

    @pytest.mark.parametrize("worker_id", [None, ""])
    def test_no_worker_id_is_the_default_one(
        self, store: WorkflowStateManager, worker_id: str | None
    ) -> None:
        """None and "" (an unset environment variable) give host:pid, as for an owner."""
        from story_fsm.engine import default_owner

        assert worker(store, worker_id=worker_id).worker_id == default_owner()

    def test_a_worker_needs_both_stages(self, store: WorkflowStateManager) -> None:
        """A worker without a polisher could claim but never finish a story."""
        with pytest.raises(InputValidationError, match="reviewer and a polisher"):
            Worker(ScriptedReviewer(), None, store)  # type: ignore[arg-type]

    @pytest.mark.parametrize("lease", [float("inf"), 0.0, 1e12])
    def test_bad_lease_of_an_orchestrator_is_refused(
        self, store: WorkflowStateManager, lease: float
    ) -> None:
        """run_story_workflow's and resume's lease is checked where it is given."""
        with pytest.raises(InputValidationError, match="lease_seconds"):
            StoryWorkflowOrchestrator(
                ScriptedReviewer(), ScriptedPolisher(), store, lease_seconds=lease
            )

    def test_the_stop_line_reports_every_counter(self, store: WorkflowStateManager) -> None:
        """``worker_stopped`` carries each WorkerStats counter (``released`` was missing)."""
        import dataclasses

        from structlog.testing import capture_logs

        submit(store, 1)
        with capture_logs() as logs:
            worker(store).run(stop_when_idle=True)
        (stopped,) = [e for e in logs if e["event"] == "worker_stopped"]
        counters = [f.name for f in dataclasses.fields(WorkerStats)]
        assert {name: stopped[name] for name in counters} == {
            "claimed": 1, "completed": 1, "failed": 0, "lost": 0, "released": 0, "errors": 0,
            "busy": 0,
        }  # fmt: skip

    def test_stats_copy_pickle_and_serialize_as_their_counts(self) -> None:
        """WorkerStats holds a lock for add(): copies, pickles and asdict() see the counts."""
        import copy
        import dataclasses
        import json
        import pickle

        stats = WorkerStats()
        stats.add("completed")
        stats.add("lost")
        for twin in (copy.deepcopy(stats), pickle.loads(pickle.dumps(stats)), copy.copy(stats)):
            assert twin == stats and twin.completed == 1
            twin.add("completed")  # a lock of its own
            assert stats.completed == 1
        counts = {
            "claimed": 0, "completed": 1, "failed": 0, "lost": 1, "released": 0, "errors": 0,
            "busy": 0,
        }  # fmt: skip
        assert dataclasses.asdict(stats) == stats.to_dict() == counts
        assert json.loads(json.dumps(stats.to_dict())) == counts

    def test_an_error_outside_any_story_stops_the_worker_and_is_raised(
        self, store: WorkflowStateManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A worker thread's loop that fails is not a silent, idle worker that exits 0."""
        submit(store, 1)

        def broken_claim(lease: Any) -> Any:
            raise RuntimeError("claim broke")

        monkeypatch.setattr(store, "claim_next", broken_claim)
        with pytest.raises(RuntimeError, match="claim broke"):
            worker(store, concurrency=2).run(stop_when_idle=True)

    def test_a_slow_progress_callback_keeps_a_live_run_from_being_taken(
        self, store: WorkflowStateManager
    ) -> None:
        """A callback slower than the lease: the live run still holds it; nothing is paid twice."""
        polisher = ScriptedPolisher(delay=0.05)
        other = worker(store, ScriptedReviewer(review(99, "publish")), polisher, lease_seconds=0.3)
        thread = threading.Thread(target=other.run, daemon=True)
        thread.start()

        def slow_display(event: str, data: dict[str, Any]) -> None:
            if event == "review_complete":
                time.sleep(1.0)  # e.g. a slow webhook; three leases long

        live = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(50)), polisher, store,
            WorkflowConfig(max_iterations=1, retry_backoff_seconds=0), lease_seconds=0.3,
        )  # fmt: skip
        try:
            result = live.run_story_workflow(
                "live", "Title", "Script.", {}, progress_callback=slow_display
            )
        finally:
            other.stop()
            thread.join(10)
        assert result.state is WorkflowState.COMPLETE
        assert len(polisher.calls) == 1
        assert [r.trigger for r in store.history("live")] == [
            Trigger.SUBMIT, Trigger.START, Trigger.REVIEWED, Trigger.POLISHED
        ]  # fmt: skip
        assert other.stats.claimed == 0


class TestDrainAndLoss:
    def test_stop_finishes_the_stage_then_releases(self, store: WorkflowStateManager) -> None:
        """On stop the stage in flight is recorded, no new stage starts, the claim is released."""
        submit(store, 1)
        entered, release = threading.Event(), threading.Event()

        def slow_review() -> dict[str, Any]:
            entered.set()
            release.wait(10)
            return review(50)

        polisher = ScriptedPolisher()
        w = worker(store, ScriptedReviewer(slow_review), polisher)
        runner = threading.Thread(target=w.run)
        runner.start()
        assert entered.wait(10)
        w.stop()
        release.set()
        runner.join(10)
        assert not runner.is_alive()
        # Another thread may claim the released story in the instant before it sees the stop;
        # it hands it back too, without a stage call.
        assert w.stats.released == w.stats.claimed >= 1 and w.stats.completed == 0
        assert polisher.calls == []
        summary = store.list_workflows()[0]
        assert (summary.state, summary.lease_owner) == (WorkflowState.POLISHING, None)
        assert worker(store).run(stop_when_idle=True).completed == 1

    def test_an_unexpected_error_keeps_the_claim_until_it_expires(
        self, store: WorkflowStateManager
    ) -> None:
        """A story whose run raises something unforeseen is not claimed again at once.

        Released at once, it was claimed again by the next free thread and failed the same
        way, in a loop that wrote a ``resume`` row (and paid a stage call) each time.
        """
        poisoned, healthy = submit(store, 2)
        w = worker(store, concurrency=1, lease_seconds=30)
        advance = w._orchestrator.advance_claimed
        claims: Counter[str] = Counter()

        def flaky_advance(row: Any, lease: Any, **kw: Any) -> Any:
            claims[row.summary.story_id] += 1
            if row.summary.story_id == poisoned:
                raise RuntimeError("a bug of the host's")
            return advance(row, lease, **kw)

        w._orchestrator.advance_claimed = flaky_advance  # type: ignore[method-assign]
        runner = threading.Thread(target=w.run)
        runner.start()
        deadline = time.monotonic() + 10
        while claims[healthy] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # ten polls: time enough to claim the poisoned story again, were it free
        w.stop()
        runner.join(10)
        assert claims == {poisoned: 1, healthy: 1}
        assert (w.stats.errors, w.stats.completed) == (1, 1)
        summaries = {s.story_id: s for s in store.list_workflows()}
        assert summaries[poisoned].lease_owner == w.worker_id  # held until it expires
        assert summaries[healthy].state is WorkflowState.COMPLETE

    def test_a_row_changed_outside_story_fsm_does_not_stop_the_worker(
        self, store: WorkflowStateManager
    ) -> None:
        """A claimed story whose stored config is no JSON is one error; the worker goes on
        with the rest, and keeps that claim until it expires, like any unrunnable story."""
        poisoned, healthy = submit(store, 2)
        inputs = store.schema.inputs
        with store.engine.begin() as conn:
            conn.execute(
                inputs.update().where(inputs.c.story_id == poisoned).values(config="{not json")
            )
        w = worker(store, concurrency=1, lease_seconds=30)
        raised: list[BaseException] = []

        def run() -> None:
            try:
                w.run()
            except BaseException as exc:
                raised.append(exc)

        runner = threading.Thread(target=run)
        runner.start()
        deadline = time.monotonic() + 10
        while w.stats.completed == 0 and not raised and time.monotonic() < deadline:
            time.sleep(0.05)
        w.stop()
        runner.join(10)
        assert raised == [] and not runner.is_alive()
        # Both were claimed (the unreadable one too: its lease is taken, and kept).
        assert (w.stats.claimed, w.stats.errors, w.stats.completed) == (2, 1, 1)
        summaries = {s.story_id: s for s in store.list_workflows()}
        assert summaries[poisoned].lease_owner == w.worker_id  # held until it expires
        assert summaries[poisoned].state is WorkflowState.INITIAL
        assert summaries[healthy].state is WorkflowState.COMPLETE

    def test_a_claim_finished_by_a_resume_before_it_is_read_is_lost_not_an_error(
        self, store: WorkflowStateManager
    ) -> None:
        """An explicit resume may take a claimed story over and finish it before the worker
        reads it: the worker's run is a lost race (ConcurrentAdvanceError), not a KeyError,
        and no stage is called for it."""
        (story_id,) = submit(store, 1)
        lease = Lease("w-1", "token-1", 30.0)
        assert store.claim_next(lease) is not None
        StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store, CONFIG
        ).resume(story_id)
        row = store.load_row(story_id)  # the worker's read, after the resume
        assert row is not None and row.summary.state is WorkflowState.COMPLETE
        reviewer = ScriptedReviewer(review(99, "publish"))
        claimed = StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store, CONFIG)
        with pytest.raises(ConcurrentAdvanceError, match="finished by another process"):
            claimed.advance_claimed(row, lease)
        assert reviewer.calls == []

    def test_signal_handlers_are_put_back_when_run_returns(
        self, store: WorkflowStateManager
    ) -> None:
        """install_signal_handlers() lasts for one run(): once it returns, SIGINT and SIGTERM
        have their handlers of before, so a later Ctrl-C does not go to a finished worker's
        stop() (the host's own KeyboardInterrupt is back)."""
        before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        submit(store, 1)
        w = worker(store, ScriptedReviewer(review(99, "publish")), concurrency=1)
        w.install_signal_handlers()
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT]
        assert w.run(stop_when_idle=True).claimed == 1
        assert {s: signal.getsignal(s) for s in before} == before

    def test_an_interrupted_run_drains_its_threads_before_it_raises(
        self, store: WorkflowStateManager
    ) -> None:
        """A KeyboardInterrupt in run() (no handlers installed) drains the worker, then is raised.

        The stage in flight is recorded and its claim released; no other story is claimed.
        The threads used to go on claiming stories and calling stages after run() had
        raised, and kept the process from exiting.
        """
        first, *others = submit(store, 3)
        entered = threading.Event()

        def slow_review() -> dict[str, Any]:
            entered.set()
            time.sleep(0.3)
            return review(50)

        w = worker(store, ScriptedReviewer(slow_review), concurrency=1)
        interrupter = threading.Thread(target=lambda: entered.wait(10) and _thread.interrupt_main())
        interrupter.start()
        with pytest.raises(KeyboardInterrupt):
            w.run()
        interrupter.join(10)
        assert w.stopping
        for thread in threading.enumerate():
            if thread.name.startswith("story-fsm-worker"):
                thread.join(5)  # past its last line: the worker is done with it
                assert not thread.is_alive()
        assert (w.stats.claimed, w.stats.released) == (1, 1)
        summaries = {s.story_id: s for s in store.list_workflows()}
        assert (summaries[first].state, summaries[first].lease_owner) == (
            WorkflowState.POLISHING, None
        )  # fmt: skip
        assert all(summaries[i].state is WorkflowState.INITIAL for i in others)

    def test_worker_runs_report_the_documented_events(self, store: WorkflowStateManager) -> None:
        """A worker's runs send the events, with the data, that a caller's runs send."""

        class Crash(BaseException):
            """The process dying inside a stage (never retried)."""

        (submitted,) = submit(store, 1)
        # A second story whose process died in its second review (its lease soon expires).
        dying = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(50), Crash()), ScriptedPolisher(), store, CONFIG,
            lease_seconds=0.05,
        )  # fmt: skip
        with pytest.raises(Crash):
            dying.run_story_workflow("crashed", "Title", "Script.", {})
        time.sleep(0.1)
        events: list[tuple[str, dict[str, Any]]] = []
        lock = threading.Lock()

        def collect(event: str, data: dict[str, Any]) -> None:
            with lock:
                events.append((event, data))

        assert worker(store, progress_callback=collect).run(stop_when_idle=True).completed == 2
        first = {d["story_id"]: (e, d) for e, d in reversed(events)}
        assert all(type(e) is Event for e, _ in events)
        event, data = first[submitted]
        assert event == "workflow_started"
        assert data == {"story_id": submitted, "title": "Title", "config": CONFIG.to_dict()}
        event, data = first["crashed"]
        assert event == "workflow_resumed"
        assert data == {"story_id": "crashed", "state": "reviewing", "seq": 3, "iteration": 2}

    def test_lost_database_stops_the_worker_with_store_error(self, pg_url: str) -> None:
        """When the tables vanish under it, run() raises StoreError instead of spinning."""
        with WorkflowStateManager(pg_url) as store:
            submit(store, 3)
            started = threading.Event()

            def review_then_sabotage() -> dict[str, Any]:
                if not started.is_set():
                    started.set()
                    with store.engine.begin() as conn:
                        conn.execute(sa.text("ALTER TABLE story_fsm_transitions RENAME TO gone"))
                return review(50)

            w = worker(store, ScriptedReviewer(review_then_sabotage), concurrency=1)
            with pytest.raises(StoreError, match=r"gone|story_fsm_transitions|relation"):
                w.run()

    def test_no_lease_lost_warning_before_the_run_s_first_write(
        self, store: WorkflowStateManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A slow first write: heartbeats wait for it (the row holds no lease of this run yet)."""
        from structlog.testing import capture_logs

        create = store.create_with_record

        def slow_create(*args: Any, **kwargs: Any) -> Any:
            time.sleep(0.5)
            return create(*args, **kwargs)

        monkeypatch.setattr(store, "create_with_record", slow_create)
        live = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store, CONFIG,
            lease_seconds=0.3,
        )  # fmt: skip
        with capture_logs() as logs:
            assert live.run_story_workflow("s", "T", "S", {}).state is WorkflowState.COMPLETE
        assert [e for e in logs if e["event"] in ("lease_lost", "heartbeat_failed")] == []

    def test_a_stop_between_attempts_releases_without_another_paid_call(
        self, store: WorkflowStateManager
    ) -> None:
        """SIGTERM while a stage is failing: its backoff is cut short, no retry is made.

        The failed attempt stays recorded, the claim is released, and the next worker
        starts the stage afresh.
        """
        (story_id,) = submit(store, 1)
        calls: list[int] = []
        holder: dict[str, Worker] = {}

        def failing_review() -> dict[str, Any]:
            calls.append(1)
            holder["worker"].stop()
            raise RuntimeError("the model is down")

        config = WorkflowConfig(max_stage_retries=4, retry_backoff_seconds=60)
        w = Worker(
            ScriptedReviewer(failing_review), ScriptedPolisher(), store, config,
            concurrency=1, poll_seconds=0.05,
        )  # fmt: skip
        holder["worker"] = w
        done = threading.Thread(target=w.run)
        done.start()
        done.join(20)  # the backoff alone was 60 s
        assert not done.is_alive()
        assert calls == [1] and w.stats.released == 1 and w.stats.failed == 0
        row = store.load_row(story_id)
        assert row is not None
        assert (row.summary.state, row.summary.lease_owner) == (WorkflowState.REVIEWING, None)
        assert [r.trigger for r in store.history(story_id)][-1] is Trigger.ATTEMPT_FAILED
        assert worker(store).run(stop_when_idle=True).completed == 1

    def test_a_slow_callback_on_the_opening_event_keeps_the_claim(
        self, store: WorkflowStateManager
    ) -> None:
        """``workflow_started`` handled for longer than the lease: the claim is renewed.

        It used to be sent before the run began, with no heartbeat behind it: the lease
        lapsed, another worker took the story over and the first one's work was lost.
        """
        (story_id,) = submit(store, 1)
        opened = threading.Event()

        def slow(event: str, data: Any) -> None:
            if event == "workflow_started":
                opened.set()
                time.sleep(2.0)  # more than three leases

        first = worker(store, concurrency=1, lease_seconds=0.6, worker_id="A",
                       progress_callback=slow)  # fmt: skip
        other = worker(store, concurrency=1, lease_seconds=0.6, worker_id="B")
        threads = [threading.Thread(target=w.run, kwargs={"stop_when_idle": True})
                   for w in (first, other)]  # fmt: skip
        threads[0].start()
        assert opened.wait(10)
        threads[1].start()
        for thread in threads:
            thread.join(30)
        assert first.stats.completed == 1 and first.stats.lost == 0
        assert other.stats.claimed == 0
        owners = {r.payload.get("owner") for r in store.history(story_id) if r.payload}
        assert owners & {"B"} == set()

    def test_a_drained_review_is_not_announced(self, store: WorkflowStateManager) -> None:
        """Stopped during a polish: no iteration_started for the review it never runs."""
        (story_id,) = submit(store, 1)
        events: list[tuple[str, Any]] = []
        holder: dict[str, Worker] = {}

        class StopDuringPolish(ScriptedPolisher):
            def polish_story(self, **kwargs: Any) -> Any:
                holder["worker"].stop()  # SIGTERM while the polish is in flight
                return super().polish_story(**kwargs)

        w = worker(
            store, ScriptedReviewer(review(50)), StopDuringPolish(), concurrency=1,
            progress_callback=lambda event, data: events.append((event, data.get("iteration"))),
        )  # fmt: skip
        holder["worker"] = w
        assert w.run().released == 1
        assert events[-1] == ("polish_complete", 1)
        assert store.load_row(story_id).summary.state is WorkflowState.REVIEWING  # type: ignore[union-attr]


@contextmanager
def write_lock_held(url: str, seconds: float) -> Iterator[None]:
    """Take the SQLite file's write lock from a connection of its own, as another process
    writing would, and give it back after *seconds* (the block's end waits for that)."""
    other = sqlite3.connect(
        sa.make_url(url).database or "", isolation_level=None, check_same_thread=False
    )
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(seconds, other.commit)
    release.start()
    try:
        yield
    finally:
        release.join()
        other.close()


class TestBusyDatabase:
    def test_a_claim_that_finds_the_file_locked_is_tried_again(self, sqlite_url: str) -> None:
        """Another writer holding the file past the busy timeout is waited out, not fatal.

        The claim's DatabaseBusyError stopped the worker (run() raised it) though the
        database was there; now each busy poll is logged and counted, and the story is run
        once the lock is free.
        """
        with WorkflowStateManager(sqlite_url, busy_timeout_seconds=0.2) as store:
            [story_id] = submit(store, 1)
            with write_lock_held(sqlite_url, 1.0), capture_logs() as logs:
                stats = worker(store, concurrency=2).run(stop_when_idle=True)
            assert (stats.claimed, stats.completed, stats.errors) == (1, 1, 0)
            busy = [e for e in logs if e["event"] == "worker_database_busy"]
            assert stats.busy == len(busy) >= 1
            assert {e["log_level"] for e in busy} == {"warning"}
            assert "locked past the busy timeout" in busy[0]["error"]
            assert busy[0]["retry_after_seconds"] == 0.05
            assert store.load_row(story_id).summary.state is WorkflowState.COMPLETE  # type: ignore[union-attr]

    def test_a_stop_ends_the_wait_after_a_busy_claim(self, sqlite_url: str) -> None:
        """A worker asked to stop while it waits to poll a busy file again returns at once."""
        with WorkflowStateManager(sqlite_url, busy_timeout_seconds=0.1) as store:
            submit(store, 1)
            w = worker(store, concurrency=1, poll_seconds=30)
            runner = threading.Thread(target=w.run)
            with write_lock_held(sqlite_url, 1.0):
                runner.start()
                wait_until(lambda: w.stats.busy >= 1, 5, "a busy claim")
                w.stop()
                runner.join(5)
            assert not runner.is_alive()
            assert (w.stats.busy, w.stats.claimed) == (1, 0)

    def test_a_write_of_a_run_that_finds_the_file_locked_still_stops_the_worker(
        self, sqlite_url: str
    ) -> None:
        """Busy while a claimed story's run writes is as before: run() raises it, claim kept.

        The review's answer was not written, so the story stays in REVIEWING, held until its
        lease expires; then a worker takes it over and the review runs again.
        """
        with WorkflowStateManager(sqlite_url, busy_timeout_seconds=0.2) as store:
            [story_id] = submit(store, 1)
            reviewer = ScriptedReviewer(review(99, "publish"))
            w = worker(store, reviewer, concurrency=1, lease_seconds=1.5)
            with ExitStack() as held:

                def review_while_another_writes() -> dict[str, Any]:
                    if len(reviewer.calls) == 1:
                        held.enter_context(write_lock_held(sqlite_url, 1.0))
                    return review(99, "publish")

                reviewer.script = [review_while_another_writes]
                with pytest.raises(DatabaseBusyError, match=story_id):
                    w.run()
                summary = store.load_row(story_id).summary  # type: ignore[union-attr]
            assert (summary.state, summary.lease_owner) == (WorkflowState.REVIEWING, w.worker_id)
            assert w.stats.busy == 0
            # The next worker polls until that lease lapses, then runs the review again.
            assert worker(store, reviewer).run(stop_when_idle=True).completed == 1
            assert len(reviewer.calls) == 2


class TestRateLimit:
    def test_limiter_blocks_past_the_budget(self) -> None:
        """Within a minute, calls past the per-stage cap wait; other stages are free."""
        limiter = StageRateLimiter({"review": 2})
        limiter(Stage.REVIEW)
        limiter(Stage.REVIEW)
        limiter(Stage.POLISH)  # not capped
        third = threading.Thread(target=limiter, args=(Stage.REVIEW,), daemon=True)
        third.start()
        third.join(0.5)
        assert third.is_alive()

    def test_a_call_waiting_for_its_budget_keeps_its_claim_and_stops_on_stop(
        self, store: WorkflowStateManager
    ) -> None:
        """A story whose review waits for the rate limit stays held past lease_seconds.

        Another worker cannot take it over meanwhile (the lease is renewed while it waits), and
        a stop gives the wait up: the story is released with no review call made for it.
        """
        submit(store, 2)
        reviewer = ScriptedReviewer(review(99, "publish"))
        w = worker(store, reviewer, concurrency=2, lease_seconds=0.6, rate_limits={"review": 1})
        runner = threading.Thread(target=w.run)
        runner.start()
        try:
            deadline = time.monotonic() + 10
            while w.stats.completed < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert w.stats.completed == 1
            time.sleep(1.5)  # well past lease_seconds: the waiting story's claim must hold
            waiting = [s for s in store.list_workflows() if s.state is WorkflowState.REVIEWING]
            assert len(waiting) == 1 and waiting[0].lease_owner is not None
            assert store.claim_next(Lease("thief", "t-1", 0.6)) is None  # held: none to claim
        finally:
            w.stop()
            runner.join(5)
        assert not runner.is_alive()
        assert len(reviewer.calls) == 1  # the waiting story's review was never called
        summary = store.load_row(waiting[0].story_id).summary  # type: ignore[union-attr]
        assert (summary.state, summary.lease_owner) == (WorkflowState.REVIEWING, None)
        assert w.stats.released == 1

    @pytest.mark.parametrize("bad", [{"review": 0}, {"review": 1.5}, {"reviewing": 3}])
    def test_bad_limits_are_refused(self, bad: dict[str, Any]) -> None:
        """Limits must be whole numbers >= 1 for known stages (story_fsm's own error)."""
        with pytest.raises(InputValidationError, match="rate limit"):
            StageRateLimiter(bad)


def start_worker(
    url: str, worker_id: str, concurrency: int, lease: float, **env: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker_entry", url, worker_id, str(concurrency), str(lease)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def await_ready(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY", proc.stderr.read() if proc.stderr else ""
    return proc


def spawn_worker(
    url: str, worker_id: str, concurrency: int, lease: float, **env: str
) -> subprocess.Popen[str]:
    return await_ready(start_worker(url, worker_id, concurrency, lease, **env))


def stage_entries(records: list[TransitionRecord]) -> Counter[tuple[str, int]]:
    """Per (stage, iteration): rows that entered the stage, i.e. licensed one stage call."""
    entries: Counter[tuple[str, int]] = Counter()
    for r in records:
        if r.trigger is Trigger.ATTEMPT_FAILED or r.dest not in (
            WorkflowState.REVIEWING,
            WorkflowState.POLISHING,
        ):
            continue
        iteration = r.iteration + 1 if r.trigger is Trigger.POLISHED else r.iteration
        entries[("review" if r.dest is WorkflowState.REVIEWING else "polish", iteration)] += 1
    return entries


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
class TestManyWorkerProcesses:
    def test_three_workers_one_killed_every_story_completes_once(self, database_url: str) -> None:
        """Three worker processes, one SIGKILLed midway: all stories COMPLETE exactly once."""
        n = 200 if database_url.startswith("postgresql") else 60
        engine = make_engine(database_url)
        create_calls_table(engine)
        with WorkflowStateManager(database_url) as store:
            ids = submit(store, n)
            # Started together, so no worker gets a head start on the queue.
            workers = [
                await_ready(p)
                for p in [start_worker(database_url, f"w{i}", 4, 2.0) for i in range(3)]
            ]

            def completed() -> int:
                return sum(s.state is WorkflowState.COMPLETE for s in store.list_workflows())

            wait_until(lambda: completed() >= n // 3, 120, "a third of the stories")
            workers[0].send_signal(signal.SIGKILL)
            workers[0].communicate(timeout=10)
            wait_until(lambda: completed() == n, 180, "every story to complete")
            for proc in workers[1:]:
                proc.send_signal(signal.SIGTERM)
            outputs = [proc.communicate(timeout=60) for proc in workers[1:]]
            assert [proc.returncode for proc in workers[1:]] == [0, 0], outputs
            histories = {story_id: store.history(story_id) for story_id in ids}
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT story_id, stage, iteration FROM test_calls")).all()
        engine.dispose()
        calls: dict[str, Counter[tuple[str, int]]] = {}
        for story_id, stage, iteration in rows:
            calls.setdefault(story_id, Counter())[(stage, iteration)] += 1
        for story_id, records in histories.items():
            assert [r.seq for r in records] == list(range(len(records))), story_id
            assert sum(r.dest is WorkflowState.COMPLETE for r in records) == 1, story_id
            # Stage calls only follow a committed entry into the stage (at most one call per
            # entry; a process killed right after committing an entry never called it). A
            # committed result is never re-run: the only second entries are resume claims of a
            # stage that was in flight on the killed worker.
            entries, made = stage_entries(records), calls[story_id]
            assert all(made[key] <= entries[key] for key in made), (story_id, made, entries)
            results = Counter(
                (r.trigger, r.iteration)
                for r in records
                if r.trigger in (Trigger.REVIEWED, Trigger.POLISHED)
            )
            assert set(results.values()) == {1}, story_id
            assert sum(results.values()) == len(made), (story_id, made)
            extra = sum(entries.values()) - len(entries)
            assert extra == sum(r.trigger is Trigger.RESUME for r in records), story_id
        starters = Counter(
            r.payload["owner"]
            for recs in histories.values()
            for r in recs
            if r.trigger is Trigger.START
        )
        assert set(starters) == {"w0", "w1", "w2"}, starters
        stats = [out.split("STATS")[1].split() for out, _ in outputs]
        assert all(int(s[1]) > n // 10 for s in stats), stats

    def test_paused_worker_cannot_write_after_takeover(self, pg_url: str) -> None:
        """A worker frozen past its lease is fenced: the new holder finishes, its write is refused."""
        engine = make_engine(pg_url)
        create_calls_table(engine)
        with WorkflowStateManager(pg_url) as store:
            submit(store, 1, prefix="p")
            frozen = spawn_worker(pg_url, "frozen", 1, 1.0, STAGE_SLEEP="0.6")

            def calls() -> list[tuple[Any, ...]]:
                with engine.connect() as conn:
                    return [
                        tuple(r)
                        for r in conn.execute(
                            sa.text("SELECT stage, iteration, worker_id FROM test_calls")
                        )
                    ]

            wait_until(
                lambda: ("review", 1, "frozen") in calls(), 30, "the frozen worker's first call"
            )
            frozen.send_signal(signal.SIGSTOP)
            time.sleep(1.5)  # past the 1 s lease, with no heartbeat
            stages = LoggedStages(engine, "rescuer")
            rescuer = Worker(
                stages,
                stages,
                store,
                CONFIG,
                lease_seconds=5,
                worker_id="rescuer",
                poll_seconds=0.05,
            )
            assert rescuer.run(stop_when_idle=True).completed == 1
            frozen.send_signal(signal.SIGCONT)
            time.sleep(1.0)  # its stage returns; its write must be refused
            frozen.send_signal(signal.SIGTERM)
            out, err = frozen.communicate(timeout=30)
            records = store.history("p0000")
        logged = calls()
        engine.dispose()
        assert frozen.returncode == 0, err
        claimed, completed, _failed, lost, _released = map(int, out.split("STATS")[1].split())
        assert (claimed, completed, lost) == (1, 0, 1)
        assert sum(r.trigger is Trigger.REVIEWED and r.iteration == 1 for r in records) == 1
        assert records[-1].dest is WorkflowState.COMPLETE
        resume = next(r for r in records if r.trigger is Trigger.RESUME)
        assert resume.payload["owner"] == "rescuer"
        assert logged.count(("review", 1, "frozen")) == 1
