"""One-call helpers for the pipeline's crash path."""

from __future__ import annotations

from story_fsm.config import WorkflowConfig
from story_fsm.engine import StoryWorkflowOrchestrator
from story_fsm.errors import WorkflowNotFoundError
from story_fsm.events import ProgressCallback
from story_fsm.models import WorkflowResult
from story_fsm.stages import StoryPolisher, StoryReviewer
from story_fsm.store.engine import absent_sqlite_database
from story_fsm.store.sql import WorkflowStateManager
from story_fsm.validation import validate_story_id

__all__ = ["resume"]


def resume(
    story_id: str,
    *,
    reviewer: StoryReviewer,
    polisher: StoryPolisher,
    database_url: str,
    config: WorkflowConfig | None = None,
    progress_callback: ProgressCallback | None = None,
) -> WorkflowResult:
    """Resume *story_id*'s workflow from the database at *database_url*, in one call.

    The form the pipeline uses after a crash: it opens the store, resumes, and closes the
    store again. See :meth:`StoryWorkflowOrchestrator.resume` for what happens per state.

    Raises:
        WorkflowNotFoundError: No workflow for *story_id* there; a SQLite file that does not
            exist is not created, and an empty (0-byte) one is not written to.

    Example::

        result = story_fsm.resume("story-42", reviewer=r, polisher=p,
                                  database_url="sqlite:///story_fsm.db")
    """
    validate_story_id(story_id)
    # A typo in the path must not leave a new, empty database behind: nothing to resume there.
    if absent_sqlite_database(database_url) is not None:
        raise WorkflowNotFoundError(story_id)
    with WorkflowStateManager(database_url) as store:
        orchestrator = StoryWorkflowOrchestrator(reviewer, polisher, store, config)
        return orchestrator.resume(story_id, progress_callback=progress_callback)
