"""The engine's internal records: what the store reads for a run and what one transition writes.

Not part of the public API: callers get :mod:`story_fsm.models`' results instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from story_fsm.models import WorkflowSummary
from story_fsm.states import Stage, Trigger, WorkflowState

__all__ = ["Lease", "NewWorkflow", "TransitionWrite", "WorkflowRow"]


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """The stored summary row of one workflow, as the store reads it (internal)."""

    summary: WorkflowSummary
    initial_title: str
    initial_script: str
    script: str
    audience_context: dict[str, Any]
    original_idea: str
    local_review_summary: Any
    config: dict[str, Any]
    initial_quality_score: float | None
    total_reviews: int
    total_polishes: int
    failed_stage: Stage | None
    completed_at: datetime | None
    last_review: dict[str, Any] | None = None
    lease_token: str | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """Who may advance a workflow, until when (internal).

    Attributes:
        owner: A readable name of the holder (host:pid, or a worker id).
        token: A fresh random token per hold; writes are fenced on it.
        seconds: How long the hold lasts past each write or heartbeat.
    """

    owner: str
    token: str
    seconds: float


@dataclass(frozen=True, slots=True)
class NewWorkflow:
    """A validated workflow submission (internal)."""

    story_id: str
    title: str
    script: str
    audience_context: dict[str, Any]
    original_idea: str
    local_review_summary: Any
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TransitionWrite:
    """Everything one transition writes: its history row and the summary row's update.

    Attributes:
        trigger: The edge's event.
        source: State left.
        dest: State entered (== source for records that do not move).
        iteration: Iteration the row belongs to.
        next_iteration: The workflow's iteration after the edge.
        payload: The row's payload (serialized once, by the store).
        stage: Stage the row reports on, if any.
        attempt: That stage's attempt number, if any.
        duration_seconds: That attempt's duration, if any.
        cost: That attempt's cost, if any.
        error: The failure text, for failed attempts.
        title: The new current title (after a polish).
        script: The new current script (after a polish that changed it).
        quality_score: The review's score (after a review).
        decision: The workflow's decision, on reaching COMPLETE.
        failed_stage: The failed stage, on reaching FAILED.
        takeover: Take the lease over regardless of its holder (explicit resume).
        release_lease: Leave the workflow unheld after this row (an operator's re-queue), so
            any worker may claim it at once.
    """

    trigger: Trigger
    source: WorkflowState
    dest: WorkflowState
    iteration: int
    next_iteration: int
    payload: dict[str, Any] = field(default_factory=dict)
    stage: Stage | None = None
    attempt: int | None = None
    duration_seconds: float | None = None
    cost: float | None = None
    error: str | None = None
    title: str | None = None
    script: str | None = None
    quality_score: float | None = None
    decision: str | None = None
    failed_stage: Stage | None = None
    takeover: bool = False
    release_lease: bool = False
