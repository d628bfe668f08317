"""What each edge writes: pure functions from an edge and its outcome to the row to store.

No I/O here; :class:`~story_fsm._run.WorkflowRun` hands the result to the store.
"""

from __future__ import annotations

from typing import Any

from story_fsm._attempts import AttemptFailure
from story_fsm._normalize import PolishOutcome, ReviewOutcome
from story_fsm._records import TransitionWrite
from story_fsm.models import DECISION_MAX_ITERATIONS, DECISION_PUBLISH
from story_fsm.states import Stage, Trigger, WorkflowState

__all__ = ["failure_write", "polish_write", "review_write"]


def review_write(
    src: WorkflowState, dst: WorkflowState, it: int, kw: dict[str, Any]
) -> TransitionWrite:
    """The ``reviewed`` row: the review's whole answer, its score and decision, its cost."""
    review: ReviewOutcome = kw["outcome"]
    payload = {
        "story_version": f"v{it}",
        "quality_score": review.quality_score,
        "decision": review.decision.value,
        "review": review.data,
    }
    return TransitionWrite(
        Trigger.REVIEWED,
        src,
        dst,
        it,
        it,
        payload=payload,
        stage=Stage.REVIEW,
        attempt=kw["attempt"],
        duration_seconds=kw["duration"],
        cost=review.cost,
        quality_score=review.quality_score,
        decision=DECISION_PUBLISH if dst is WorkflowState.COMPLETE else None,
    )


def polish_write(
    src: WorkflowState, dst: WorkflowState, it: int, kw: dict[str, Any], script: str
) -> TransitionWrite:
    """The ``polished`` row: the new title and script (a script left unchanged is not kept)."""
    polish: PolishOutcome = kw["outcome"]
    data = dict(polish.data)
    unchanged = polish.script == script
    if unchanged:
        # The script is already stored; keeping a second copy would only cost space.
        data.pop("polished_script", None)
    payload = {"title": polish.title, "changes_count": polish.changes_count, "polish": data}
    if unchanged:
        payload["script_unchanged"] = True
    return TransitionWrite(
        Trigger.POLISHED,
        src,
        dst,
        it,
        it + 1 if dst is WorkflowState.REVIEWING else it,
        payload=payload,
        stage=Stage.POLISH,
        attempt=kw["attempt"],
        duration_seconds=kw["duration"],
        cost=polish.cost,
        title=polish.title,
        script=None if unchanged else polish.script,
        decision=DECISION_MAX_ITERATIONS if dst is WorkflowState.COMPLETE else None,
    )


def failure_write(
    trigger: Trigger, src: WorkflowState, dst: WorkflowState, it: int, failure: AttemptFailure
) -> TransitionWrite:
    """An ``attempt_failed`` or ``fail`` row: the stage, attempt, error text and duration."""
    payload: dict[str, Any] = {
        "stage": failure.stage.value,
        "attempt": failure.attempt,
        "error": failure.error_text,
    }
    if trigger is Trigger.ATTEMPT_FAILED:
        payload["next_wait_seconds"] = failure.next_wait_seconds
    rejected = failure.rejected_answer
    if rejected is not None:  # what was paid for and refused, for the audit trail
        payload["rejected_answer"] = rejected
    return TransitionWrite(
        trigger,
        src,
        dst,
        it,
        it,
        payload=payload,
        stage=failure.stage,
        attempt=failure.attempt,
        duration_seconds=failure.duration_seconds,
        error=failure.error_text,
        cost=failure.cost or None,
        failed_stage=failure.stage if dst is WorkflowState.FAILED else None,
    )
