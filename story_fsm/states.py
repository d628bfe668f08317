"""The enums the engine speaks in; their *values* are what the database stores.

A test pins every value: renaming one would orphan the rows already written.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ReviewDecision", "Stage", "Trigger", "WorkflowState"]


class WorkflowState(StrEnum):
    """Where a story's workflow stands.

    REVIEWING and POLISHING, when persisted, mean "this stage has started and its result is
    not committed yet": the result rides on the row of the edge that leaves the state.
    """

    INITIAL = "initial"
    REVIEWING = "reviewing"
    POLISHING = "polishing"
    COMPLETE = "complete"
    FAILED = "failed"

    @property
    def is_terminal(self) -> bool:
        """True for COMPLETE and FAILED: no stage runs without an explicit resume/retry."""
        return self in _TERMINAL


#: Read once per transition: a set lookup, not two comparisons of enum members.
_TERMINAL = frozenset((WorkflowState.COMPLETE, WorkflowState.FAILED))


class ReviewDecision(StrEnum):
    """What the expert review recommends for the story."""

    PUBLISH = "publish"
    POLISH = "polish"


class Stage(StrEnum):
    """The two paid stages of the loop."""

    REVIEW = "review"
    POLISH = "polish"


class Trigger(StrEnum):
    """The machine's events; each persisted row names the one that produced it.

    ``ATTEMPT_FAILED`` and ``SUBMIT`` are records that do not change the state
    (source == dest), so the history shows them without mistaking them for a state change.
    """

    SUBMIT = "submit"
    START = "start"
    REVIEWED = "reviewed"
    POLISHED = "polished"
    ATTEMPT_FAILED = "attempt_failed"
    FAIL = "fail"
    RETRY = "retry"
    RESUME = "resume"
