"""story_fsm: a durable, explicit state machine for a story's review → polish loop.

Every transition is one persisted row (SQLite by default, PostgreSQL to scale out), so
``resume(story_id)`` after a crash picks up at the last committed row and never repeats a
stage whose result was committed.
"""

from __future__ import annotations

from story_fsm.api import resume, resume_async
from story_fsm.config import WorkflowConfig
from story_fsm.engine import StoryWorkflowOrchestrator
from story_fsm.errors import (
    ConcurrentAdvanceError,
    DatabaseBusyError,
    InputValidationError,
    InvalidStageOutputError,
    InvalidTransitionError,
    SchemaVersionError,
    StageFailedError,
    StageTimeoutError,
    StoreError,
    StoryFSMError,
    UnreadableRowError,
    WorkflowExistsError,
    WorkflowLeasedError,
    WorkflowNotFoundError,
)
from story_fsm.events import Event, ProgressCallback
from story_fsm.models import TransitionRecord, WorkflowIteration, WorkflowResult, WorkflowSummary
from story_fsm.stages import StoryPolisher, StoryReviewer, stage_time_left
from story_fsm.states import ReviewDecision, Stage, Trigger, WorkflowState
from story_fsm.store.schema import DEFAULT_TABLE_PREFIX, build_schema
from story_fsm.store.sql import WorkflowStateManager
from story_fsm.worker import Worker, WorkerStats

__version__ = "0.1.0"

#: The tables' ``MetaData`` with the default prefix (add it to a host's alembic target).
metadata = build_schema(DEFAULT_TABLE_PREFIX).metadata

__all__ = [
    "DEFAULT_TABLE_PREFIX",
    "ConcurrentAdvanceError",
    "DatabaseBusyError",
    "Event",
    "InputValidationError",
    "InvalidStageOutputError",
    "InvalidTransitionError",
    "ProgressCallback",
    "ReviewDecision",
    "SchemaVersionError",
    "Stage",
    "StageFailedError",
    "StageTimeoutError",
    "StoreError",
    "StoryFSMError",
    "StoryPolisher",
    "StoryReviewer",
    "StoryWorkflowOrchestrator",
    "TransitionRecord",
    "Trigger",
    "UnreadableRowError",
    "Worker",
    "WorkerStats",
    "WorkflowConfig",
    "WorkflowExistsError",
    "WorkflowIteration",
    "WorkflowLeasedError",
    "WorkflowNotFoundError",
    "WorkflowResult",
    "WorkflowState",
    "WorkflowStateManager",
    "WorkflowSummary",
    "__version__",
    "build_schema",
    "metadata",
    "resume",
    "resume_async",
    "stage_time_left",
]
