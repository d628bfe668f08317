"""A stage attempt's outcomes, as the runner reports them and the run records them.

Plain data and the small rules about it (which errors are worth another attempt, who
settles an attempt that ran out of time), apart from the runner's threads and tenacity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from story_fsm._normalize import kept_answer, readable_cost
from story_fsm._text import error_text, storable
from story_fsm.errors import InvalidStageOutputError
from story_fsm.states import Stage

__all__ = [
    "AttemptFailure",
    "InFlight",
    "StageExhausted",
    "StageStopped",
    "StageSuccess",
    "retryable",
    "said",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AttemptFailure:
    """One failed attempt of a stage.

    Attributes:
        stage: The stage.
        attempt: 1-based attempt number.
        error: What went wrong (the stage's exception, a timeout, or invalid output).
        duration_seconds: How long the attempt ran.
        next_wait_seconds: The backoff before the next attempt (0 for the last one).

    """

    stage: Stage
    attempt: int
    error: BaseException
    duration_seconds: float
    next_wait_seconds: float = 0.0

    @property
    def cost(self) -> float:
        """What the failed attempt cost, when the stage said (a paid but unusable answer)."""
        if not isinstance(self.error, InvalidStageOutputError):
            return 0.0
        # Checked like an answer's cost: a bad value is logged and counted as 0, never stored.
        return readable_cost(getattr(self.error, "cost", None))

    @property
    def rejected_answer(self) -> object:
        """The refused answer (JSON data) when the attempt failed on one, else None."""
        if not isinstance(self.error, InvalidStageOutputError):
            return None
        answer = getattr(self.error, "answer", None)
        # A stage's own answer= may be anything (an object, a NaN): the row's JSON must hold it.
        return None if answer is None else kept_answer(answer)

    @property
    def error_text(self) -> str:
        """``Type: message`` of the error, as stored in the history (storable as text)."""
        return storable(error_text(self.error))


@dataclass(frozen=True, slots=True)
class StageSuccess(Generic[T]):
    """The stage's normalized answer, and the attempt that produced it."""

    value: T
    attempt: int
    duration_seconds: float


class StageExhausted(Exception):
    """Every attempt failed (internal: the engine turns it into the FAIL transition)."""

    def __init__(self, failure: AttemptFailure) -> None:
        super().__init__(failure.error_text)
        self.failure = failure


class StageStopped(Exception):
    """The run was asked to stop before an attempt's call (internal).

    While the attempt waited for the rate limit, for a retry's backoff, or just before a
    retry: that attempt was not called, and the engine leaves the workflow where its last row
    put it (the failed attempts before it are recorded).
    """

    #: Not the stage's failure: tenacity must not try it again.
    retryable = False

    def __init__(self, stage: Stage) -> None:
        super().__init__(f"{stage.value}: stopped before the stage's next call")
        self.stage = stage


class InFlight:
    """One attempt in flight: its stage, number, start, deadline, and who settles it."""

    __slots__ = ("_ticket", "attempt", "deadline", "stage", "started")

    def __init__(self, stage: Stage, attempt: int, started: float, timeout: float) -> None:
        self.stage = stage
        self.attempt = attempt
        self.started = started
        self.deadline = started + timeout
        self._ticket = [True]

    def settle(self) -> bool:
        """Return True to the first side that asks, False to the other.

        The sides are the carrier (its call returned) and the waiter (the deadline passed).
        ``list.pop`` is atomic, so the race needs no lock.
        """
        try:
            self._ticket.pop()
        except IndexError:
            return False
        return True


def said(error: BaseException, name: str) -> object:
    """The stage error's attribute *name*, or None when it has none or reading it raises.

    A stage's own error class is read as it is printed (``AttemptFailure.error_text``): a
    property that fails must not end the run unrecorded; the policy alone decides then.
    """
    try:
        return getattr(error, name, None)
    except Exception:
        return None


def retryable(error: BaseException) -> bool:
    """False for a stage error that says another attempt cannot succeed (``retryable=False``).

    The OpenAI stages mark the client errors that way (a bad request, a wrong key, an unknown
    model): retrying them only adds backoff before the same answer.
    """
    return isinstance(error, Exception) and said(error, "retryable") is not False
