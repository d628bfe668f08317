"""Async stages: a reviewer or polisher whose method is ``async def``, on real databases.

The coroutines run on the process's one stage loop (``story_fsm._aio``); the engine's
durability, timeouts and retries apply to them as to synchronous stages.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import openai
import pytest

from story_fsm import (
    StageFailedError,
    StoryWorkflowOrchestrator,
    Worker,
    WorkflowConfig,
    WorkflowState,
    WorkflowStateManager,
    stage_time_left,
)
from story_fsm._aio import LOOP_THREAD_NAME, stage_loop
from tests.fake_llm_server import FakeLLMServer
from tests.stages import review


class AsyncReviewer:
    """Answers from a script like tests.stages.ScriptedReviewer, from a coroutine.

    An item may be an answer, an exception to raise, or an ``async`` callable awaited for
    the answer. The last item repeats. Each call notes its thread, its loop and the time
    it had left.
    """

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []
        self.seen: list[tuple[str, asyncio.AbstractEventLoop, float | None]] = []
        self._lock = threading.Lock()

    async def review_story(self, **kwargs: Any) -> Any:
        with self._lock:
            self.calls.append(kwargs)
            item = self.script[min(len(self.calls) - 1, len(self.script) - 1)]
        self.seen.append(
            (threading.current_thread().name, asyncio.get_running_loop(), stage_time_left())
        )
        await asyncio.sleep(0)  # a real suspension, as a network call makes
        if isinstance(item, BaseException):
            raise item
        return await item() if callable(item) else item


class AsyncPolisher:
    """Polishes by appending a marker, from a coroutine."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def polish_story(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        await asyncio.sleep(0)
        return {
            "polished_title": kwargs["current_title"],
            "polished_script": f"{kwargs['current_script']} [polished {len(self.calls)}]",
            "change_log": ["tightened"],
        }


def config(**overrides: Any) -> WorkflowConfig:
    return WorkflowConfig(**{"max_iterations": 3, "retry_backoff_seconds": 0, **overrides})


def test_async_stages_run_the_loop_to_complete(database_url: str) -> None:
    """review(60) → polish → review(97, publish): the result and every row are stored as a
    synchronous run stores them, and each call ran on the stage loop's thread."""
    reviewer, polisher = AsyncReviewer(review(60), review(97, "publish")), AsyncPolisher()
    with WorkflowStateManager(database_url) as store:
        result = StoryWorkflowOrchestrator(reviewer, polisher, store, config()).run_story_workflow(
            "a-1", "Title", "Script.", {"age": "adult"}
        )
        stored = store.load_state("a-1")
        triggers = [record.trigger.value for record in store.history("a-1")]
    assert result.state is WorkflowState.COMPLETE and result.decision == "publish"
    assert result.quality_scores == [60.0, 97.0]
    assert result.final_script == "Script. [polished 1]"
    assert stored == result
    assert triggers == ["submit", "start", "reviewed", "polished", "reviewed"]
    assert polisher.calls[0]["expert_review_data"]["quality_score"] == 60
    assert reviewer.calls[1]["script"] == "Script. [polished 1]"
    assert {thread for thread, _, _ in reviewer.seen} == {LOOP_THREAD_NAME}


def test_an_async_stage_past_its_timeout_is_cancelled_then_retried(sqlite_url: str) -> None:
    """The first review hangs: at the stage timeout its coroutine is cancelled (its request
    would be closed), the attempt is recorded as a StageTimeoutError, and the retry publishes."""
    cancelled = threading.Event()

    async def hang() -> Any:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return review(97, "publish")  # pragma: no cover - cancelled before

    reviewer = AsyncReviewer(hang, review(97, "publish"))
    with WorkflowStateManager(sqlite_url) as store:
        orchestrator = StoryWorkflowOrchestrator(
            reviewer, AsyncPolisher(), store, config(stage_timeout_seconds=0.3)
        )
        result = orchestrator.run_story_workflow("a-2", "Title", "Script.", {})
        failed = [r for r in store.history("a-2") if r.trigger.value == "attempt_failed"]
    assert cancelled.wait(5), "the timed-out coroutine was never cancelled"
    assert result.state is WorkflowState.COMPLETE and len(reviewer.calls) == 2
    assert len(failed) == 1 and failed[0].attempt == 1
    assert failed[0].error == "StageTimeoutError: review took longer than 0.3s"


def test_the_stage_s_own_timeout_error_keeps_its_text(sqlite_url: str) -> None:
    """A TimeoutError the stage raises itself (an upstream's) is recorded as it was, not
    taken for the engine's stage timeout."""
    reviewer = AsyncReviewer(TimeoutError("upstream gateway timed out"), review(97, "publish"))
    with WorkflowStateManager(sqlite_url) as store:
        StoryWorkflowOrchestrator(reviewer, AsyncPolisher(), store, config()).run_story_workflow(
            "a-3", "Title", "Script.", {}
        )
        failed = [r for r in store.history("a-3") if r.trigger.value == "attempt_failed"]
    assert [r.error for r in failed] == ["TimeoutError: upstream gateway timed out"]


def test_stage_time_left_reads_the_attempt_s_deadline(sqlite_url: str) -> None:
    """Inside the coroutine, stage_time_left() is the attempt's time left, as in a sync stage."""
    reviewer = AsyncReviewer(review(97, "publish"))
    with WorkflowStateManager(sqlite_url) as store:
        StoryWorkflowOrchestrator(
            reviewer, AsyncPolisher(), store, config(stage_timeout_seconds=42)
        ).run_story_workflow("a-4", "Title", "Script.", {})
    ((_, _, left),) = reviewer.seen
    assert left is not None and 0 < left <= 42


def test_an_async_stage_failing_every_attempt_leaves_a_resumable_workflow(
    database_url: str,
) -> None:
    """Every attempt raises: FAILED with each attempt recorded; resumed with a working async
    reviewer, the workflow completes without a second start."""
    with WorkflowStateManager(database_url) as store:
        broken = AsyncReviewer(RuntimeError("model overloaded"))
        orchestrator = StoryWorkflowOrchestrator(
            broken, AsyncPolisher(), store, config(max_stage_retries=2)
        )
        with pytest.raises(StageFailedError) as raised:
            orchestrator.run_story_workflow("a-5", "Title", "Script.", {})
        assert raised.value.result is not None
        assert raised.value.result.state is WorkflowState.FAILED and len(broken.calls) == 2
        fixed = StoryWorkflowOrchestrator(
            AsyncReviewer(review(97, "publish")), AsyncPolisher(), store, config()
        )
        result = fixed.resume("a-5")
        triggers = [record.trigger.value for record in store.history("a-5")]
    assert result.state is WorkflowState.COMPLETE
    assert triggers.count("start") == 1 and triggers.count("attempt_failed") == 1
    assert triggers[-2:] == ["retry", "reviewed"]


def test_one_async_client_serves_concurrent_runs(sqlite_url: str) -> None:
    """Four runs on four threads share one openai.AsyncOpenAI client and a real HTTP server.

    Each review waits until all four are in flight at once (an asyncio.Event, which belongs
    to one loop): that holds only if the coroutines of concurrent runs share one loop, the
    loop on which the client keeps its connections.
    """
    runs = 4
    arrived = 0
    everyone: asyncio.Event | None = None
    client: openai.AsyncOpenAI | None = None

    async def over_http() -> Any:
        nonlocal arrived, everyone
        if everyone is None:
            everyone = asyncio.Event()
        arrived += 1
        if arrived == runs:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), 10)
        assert client is not None
        reply = await client.chat.completions.create(model="m", messages=[])
        return json.loads(reply.choices[0].message.content or "")

    reviewer = AsyncReviewer(over_http)
    errors: list[BaseException] = []
    with FakeLLMServer() as server, WorkflowStateManager(sqlite_url) as store:
        client = openai.AsyncOpenAI(base_url=server.url, api_key="test", max_retries=0)
        for _ in range(runs):
            server.enqueue_completion(review(97, "publish"))
        orchestrator = StoryWorkflowOrchestrator(reviewer, AsyncPolisher(), store, config())

        def run(n: int) -> None:
            try:
                orchestrator.run_story_workflow(f"c-{n}", "Title", "Script.", {})
            except BaseException as exc:  # reported below, with the others
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(runs)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        states = {s.story_id: s.state for s in store.list_workflows()}
        requests = len(server.requests)
    asyncio.run_coroutine_threadsafe(client.close(), stage_loop()).result(10)
    assert errors == []
    assert states == {f"c-{n}": WorkflowState.COMPLETE for n in range(runs)}
    assert requests == runs
    assert len({loop for _, loop, _ in reviewer.seen}) == 1


def test_a_worker_runs_async_stages(pg_url: str) -> None:
    """Workflows submitted to PostgreSQL and run by a Worker with async stages complete."""
    with WorkflowStateManager(pg_url) as store:
        submitter = StoryWorkflowOrchestrator(None, None, store, config())
        for n in range(3):
            submitter.submit(f"w-{n}", "Title", "Script.", {})
        reviewer = AsyncReviewer(review(97, "publish"))
        worker = Worker(
            reviewer, AsyncPolisher(), store, config(), concurrency=2, poll_seconds=0.05
        )
        stats = worker.run(stop_when_idle=True)
        states = {s.story_id: s.state for s in store.list_workflows()}
    assert stats.completed == 3 and stats.failed == 0
    assert states == {f"w-{n}": WorkflowState.COMPLETE for n in range(3)}
    assert len(reviewer.calls) == 3


def test_a_system_exit_in_a_coroutine_ends_the_run_not_the_loop(sqlite_url: str) -> None:
    """SystemExit raised by an async stage ends that run as a sync stage's does (the workflow
    stays resumable in REVIEWING); the stage loop lives on and serves the next run."""
    with WorkflowStateManager(sqlite_url) as store:
        quitting = StoryWorkflowOrchestrator(
            AsyncReviewer(SystemExit(3)), AsyncPolisher(), store, config()
        )
        with pytest.raises(SystemExit):
            quitting.run_story_workflow("a-6", "Title", "Script.", {})
        row = store.load_row("a-6")
        assert row is not None and row.summary.state is WorkflowState.REVIEWING
        working = StoryWorkflowOrchestrator(
            AsyncReviewer(review(97, "publish")),
            AsyncPolisher(),
            store,
            config(stage_timeout_seconds=5, max_stage_retries=1),
        )
        assert working.resume("a-6").state is WorkflowState.COMPLETE
    assert stage_loop().is_running()
