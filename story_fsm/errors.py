"""Every error story_fsm raises, in one tree, so callers can catch one base class.

No lower-level exception (``transitions.MachineError``, ``sqlalchemy.exc.*``, the stages' own
errors) reaches the caller unwrapped: each is translated here into something that says what
happened and what to do next, and the original stays attached as ``__cause__``::

    StoryFSMError
    ├── InputValidationError (also ValueError)   bad arguments; nothing was written
    ├── WorkflowNotFoundError (also LookupError) no workflow for this story_id
    ├── WorkflowExistsError                      run_story_workflow on a known story_id
    ├── ConcurrentAdvanceError                   another writer advanced the story first
    ├── WorkflowLeasedError                      a live process holds the story (delete)
    ├── InvalidTransitionError                   a trigger the current state does not accept
    ├── InvalidStageOutputError                  a reviewer/polisher answered in a bad shape
    ├── StageTimeoutError (also TimeoutError)    a stage call took longer than allowed
    ├── StageFailedError                         a stage failed after every retry
    └── StoreError                               the database could not be used
        ├── DatabaseBusyError                    SQLite's lock was held past the busy timeout
        ├── SchemaVersionError                   the database schema is unknown or newer
        └── UnreadableRowError                   a stored row was changed outside story_fsm
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from story_fsm.models import WorkflowResult
    from story_fsm.states import Stage

__all__ = [
    "ConcurrentAdvanceError",
    "DatabaseBusyError",
    "InputValidationError",
    "InvalidStageOutputError",
    "InvalidTransitionError",
    "SchemaVersionError",
    "StageFailedError",
    "StageTimeoutError",
    "StoreError",
    "StoryFSMError",
    "UnreadableRowError",
    "WorkflowExistsError",
    "WorkflowLeasedError",
    "WorkflowNotFoundError",
]


class StoryFSMError(Exception):
    """Base of every error story_fsm raises; catch this to handle them all."""


class _Rebuilt(StoryFSMError):
    """An error whose constructor builds its message from fields, so pickling keeps those.

    ``Exception`` pickles as ``cls(*self.args)``, and ``args`` holds the finished message: a
    copy sent to another process (multiprocessing, a task queue) would be built from the
    message as if it were the story id. These errors pickle from their constructor's
    arguments instead, named in ``_init_fields``.
    """

    _init_fields: tuple[str, ...] = ()

    def __reduce__(self) -> tuple[Any, ...]:
        args = tuple(getattr(self, name) for name in self._init_fields)
        return (type(self), args, self.__dict__)


class InputValidationError(StoryFSMError, ValueError):
    """An argument was rejected before anything was written.

    It is also a ``ValueError`` so callers that already guard against bad values keep working.
    """


class WorkflowNotFoundError(_Rebuilt, LookupError):
    """No workflow is stored for the story id: it was never started, or the URL is wrong."""

    _init_fields = ("story_id",)

    def __init__(self, story_id: str) -> None:
        self.story_id = story_id
        super().__init__(
            f"no workflow for story {story_id!r}; start it with run_story_workflow() "
            "or check the database URL"
        )


class WorkflowExistsError(_Rebuilt):
    """A workflow for this story id exists already; starting it again would fork its history."""

    _init_fields = ("story_id",)

    def __init__(self, story_id: str) -> None:
        self.story_id = story_id
        super().__init__(f"story {story_id!r} already has a workflow; call resume({story_id!r})")


class ConcurrentAdvanceError(_Rebuilt):
    """Another process advanced (or took over) the workflow first; this writer lost the race.

    The database decides the winner (a unique ``(story_id, seq)`` key and the lease token), so
    the loser learns it before it spends a paid stage call, or at the latest before it records
    the stage's result.
    """

    _init_fields = ("story_id", "detail")

    def __init__(self, story_id: str, detail: str = "") -> None:
        self.story_id = story_id
        #: What the database showed (the step it is at, or who holds the lease); may be "".
        self.detail = detail
        message = f"story {story_id!r} was advanced by another writer"
        if detail:
            message += f" ({detail})"
        super().__init__(message + "; reload its state before acting on it")


class WorkflowLeasedError(_Rebuilt):
    """A live process holds the workflow's lease, so it was left as it is (a deletion).

    The lease is the claim of a run in progress (``run_story_workflow``, ``resume`` or a
    worker); it is released when the run ends and lapses when its holder dies. Wait for
    either, or stop that process first.
    """

    _init_fields = ("story_id", "owner", "expires_at")

    def __init__(self, story_id: str, owner: str, expires_at: datetime) -> None:
        self.story_id = story_id
        #: Who holds the lease (a worker id, or ``host:pid``).
        self.owner = owner
        #: When the lease lapses unless its holder renews it (aware, UTC).
        self.expires_at = expires_at
        super().__init__(
            f"story {story_id!r} is held by {owner} (its lease runs until "
            f"{expires_at.isoformat(timespec='seconds')}); nothing was deleted"
        )


class InvalidTransitionError(StoryFSMError):
    """A trigger was fired in a state that has no edge for it (a bug, or a stale caller)."""


class InvalidStageOutputError(StoryFSMError):
    """A reviewer or polisher returned something the engine cannot use.

    It counts as a failed attempt, so the engine retries the stage like any other failure.
    A stage that paid for the unusable answer says so in ``cost``; the engine records it on
    the failed attempt's row and adds it to the workflow's total cost.

    Attributes:
        cost: What the unusable answer cost (0 when unknown).
        answer: The refused answer as JSON data (the answer's mapping, or a model's text), or
            None. The engine fills it in for an answer it refuses itself; the failed
            attempt's row keeps it as ``rejected_answer``, so the audit trail shows what was
            paid for and why it was refused.
    """

    def __init__(self, message: str, *, cost: float = 0.0, answer: object = None) -> None:
        super().__init__(message)
        self.cost = cost
        self.answer = answer


class StageTimeoutError(StoryFSMError, TimeoutError):
    """A stage call took longer than ``stage_timeout_seconds``; its late answer is discarded."""


class StageFailedError(_Rebuilt):
    """A stage failed on every attempt; the workflow is persisted as FAILED.

    Attributes:
        story_id: The story whose workflow failed.
        stage: The stage that failed (review or polish).
        attempts: How many attempts were made.
        result: The FAILED :class:`~story_fsm.WorkflowResult`, as stored.

    The last attempt's error is ``__cause__``. Fix the cause, then ``resume(story_id)`` retries
    the failed stage.
    """

    _init_fields = ("story_id", "stage", "attempts", "result")

    def __init__(
        self, story_id: str, stage: Stage, attempts: int, result: WorkflowResult | None
    ) -> None:
        self.story_id = story_id
        self.stage = stage
        self.attempts = attempts
        self.result = result
        super().__init__(
            f"story {story_id!r}: {stage.value} failed after {attempts} attempt(s); "
            f"the workflow is FAILED; fix the cause and call resume({story_id!r})"
        )


class StoreError(StoryFSMError):
    """The database could not be read or written; the original driver error is the cause."""


class DatabaseBusyError(StoreError):
    """SQLite's write lock stayed taken longer than the busy timeout.

    Usually another process writes the same file; raise ``busy_timeout_seconds`` (or the URL's
    ``?timeout=SECONDS``) or move the workers to PostgreSQL.
    """


class SchemaVersionError(StoreError):
    """The database's schema revision is not one this version of story_fsm knows.

    Raised instead of guessing: a newer story_fsm may have migrated it, or it belongs to
    another application.
    """


class UnreadableRowError(StoreError):
    """A stored row holds what story_fsm never writes: the database was changed by other means.

    A payload that is no JSON, a date that is no date, text where a count belongs (SQLite
    stores any value in any column), a review without its score. Other workflows stay
    readable; a worker logs the claimed one as ``workflow_error`` and goes on with the rest.

    Attributes:
        story_id: The story whose row it is, when one read named it (else None).
    """

    def __init__(self, message: str, story_id: str | None = None) -> None:
        super().__init__(message)
        self.story_id = story_id
