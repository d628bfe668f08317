"""The engine's records as plain, frozen data: what is stored, what callers get back.

Nothing here does I/O. :func:`build_result` folds a workflow's summary row and its history
into a :class:`WorkflowResult`; the store calls it, so a result read after a crash is the same
object a live run returns. Each ``to_dict()`` returns data of its own: a caller may change it
without changing the record it came from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from story_fsm._json import as_stored
from story_fsm.errors import InputValidationError
from story_fsm.states import ReviewDecision, Stage, Trigger, WorkflowState

if TYPE_CHECKING:
    from story_fsm._records import WorkflowRow

__all__ = [
    "TransitionRecord",
    "WorkflowIteration",
    "WorkflowResult",
    "WorkflowSummary",
    "build_result",
]

DECISION_PUBLISH = "publish"
DECISION_MAX_ITERATIONS = "max_iterations_reached"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _known(cls: type[Any], data: Mapping[str, Any], *required: str) -> dict[str, Any]:
    """The entries of *data* that name a field of *cls*: a newer version's extra keys go.

    Raises:
        InputValidationError: *data* is no mapping, or lacks a field that has no default
            (or one of *required*).
    """
    if not isinstance(data, Mapping):
        raise InputValidationError(
            f"{cls.__name__} data must be a mapping, got {type(data).__name__}"
        )
    known = {f.name: f for f in fields(cls)}
    values = {key: value for key, value in data.items() if key in known}
    missing = [
        name
        for name, f in known.items()
        if name not in values
        and (name in required or (f.default is MISSING and f.default_factory is MISSING))
    ]
    if missing:
        raise InputValidationError(
            f"{cls.__name__} data lacks {', '.join(repr(name) for name in missing)}"
        )
    return values


@contextmanager
def _rebuilding(cls: type[Any]) -> Iterator[None]:
    """Report a value of the wrong kind met while rebuilding *cls* as bad input, not a crash."""
    try:
        yield
    except InputValidationError:
        raise
    except (TypeError, ValueError) as exc:
        raise InputValidationError(f"{cls.__name__} data holds a bad value: {exc}") from exc


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One persisted row of a workflow's history.

    Attributes:
        seq: Position in the story's history, from 0 (the submit record), without gaps.
        trigger: The event that wrote the row.
        source: State before the edge.
        dest: State after it; equal to ``source`` for records that do not move the machine
            (a failed attempt, a submit).
        iteration: The loop iteration the row belongs to (1-based).
        created_at: When the row was committed (UTC).
        payload: The stage's whole answer and what the engine derived from it.
        stage: The stage whose attempt the row reports, if any.
        attempt: The attempt number of that stage (1-based), if any.
        duration_seconds: How long that stage attempt took, if any.
        cost: What that stage attempt cost, if known.
        error: The failed attempt's error text, if any.
    """

    seq: int
    trigger: Trigger
    source: WorkflowState
    dest: WorkflowState
    iteration: int
    created_at: datetime
    payload: dict[str, Any]
    stage: Stage | None = None
    attempt: int | None = None
    duration_seconds: float | None = None
    cost: float | None = None
    error: str | None = None

    @property
    def is_state_change(self) -> bool:
        """False for records that leave the state as it was (failed attempts, submit)."""
        return self.source is not self.dest or self.trigger is Trigger.RESUME

    def to_dict(self) -> dict[str, Any]:
        """Return the record as JSON-serializable data, sharing no dict or list with it."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["created_at"] = _iso(self.created_at)
        data["payload"] = as_stored(self.payload)
        return data


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """A workflow at a glance, as ``list_workflows()`` and status displays show it.

    Attributes:
        story_id: The story's id.
        state: Where the workflow stands.
        iteration: The current loop iteration.
        seq: The last persisted history position.
        title: The current title.
        last_quality_score: The latest review's score, if any.
        total_cost: The stages' summed cost so far.
        decision: "publish" or "max_iterations_reached" once COMPLETE.
        error: The last failure's text, while FAILED.
        started_at: When the workflow was submitted.
        updated_at: When its last row was written.
        lease_owner: Which process holds the workflow, if any.
        lease_expires_at: Until when that hold lasts without a heartbeat.
    """

    story_id: str
    state: WorkflowState
    iteration: int
    seq: int
    title: str
    last_quality_score: float | None
    total_cost: float
    decision: str | None
    error: str | None
    started_at: datetime
    updated_at: datetime
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-serializable data."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in ("started_at", "updated_at", "lease_expires_at"):
            data[key] = _iso(data[key])
        return data


@dataclass(frozen=True, slots=True)
class WorkflowIteration:
    """One review (and the polish that followed it, if any).

    Attributes:
        iteration_number: 1-based.
        story_version: "v1", "v2", … as passed to the reviewer.
        quality_score: The review's score.
        decision: The review's own decision.
        review_data: The review as the reviewer returned it.
        polish_data: The polish's answer, or None when the loop stopped after the review.
        polished_title: The title after the polish, if one ran.
        changes_count: Entries in the polish's change log.
        review_seconds: Duration of the successful review attempt.
        polish_seconds: Duration of the successful polish attempt.
        cost: Review plus polish cost.
    """

    iteration_number: int
    story_version: str
    quality_score: float
    decision: ReviewDecision
    review_data: dict[str, Any]
    polish_data: dict[str, Any] | None = None
    polished_title: str | None = None
    changes_count: int = 0
    review_seconds: float = 0.0
    polish_seconds: float = 0.0
    cost: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the iteration as JSON-serializable data, sharing no dict or list with it."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["review_data"] = as_stored(self.review_data)
        data["polish_data"] = as_stored(self.polish_data)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowIteration:
        """Rebuild an iteration from :meth:`to_dict` output, sharing no dict or list with it.

        Keys this version does not know (written by a newer one) are ignored.

        Raises:
            InputValidationError: *data* is no mapping, lacks ``iteration_number``,
                ``story_version``, ``quality_score``, ``decision`` or ``review_data``, or
                holds a decision that is no :class:`ReviewDecision`.
        """
        with _rebuilding(cls):
            values = _known(cls, data)
            values["decision"] = ReviewDecision(values["decision"])
            for key in ("review_data", "polish_data"):
                if key in values:
                    values[key] = as_stored(values[key])
            return cls(**values)


@dataclass(frozen=True, slots=True)
class WorkflowResult:
    """What a workflow produced, whether it just ran or was read back after a crash.

    Attributes:
        story_id: The story's id.
        initial_title: The title the workflow started with.
        initial_script: The script it started with.
        final_title: The title now.
        final_script: The script now.
        state: COMPLETE, FAILED, or an in-between state when read mid-run.
        iterations: One entry per review, in order.
        total_reviews: Reviews that succeeded.
        total_polishes: Polishes that succeeded.
        initial_quality_score: The first review's score.
        final_quality_score: The last review's score.
        quality_improvement: ``final - initial``: None before any review, 0.0 after one.
        decision: "publish" or "max_iterations_reached" once COMPLETE, else None.
        started_at: When the workflow was submitted (UTC).
        completed_at: When it reached COMPLETE or FAILED (UTC).
        total_duration_seconds: From start to completion (or to the last row), across resumes.
        total_cost: Sum of the stages' costs.
        metadata: Extra facts: the config of the latest run, history length, failed attempts, ...
        error: The failure's text when FAILED.
        quality_scores: Every review's score, in order.
    """

    story_id: str
    initial_title: str
    initial_script: str
    final_title: str
    final_script: str
    state: WorkflowState
    iterations: list[WorkflowIteration] = field(default_factory=list)
    total_reviews: int = 0
    total_polishes: int = 0
    initial_quality_score: float | None = None
    final_quality_score: float | None = None
    quality_improvement: float | None = None
    decision: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    total_duration_seconds: float = 0.0
    total_cost: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    quality_scores: list[float] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """True when the workflow is COMPLETE."""
        return self.state is WorkflowState.COMPLETE

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-serializable data; :meth:`from_dict` reverses it.

        The data is a copy: changing it (a stage's answer in ``iterations``, the config in
        ``metadata``) leaves the result as it was.
        """
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["state"] = self.state.value
        data["iterations"] = [it.to_dict() for it in self.iterations]
        data["started_at"] = _iso(self.started_at)
        data["completed_at"] = _iso(self.completed_at)
        data["metadata"] = as_stored(self.metadata)
        data["quality_scores"] = list(self.quality_scores)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowResult:
        """Rebuild a result from :meth:`to_dict` output, sharing no dict or list with it.

        Keys this version does not know (a result written by a newer story_fsm) are ignored,
        in the result and in each iteration. The keys other than the required ones may be
        missing: they take their defaults.

        Raises:
            InputValidationError: *data* is no mapping; it lacks ``story_id``,
                ``initial_title``, ``initial_script``, ``final_title``, ``final_script``,
                ``state`` or ``iterations``; or it holds a value of the wrong kind (a state
                that is no :class:`WorkflowState`, a date that is no ISO date, an iteration
                that is no iteration's data).
        """
        with _rebuilding(cls):
            values = _known(cls, data, "iterations")
            values["state"] = WorkflowState(values["state"])
            values["iterations"] = [WorkflowIteration.from_dict(it) for it in values["iterations"]]
            values["started_at"] = _from_iso(values.get("started_at"))
            values["completed_at"] = _from_iso(values.get("completed_at"))
            if "metadata" in values:
                values["metadata"] = as_stored(values["metadata"])
            if "quality_scores" in values:
                values["quality_scores"] = list(values["quality_scores"])
            return cls(**values)


def _iterations(records: list[TransitionRecord]) -> list[WorkflowIteration]:
    # Each iteration's fields are gathered first and the iteration built once: a frozen
    # record rebuilt by dataclasses.replace for its polish cost more than the rest together.
    gathered: list[dict[str, Any]] = []
    for rec in records:
        if rec.trigger is Trigger.REVIEWED:
            payload = rec.payload
            gathered.append(
                {
                    "iteration_number": rec.iteration,
                    "story_version": payload.get("story_version", f"v{rec.iteration}"),
                    "quality_score": float(payload["quality_score"]),
                    "decision": ReviewDecision(payload["decision"]),
                    "review_data": payload.get("review", {}),
                    "review_seconds": rec.duration_seconds or 0.0,
                    "cost": rec.cost or 0.0,
                }
            )
        elif rec.trigger is Trigger.POLISHED and gathered:
            last = gathered[-1]
            last["polish_data"] = rec.payload.get("polish", {})
            last["polished_title"] = rec.payload.get("title")
            last["changes_count"] = int(rec.payload.get("changes_count", 0))
            last["polish_seconds"] = rec.duration_seconds or 0.0
            last["cost"] += rec.cost or 0.0
    return [WorkflowIteration(**fields) for fields in gathered]


#: The rows a run of the loop starts with; one carries ``config`` when that run's config was
#: not the stored one (an orchestrator or a worker given its own).
_RUN_STARTS = (Trigger.START, Trigger.RESUME, Trigger.RETRY)


def _config_used(row: WorkflowRow, records: list[TransitionRecord]) -> dict[str, Any]:
    """The config of the workflow's latest run: its first row's, else the stored one."""
    for rec in reversed(records):
        if rec.trigger in _RUN_STARTS and "requeued_by" not in rec.payload:
            config: dict[str, Any] = rec.payload.get("config", row.config)
            return config
    return row.config


def build_result(row: WorkflowRow, records: list[TransitionRecord]) -> WorkflowResult:
    """Fold a workflow's summary row and full history into a :class:`WorkflowResult`."""
    summary = row.summary
    iterations = _iterations(records)
    scores = [it.quality_score for it in iterations]
    initial = scores[0] if scores else None
    final = scores[-1] if scores else None
    end = row.completed_at or summary.updated_at
    failed_attempts = sum(1 for r in records if r.trigger in (Trigger.ATTEMPT_FAILED, Trigger.FAIL))
    return WorkflowResult(
        story_id=summary.story_id,
        initial_title=row.initial_title,
        initial_script=row.initial_script,
        final_title=summary.title,
        final_script=row.script,
        state=summary.state,
        iterations=iterations,
        total_reviews=row.total_reviews,
        total_polishes=row.total_polishes,
        initial_quality_score=initial,
        final_quality_score=final,
        # Rounded like the cost: 88.2 - 62.0 is 26.200000000000003 in binary floating point.
        quality_improvement=round(final - initial, 10)
        if final is not None and initial is not None
        else None,
        decision=summary.decision,
        started_at=summary.started_at,
        completed_at=row.completed_at,
        total_duration_seconds=max((end - summary.started_at).total_seconds(), 0.0),
        total_cost=round(summary.total_cost, 10),
        metadata={
            "config": _config_used(row, records),
            "history_length": len(records),
            "failed_attempts": failed_attempts,
            "stage_seconds": round(sum(r.duration_seconds or 0.0 for r in records), 6),
            "failed_stage": row.failed_stage.value if row.failed_stage else None,
        },
        error=summary.error,
        quality_scores=scores,
    )
