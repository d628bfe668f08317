"""Deterministic in-process stages for the tests: scripted answers, counted calls."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from story_fsm import WorkflowStateManager


class ScriptedReviewer:
    """Answers review calls from a script: each item is an answer, or an exception to raise.

    After the script runs out, the last item repeats. Every call's keywords are kept.
    """

    def __init__(self, *script: Any, delay: float = 0.0) -> None:
        self.script = list(script) or [{"decision": "publish", "quality_score": 96}]
        self.calls: list[dict[str, Any]] = []
        self.delay = delay
        self._lock = threading.Lock()

    def review_story(self, **kwargs: Any) -> Any:
        with self._lock:
            self.calls.append(kwargs)
            item = self.script[min(len(self.calls) - 1, len(self.script) - 1)]
        if self.delay:
            time.sleep(self.delay)
        if isinstance(item, BaseException):
            raise item
        return item() if callable(item) else item


class ScriptedPolisher:
    """Polishes by appending a marker (or answers from a script like ScriptedReviewer)."""

    def __init__(self, *script: Any, delay: float = 0.0) -> None:
        self.script = list(script)
        self.calls: list[dict[str, Any]] = []
        self.delay = delay
        self._lock = threading.Lock()

    def polish_story(self, **kwargs: Any) -> Any:
        with self._lock:
            self.calls.append(kwargs)
            n = len(self.calls)
            item = self.script[min(n - 1, len(self.script) - 1)] if self.script else None
        if self.delay:
            time.sleep(self.delay)
        if isinstance(item, BaseException):
            raise item
        if item is not None:
            return item() if callable(item) else item
        return {
            "polished_title": f"{kwargs['current_title']} (v{kwargs['iteration_number'] + 1})",
            "polished_script": f"{kwargs['current_script']}\n[polish {kwargs['iteration_number']}]",
            "change_log": [f"edit {kwargs['iteration_number']}"],
            "_meta": {"cost_estimate": 0.5},
        }


def review(score: float, decision: str = "polish", cost: float = 0.25) -> dict[str, Any]:
    """A review answer in the pipeline's mapping shape."""
    return {"decision": decision, "quality_score": score, "_meta": {"cost_estimate": cost}}


class CallCounter:
    """Counts calls per key across threads."""

    def __init__(self) -> None:
        self.counts: Counter[Any] = Counter()
        self._lock = threading.Lock()

    def hit(self, key: Any) -> None:
        with self._lock:
            self.counts[key] += 1


def finish_workflow(store: WorkflowStateManager, story_id: str, *, fail: bool = False) -> None:
    """Run *story_id* to COMPLETE (or, with *fail*, to FAILED: one attempt, which fails)."""
    from story_fsm import StageFailedError, StoryWorkflowOrchestrator, WorkflowConfig

    config = WorkflowConfig(max_stage_retries=1, retry_backoff_seconds=0)
    reviewer = ScriptedReviewer(RuntimeError("down") if fail else review(99, "publish"))
    orchestrator = StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store, config)
    try:
        orchestrator.run_story_workflow(story_id, "T", "S", {})
    except StageFailedError:
        assert fail
