"""A process forked after runs (``multiprocessing`` on Linux, a pre-fork server) runs its own.

Only the forking thread survives a fork: the carriers' pool, the async stages' loop and the
rate limiters, whose threads stayed behind, start afresh in the child. Before, a child's first
run waited forever for an idle carrier thread that its copy of the pool still counted, and a
child's limiter for a lock that a thread of the parent held at the fork.
"""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest

from story_fsm import (
    Stage,
    StoryWorkflowOrchestrator,
    WorkflowConfig,
    WorkflowState,
    WorkflowStateManager,
)
from story_fsm._aio import stage_loop
from story_fsm._executor import default_executor
from story_fsm.ratelimit import StageRateLimiter
from tests.stages import ScriptedPolisher, ScriptedReviewer, review
from tests.test_async_stages import AsyncPolisher, AsyncReviewer

STAGES = {
    "sync": lambda: (ScriptedReviewer(review(60), review(97, "publish")), ScriptedPolisher()),
    "async": lambda: (AsyncReviewer(review(60), review(97, "publish")), AsyncPolisher()),
}


def _run(url: str, kind: str, story_id: str) -> WorkflowState:
    reviewer, polisher = STAGES[kind]()
    config = WorkflowConfig(stage_timeout_seconds=5, max_stage_retries=1, retry_backoff_seconds=0)
    with WorkflowStateManager(url) as store:
        orchestrator = StoryWorkflowOrchestrator(reviewer, polisher, store, config)
        return orchestrator.run_story_workflow(story_id, "Title", "Script.", {}).state


def _child(url: str, kind: str) -> None:
    state = _run(url, kind, "child")
    raise SystemExit(0 if state is WorkflowState.COMPLETE else 1)


@pytest.mark.parametrize("kind", sorted(STAGES))
def test_a_child_forked_after_a_run_runs_stories(sqlite_url: str, kind: str) -> None:
    """The parent runs a story (so its pool has an idle carrier, and its loop runs), forks,
    and the child's own story completes on threads of its own."""
    assert _run(sqlite_url, kind, "parent") is WorkflowState.COMPLETE
    assert default_executor().busy() == 0  # the parent's carriers are idle, not gone
    if kind == "async":
        assert stage_loop().is_running()
    child = multiprocessing.get_context("fork").Process(target=_child, args=(sqlite_url, kind))
    child.start()
    child.join(60)
    if child.exitcode is None:  # pragma: no cover - the failure this test is about
        child.kill()
        child.join()
        pytest.fail("the forked child's run never finished")
    assert child.exitcode == 0
    with WorkflowStateManager(sqlite_url) as store:
        row = store.load_row("child")
    assert row is not None and row.summary.state is WorkflowState.COMPLETE


def _acquired_in_time(limiter: StageRateLimiter, seconds: float) -> bool:
    """Whether a call of the limiter (under its budget) returns within *seconds*."""
    done = threading.Event()

    def call() -> None:
        limiter(Stage.REVIEW)
        done.set()

    threading.Thread(target=call, daemon=True).start()  # a daemon: it may never return
    return done.wait(seconds)


class TestRateLimiterAfterFork:
    # Python 3.12 warns on any fork of a process with threads; here the thread is the point.
    @pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
    def test_a_child_forked_while_a_thread_holds_the_limiter_can_use_it(self) -> None:
        """A limiter's lock held by another thread at the fork is a new, free lock in the child."""
        limiter = StageRateLimiter({"review": 5})
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with limiter._lock:  # as a thread inside a call does for a moment
                held.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(5)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child, whose coverage is not collected
                code = 1
                try:
                    code = 0 if _acquired_in_time(limiter, 5) else 2
                finally:
                    os._exit(code)
        finally:
            release.set()
            holder.join()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child's limiter call never returned"
        assert _acquired_in_time(limiter, 5)  # the parent's own lock was released as before
