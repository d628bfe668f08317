"""Awaiting a run: ``run_story_workflow_async`` and ``resume_async`` on real databases.

The awaited run is the blocking one on a thread of the engine's pool; these tests pin what
the coroutine adds: the event loop stays free, and a cancel of the awaiting task stops the run
at its next stage boundary, with the stage in flight committed and the lease given back.
Ordering is by ``threading.Event``; the run's end (after the await was cancelled) is seen in
the log line it writes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

import story_fsm
from story_fsm import (
    InputValidationError,
    StageFailedError,
    StoryWorkflowOrchestrator,
    Trigger,
    WorkflowConfig,
    WorkflowNotFoundError,
    WorkflowResult,
    WorkflowState,
    WorkflowStateManager,
)
from story_fsm._executor import StageExecutor
from story_fsm._records import Lease
from tests.stages import ScriptedPolisher, ScriptedReviewer, review

CONFIG = WorkflowConfig(max_iterations=3, retry_backoff_seconds=0)
#: Bounds every wait on another thread: a test that gets there has failed, not hung.
WAIT = 10.0


class LogWatch:
    """A structlog processor that keeps every thread's log lines and lets a test wait for one."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self._changed = threading.Condition()

    def __call__(self, logger: Any, method: str, event_dict: Any) -> Any:
        with self._changed:
            self.entries.append({**event_dict, "log_level": method})
            self._changed.notify_all()
        raise structlog.DropEvent

    def events(self) -> list[str]:
        with self._changed:
            return [e["event"] for e in self.entries]

    def wait_for(self, event: str) -> dict[str, Any]:
        """The first line logged as *event*, once there is one (fails after WAIT seconds)."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.entries if e["event"] == event), None)

        with self._changed:
            assert self._changed.wait_for(lambda: found() is not None, WAIT), (
                f"no {event!r} in {[e['event'] for e in self.entries]}"
            )
            entry = found()
            assert entry is not None
            return entry


@pytest.fixture
def logs() -> Iterator[LogWatch]:
    """Every log line of the test, from any thread (the autouse fixture resets structlog)."""
    watch = LogWatch()
    structlog.configure(processors=[watch])
    yield watch


class Gate:
    """A stage answer held back until the test opens the gate.

    ``entered`` is set when the call begins, ``left`` when it returns (or raises *answer*).
    """

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.left = threading.Event()

    def __call__(self) -> Any:
        self.entered.set()
        try:
            assert self.opened.wait(WAIT), "the test never opened the gate"
            if isinstance(self.answer, BaseException):
                raise self.answer
            return self.answer
        finally:
            self.left.set()


class Events:
    """A progress callback that keeps the events and the threads they came from."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        with self._lock:
            self.names.append(event)
            self.threads.add(threading.get_ident())


def orchestrator(
    store: WorkflowStateManager, reviewer: Any, polisher: Any = None, **kwargs: Any
) -> StoryWorkflowOrchestrator:
    return StoryWorkflowOrchestrator(
        reviewer, polisher or ScriptedPolisher(), store, CONFIG, **kwargs
    )


async def cancelled_mid_stage(
    start: Callable[[], Coroutine[Any, Any, WorkflowResult]], gate: Gate
) -> None:
    """Start the run, cancel it once *gate*'s stage is in its call; return once it raised."""
    task = asyncio.ensure_future(start())
    assert await asyncio.to_thread(gate.entered.wait, WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Raised while the stage is still in its call: the await did not wait for it.
    assert not gate.left.is_set()


def stored(store: WorkflowStateManager, story_id: str) -> Any:
    row = store.load_row(story_id)
    assert row is not None
    return row.summary


class TestLikeTheBlockingCall:
    def test_an_awaited_run_returns_what_a_blocking_run_returns(
        self, store: WorkflowStateManager
    ) -> None:
        """review(50) → polish → review(99, publish): the same result and the same rows."""
        answers = (review(50), review(99, "publish"))
        blocking = orchestrator(store, ScriptedReviewer(*answers)).run_story_workflow(
            "blocking", "T", "S", {"age": 8}
        )
        awaited = asyncio.run(
            orchestrator(store, ScriptedReviewer(*answers)).run_story_workflow_async(
                "awaited", "T", "S", {"age": 8}
            )
        )
        assert awaited == store.load_state("awaited")
        assert awaited.state is WorkflowState.COMPLETE and awaited.decision == "publish"
        same = ("quality_scores", "final_title", "final_script", "total_cost", "total_polishes")
        assert {k: getattr(awaited, k) for k in same} == {k: getattr(blocking, k) for k in same}
        assert [r.trigger for r in store.history("awaited")] == [
            r.trigger for r in store.history("blocking")
        ]

    def test_a_stage_that_fails_every_attempt_raises_stage_failed_error(
        self, store: WorkflowStateManager
    ) -> None:
        """A review that fails every attempt: StageFailedError, as the blocking call raises."""
        reviewer = ScriptedReviewer(RuntimeError("the model is down"))
        with pytest.raises(StageFailedError) as failed:
            asyncio.run(orchestrator(store, reviewer).run_story_workflow_async("s", "T", "S", {}))
        assert failed.value.result.state is WorkflowState.FAILED
        assert len(reviewer.calls) == CONFIG.max_stage_retries
        assert stored(store, "s").lease_owner is None

    def test_resume_async_goes_on_from_the_stored_state(self, store: WorkflowStateManager) -> None:
        """A FAILED review is retried, and a COMPLETE workflow is returned with no call."""
        down = ScriptedReviewer(RuntimeError("down"))
        with pytest.raises(StageFailedError):
            orchestrator(store, down).run_story_workflow("s", "T", "S", {})
        reviewer = ScriptedReviewer(review(99, "publish"))
        resumed = asyncio.run(orchestrator(store, reviewer).resume_async("s"))
        assert resumed.state is WorkflowState.COMPLETE and len(reviewer.calls) == 1
        again = asyncio.run(orchestrator(store, reviewer).resume_async("s"))
        assert again == resumed and len(reviewer.calls) == 1

    def test_resume_async_of_an_unknown_story_raises_not_found(
        self, store: WorkflowStateManager
    ) -> None:
        """No workflow under the id: WorkflowNotFoundError, and nothing is written."""
        with pytest.raises(WorkflowNotFoundError):
            asyncio.run(orchestrator(store, ScriptedReviewer()).resume_async("nobody"))
        assert store.list_workflows() == []

    @pytest.mark.parametrize(
        ("override", "message"),
        [
            pytest.param({"story_id": ""}, "story_id", id="empty-story-id"),
            pytest.param({"title": "  "}, "title", id="blank-title"),
            pytest.param({"script": "a\x00b"}, "NUL", id="nul-in-script"),
            pytest.param({"audience_context": {"f": object()}}, "JSON", id="context-not-json"),
        ],
    )
    def test_bad_input_is_refused_and_nothing_written(
        self, store: WorkflowStateManager, override: dict[str, Any], message: str
    ) -> None:
        """Bad input raises InputValidationError from the await; the database is unchanged."""
        args: dict[str, Any] = {"story_id": "s", "title": "T", "script": "S"}
        args["audience_context"] = {}
        args.update(override)
        reviewer = ScriptedReviewer()
        with pytest.raises(InputValidationError, match=message):
            asyncio.run(orchestrator(store, reviewer).run_story_workflow_async(**args))
        assert store.list_workflows() == [] and reviewer.calls == []


class TestTheEventLoop:
    def test_the_loop_runs_other_coroutines_while_a_stage_runs(
        self, store: WorkflowStateManager
    ) -> None:
        """A review waits for an event that only another coroutine of the loop sets."""
        gate = Gate(review(99, "publish"))
        once = WorkflowConfig(max_stage_retries=1)
        live = StoryWorkflowOrchestrator(ScriptedReviewer(gate), ScriptedPolisher(), store, once)

        async def main() -> WorkflowResult:
            run = asyncio.ensure_future(live.run_story_workflow_async("s", "T", "S", {}))
            # A loop blocked by the run would get here only once the stage gave up waiting.
            assert await asyncio.to_thread(gate.entered.wait, WAIT)
            gate.opened.set()
            return await run

        assert asyncio.run(main()).decision == "publish"

    def test_progress_callbacks_are_called_from_the_engine_s_threads(
        self, store: WorkflowStateManager
    ) -> None:
        """The events of a blocking run, in order, and none from the loop's thread."""
        events = Events()

        async def main() -> int:
            await orchestrator(
                store, ScriptedReviewer(review(50), review(99, "publish"))
            ).run_story_workflow_async("s", "T", "S", {}, progress_callback=events)
            return threading.get_ident()

        loop_thread = asyncio.run(main())
        blocking = Events()
        orchestrator(store, ScriptedReviewer(review(50), review(99, "publish"))).run_story_workflow(
            "blocking", "T", "S", {}, progress_callback=blocking
        )
        assert events.names == blocking.names and "workflow_complete" in events.names
        assert loop_thread not in events.threads


class AsyncGatedReviewer:
    """An ``async def`` reviewer whose coroutine waits for *gate* (on the stage loop)."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.calls: list[dict[str, Any]] = []

    async def review_story(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        return await asyncio.to_thread(self.gate)


class TestCancellation:
    def test_a_cancel_mid_stage_commits_that_stage_and_starts_no_other(
        self, store: WorkflowStateManager, logs: LogWatch
    ) -> None:
        """The review in flight is recorded, no polish is called, and the lease is free."""
        gate = Gate(review(50))
        reviewer, polisher, events = ScriptedReviewer(gate), ScriptedPolisher(), Events()
        live = orchestrator(store, reviewer, polisher, owner="app")
        asyncio.run(
            cancelled_mid_stage(
                lambda: live.run_story_workflow_async("s", "T", "S", {}, progress_callback=events),
                gate,
            )
        )
        gate.opened.set()
        released = logs.wait_for("workflow_released")
        assert (released["story_id"], released["owner"]) == ("s", "app")
        assert (released["state"], released["seq"]) == ("polishing", 2)
        assert logs.events().index("workflow_cancelled") < logs.events().index("workflow_released")
        assert len(reviewer.calls) == 1 and polisher.calls == []
        summary = stored(store, "s")
        assert (summary.state, summary.lease_owner) == (WorkflowState.POLISHING, None)
        assert [r.trigger for r in store.history("s")][-1] is Trigger.REVIEWED
        assert events.names == [
            "workflow_started",
            "iteration_started",
            "stage_started",
            "review_complete",
        ]

    def test_a_cancelled_run_is_resumed_at_once_without_repeating_its_stage(
        self, store: WorkflowStateManager, logs: LogWatch
    ) -> None:
        """Another orchestrator's resume finds the lease free and runs only what is left."""
        gate = Gate(review(50))
        first = ScriptedReviewer(gate)
        live = orchestrator(store, first, lease_seconds=600)
        asyncio.run(
            cancelled_mid_stage(lambda: live.run_story_workflow_async("s", "T", "S", {}), gate)
        )
        gate.opened.set()
        logs.wait_for("workflow_released")
        reviewer, polisher = ScriptedReviewer(review(99, "publish")), ScriptedPolisher()
        result = orchestrator(store, reviewer, polisher, owner="next").resume("s")
        assert result.decision == "publish" and result.quality_scores == [50.0, 99.0]
        assert len(first.calls) == 1 and len(polisher.calls) == 1
        assert [c["story_version"] for c in reviewer.calls] == ["v2"]
        resumed = next(r for r in store.history("s") if r.trigger is Trigger.RESUME)
        assert resumed.payload == {"owner": "next"}  # no took_over_from: nobody held it
        assert "lease_taken_over" not in logs.events()

    def test_a_cancelled_resume_leaves_a_story_that_can_be_deleted_at_once(
        self, store: WorkflowStateManager, logs: LogWatch
    ) -> None:
        """resume_async cancelled in its review: the review is kept, and delete is not refused."""
        orchestrator(store, ScriptedReviewer()).submit("s", "T", "S", {})
        gate = Gate(review(50))
        reviewer, polisher = ScriptedReviewer(gate), ScriptedPolisher()
        live = orchestrator(store, reviewer, polisher, lease_seconds=600)
        asyncio.run(cancelled_mid_stage(lambda: live.resume_async("s"), gate))
        gate.opened.set()
        logs.wait_for("workflow_released")
        assert [r.trigger for r in store.history("s")][-1] is Trigger.REVIEWED
        assert len(reviewer.calls) == 1 and polisher.calls == []
        store.delete_workflow("s")  # WorkflowLeasedError while a live lease holds it
        assert store.list_workflows() == []

    def test_a_cancel_during_an_async_stage_commits_it_and_the_stage_loop_goes_on(
        self, store: WorkflowStateManager, logs: LogWatch
    ) -> None:
        """An async review in flight on the stage loop is awaited to its end and recorded."""
        gate = Gate(review(50))
        reviewer, polisher = AsyncGatedReviewer(gate), ScriptedPolisher()
        live = orchestrator(store, reviewer, polisher)
        asyncio.run(
            cancelled_mid_stage(lambda: live.run_story_workflow_async("s", "T", "S", {}), gate)
        )
        gate.opened.set()
        logs.wait_for("workflow_released")
        assert len(reviewer.calls) == 1 and polisher.calls == []
        assert stored(store, "s").state is WorkflowState.POLISHING
        # The stage loop was not left waiting on anything: the next async review runs on it.
        after = AsyncGatedReviewer(Gate(review(99, "publish")))
        after.gate.opened.set()
        result = asyncio.run(orchestrator(store, after).resume_async("s"))
        assert result.decision == "publish" and len(after.calls) == 1

    def test_a_stage_that_fails_after_the_cancel_is_not_tried_again(
        self, store: WorkflowStateManager, logs: LogWatch
    ) -> None:
        """The failed attempt in flight is recorded; its retry, a new paid call, is not made."""
        gate = Gate(RuntimeError("the model is down"))
        reviewer = ScriptedReviewer(gate)
        live = orchestrator(store, reviewer)
        asyncio.run(
            cancelled_mid_stage(lambda: live.run_story_workflow_async("s", "T", "S", {}), gate)
        )
        gate.opened.set()
        logs.wait_for("workflow_released")
        assert len(reviewer.calls) == 1
        summary = stored(store, "s")
        assert (summary.state, summary.lease_owner) == (WorkflowState.REVIEWING, None)
        assert [r.trigger for r in store.history("s")][-1] is Trigger.ATTEMPT_FAILED

    def test_a_cancel_in_the_last_stage_lets_the_workflow_complete(
        self, store: WorkflowStateManager, logs: LogWatch
    ) -> None:
        """The review in flight says publish: the workflow is COMPLETE, and says so."""
        gate = Gate(review(99, "publish"))
        events = Events()
        live = orchestrator(store, ScriptedReviewer(gate))
        asyncio.run(
            cancelled_mid_stage(
                lambda: live.run_story_workflow_async("s", "T", "S", {}, progress_callback=events),
                gate,
            )
        )
        gate.opened.set()
        logs.wait_for("workflow_complete")
        summary = stored(store, "s")
        assert (summary.state, summary.lease_owner) == (WorkflowState.COMPLETE, None)
        assert events.names[-2:] == ["review_complete", "workflow_complete"]
        assert "workflow_released" not in logs.events()

    def test_a_cancelled_run_taken_over_meanwhile_logs_its_refused_write(
        self, store: WorkflowStateManager, logs: LogWatch
    ) -> None:
        """Resumed elsewhere while its review was in flight: the late answer is refused by the
        fence, and the error nobody awaits any more is logged."""
        gate = Gate(review(50))
        live = orchestrator(store, ScriptedReviewer(gate), lease_seconds=600)
        asyncio.run(
            cancelled_mid_stage(lambda: live.run_story_workflow_async("s", "T", "S", {}), gate)
        )
        operator = orchestrator(store, ScriptedReviewer(review(99, "publish")), owner="operator")
        assert operator.resume("s").decision == "publish"
        gate.opened.set()
        refused = logs.wait_for("workflow_error_after_cancel")
        assert (refused["story_id"], refused["log_level"]) == ("s", "error")
        assert "ConcurrentAdvanceError" in refused["error"]
        assert stored(store, "s").state is WorkflowState.COMPLETE
        assert "workflow_released" not in logs.events()

    def test_a_cancel_before_the_first_write_stores_nothing(
        self, store: WorkflowStateManager, logs: LogWatch
    ) -> None:
        """The run had not started when cancelled: no workflow, no event, no stage call.

        The orchestrator's one carrier thread is kept busy, so the run can only begin
        after the cancel.
        """
        carriers = StageExecutor(max_workers=1)
        busy = threading.Event()
        carriers.submit(busy.wait)
        reviewer, events = ScriptedReviewer(), Events()
        live = orchestrator(store, reviewer, executor=carriers)

        async def main() -> None:
            task = asyncio.ensure_future(
                live.run_story_workflow_async("s", "T", "S", {}, progress_callback=events)
            )
            await asyncio.sleep(0)  # the task runs up to its await of the run
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        busy.set()
        logs.wait_for("workflow_stopped")
        assert store.list_workflows() == []
        assert reviewer.calls == [] and events.names == []
        assert "workflow_released" not in logs.events()


def one_call(
    story_id: str,
    database_url: str,
    reviewer: Any = None,
    polisher: Any = None,
    config: WorkflowConfig | None = None,
) -> Coroutine[Any, Any, WorkflowResult]:
    """``story_fsm.resume_async`` with scripted stages (none called unless given)."""
    return story_fsm.resume_async(
        story_id,
        reviewer=reviewer or ScriptedReviewer(),
        polisher=polisher or ScriptedPolisher(),
        database_url=database_url,
        config=config,
    )


class TestOneCallResumeAsync:
    def test_it_resumes_as_the_blocking_one_call_does(
        self, database_url: str, store: WorkflowStateManager
    ) -> None:
        """story_fsm.resume_async() opens the store, retries the FAILED review and returns."""
        with pytest.raises(StageFailedError):
            orchestrator(store, ScriptedReviewer(RuntimeError("down"))).run_story_workflow(
                "s", "T", "S", {}
            )
        reviewer = ScriptedReviewer(review(99, "publish"))
        result = asyncio.run(one_call("s", database_url, reviewer, config=CONFIG))
        assert result.state is WorkflowState.COMPLETE and result.decision == "publish"
        assert result == store.load_state("s") and len(reviewer.calls) == 1

    @pytest.mark.parametrize("empty_file", [False, True], ids=["mistyped-path", "empty-file"])
    def test_a_sqlite_file_holding_no_workflow_is_left_as_it_was(
        self, tmp_path: Path, empty_file: bool
    ) -> None:
        """No database at the path: WorkflowNotFoundError from the await, no file made."""
        path = tmp_path / "typo.db"
        if empty_file:
            path.touch()
        with pytest.raises(WorkflowNotFoundError, match="story-42"):
            asyncio.run(one_call("story-42", f"sqlite:///{path}"))
        assert [p.name for p in tmp_path.iterdir()] == (["typo.db"] if empty_file else [])
        assert not empty_file or path.stat().st_size == 0

    def test_a_bad_story_id_is_refused_before_anything_is_opened(self, tmp_path: Path) -> None:
        """An empty id: InputValidationError, and no database is created."""
        with pytest.raises(InputValidationError, match="story_id"):
            asyncio.run(one_call("", f"sqlite:///{tmp_path / 'new.db'}"))
        assert list(tmp_path.iterdir()) == []

    def test_a_cancel_keeps_the_store_open_until_the_run_has_stopped(
        self,
        database_url: str,
        store: WorkflowStateManager,
        logs: LogWatch,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Cancelled in its review: the review lands after the await raised and the lease is
        released, through the store the call opened, which is closed only after that."""
        closes: list[list[str]] = []
        closed = threading.Event()

        class Watched(WorkflowStateManager):
            def close(self) -> None:
                closes.append(logs.events())
                super().close()
                closed.set()

        monkeypatch.setattr(story_fsm.api, "WorkflowStateManager", Watched)
        orchestrator(store, ScriptedReviewer()).submit("s", "T", "S", {})
        gate = Gate(review(50))
        reviewer, polisher = ScriptedReviewer(gate), ScriptedPolisher()
        asyncio.run(
            cancelled_mid_stage(
                lambda: one_call("s", database_url, reviewer, polisher, CONFIG), gate
            )
        )
        assert closes == []  # the run is still in its review: its store stays open
        assert [r.trigger for r in store.history("s")][-1] is Trigger.START
        gate.opened.set()
        assert closed.wait(WAIT)
        assert len(closes) == 1 and "workflow_released" in closes[0]
        assert [r.trigger for r in store.history("s")][-1] is Trigger.REVIEWED
        summary = stored(store, "s")
        assert (summary.state, summary.lease_owner) == (WorkflowState.POLISHING, None)
        assert polisher.calls == []


def counted_while_in_its_stage(
    live: StoryWorkflowOrchestrator, gate: Gate, run: Callable[[], object]
) -> None:
    """Start *run* on a thread: it counts while *gate*'s stage holds it, not once it is over."""
    caller = threading.Thread(target=run)
    caller.start()
    assert gate.entered.wait(WAIT)
    assert live.wait_for_runs(0) is False
    gate.opened.set()
    assert live.wait_for_runs(WAIT) is True
    caller.join(WAIT)
    assert not caller.is_alive()


class TestWaitingForRuns:
    def test_a_cancelled_run_is_waited_for_until_its_stage_is_committed(
        self, store: WorkflowStateManager
    ) -> None:
        """wait_for_runs: False while the cancelled run is in its review, True once it has
        committed the review and released the lease."""
        gate = Gate(review(50))
        live = orchestrator(store, ScriptedReviewer(gate))
        asyncio.run(
            cancelled_mid_stage(lambda: live.run_story_workflow_async("s", "T", "S", {}), gate)
        )
        assert live.wait_for_runs(0) is False
        assert live.wait_for_runs(0.05) is False
        gate.opened.set()
        assert live.wait_for_runs(WAIT) is True
        summary = stored(store, "s")
        assert (summary.state, summary.lease_owner) == (WorkflowState.POLISHING, None)

    def test_the_awaited_wait_lets_the_loop_run_and_ends_with_the_run(
        self, store: WorkflowStateManager
    ) -> None:
        """wait_for_runs_async times out while the drained run's stage is held, and returns
        True once it ends; the gate is opened from the loop meanwhile."""
        gate = Gate(review(50))
        live = orchestrator(store, ScriptedReviewer(gate))

        async def main() -> tuple[bool, bool]:
            await cancelled_mid_stage(
                lambda: live.run_story_workflow_async("s", "T", "S", {}), gate
            )
            early = await live.wait_for_runs_async(0.05)
            asyncio.get_running_loop().call_later(0.05, gate.opened.set)
            return early, await live.wait_for_runs_async(WAIT)

        assert asyncio.run(main()) == (False, True)
        assert [r.trigger for r in store.history("s")][-1] is Trigger.REVIEWED
        assert stored(store, "s").lease_owner is None

    def test_a_blocking_run_in_another_thread_is_counted(self, store: WorkflowStateManager) -> None:
        """A run_story_workflow on another thread counts from its call to its return."""
        gate = Gate(review(99, "publish"))
        live = orchestrator(store, ScriptedReviewer(gate))
        results: list[WorkflowResult] = []
        counted_while_in_its_stage(
            live, gate, lambda: results.append(live.run_story_workflow("s", "T", "S", {}))
        )
        assert results and results[0].state is WorkflowState.COMPLETE

    def test_a_claimed_run_is_counted(self, store: WorkflowStateManager) -> None:
        """advance_claimed (a worker's run) counts from its call to its return."""
        orchestrator(store, ScriptedReviewer()).submit("s", "T", "S", {})
        lease = Lease("worker-1", "token", 60)
        row = store.claim_next(lease)
        assert row is not None
        gate = Gate(review(99, "publish"))
        live = orchestrator(store, ScriptedReviewer(gate))
        counted_while_in_its_stage(live, gate, lambda: live.advance_claimed(row, lease))
        assert stored(store, "s").state is WorkflowState.COMPLETE

    def test_with_no_run_both_return_true_at_once(self, store: WorkflowStateManager) -> None:
        """No run was started, or every run has returned: True, with no wait."""
        live = orchestrator(store, ScriptedReviewer(review(99, "publish")))
        assert live.wait_for_runs(0) is True
        live.run_story_workflow("s", "T", "S", {})
        assert live.wait_for_runs(0) is True
        assert asyncio.run(live.wait_for_runs_async(0)) is True

    def test_a_failed_or_refused_run_is_not_left_counted(self, store: WorkflowStateManager) -> None:
        """A run that raised (its stage failed; the story existed already) counts no more."""
        live = orchestrator(store, ScriptedReviewer(RuntimeError("down")))
        with pytest.raises(StageFailedError):
            live.run_story_workflow("s", "T", "S", {})
        with pytest.raises(StageFailedError):
            asyncio.run(live.resume_async("s"))
        with pytest.raises(WorkflowNotFoundError):
            live.resume("nobody")
        assert live.wait_for_runs(0) is True

    @pytest.mark.parametrize("timeout", [-1, float("nan"), float("inf"), "5", True])
    def test_a_bad_timeout_is_refused(self, store: WorkflowStateManager, timeout: object) -> None:
        """A timeout that is not None nor seconds >= 0: InputValidationError, from both."""
        live = orchestrator(store, ScriptedReviewer())
        with pytest.raises(InputValidationError, match="timeout"):
            live.wait_for_runs(timeout)  # type: ignore[arg-type]
        with pytest.raises(InputValidationError, match="timeout"):
            asyncio.run(live.wait_for_runs_async(timeout))  # type: ignore[arg-type]
