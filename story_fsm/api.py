"""One-call helpers for the pipeline's crash path: open the store, resume, close it again."""

from __future__ import annotations

from collections.abc import Callable

from story_fsm._awaited import await_run
from story_fsm.config import WorkflowConfig
from story_fsm.engine import StoryWorkflowOrchestrator
from story_fsm.errors import WorkflowNotFoundError
from story_fsm.events import ProgressCallback
from story_fsm.models import WorkflowResult
from story_fsm.stages import StoryPolisher, StoryReviewer
from story_fsm.store.engine import absent_sqlite_database
from story_fsm.store.sql import WorkflowStateManager
from story_fsm.validation import validate_story_id

__all__ = ["resume", "resume_async"]


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
    _look_for(story_id, database_url)
    return _resume_in(story_id, reviewer, polisher, database_url, config, progress_callback)


async def resume_async(
    story_id: str,
    *,
    reviewer: StoryReviewer,
    polisher: StoryPolisher,
    database_url: str,
    config: WorkflowConfig | None = None,
    progress_callback: ProgressCallback | None = None,
) -> WorkflowResult:
    """Await :func:`resume`: the same one call, without blocking the event loop.

    The store is opened, the workflow resumed and the store closed on a thread of story_fsm's
    pool, as :meth:`StoryWorkflowOrchestrator.resume_async` runs a resume. A cancel of the
    awaiting task raises ``CancelledError`` at once and stops the run at its next stage
    boundary (the stage call in flight is committed, the lease released); the store stays
    open until then, and is closed by the run's thread once the run has stopped. Nothing
    waits for that drain on shutdown: an application that must not lose the call in flight
    then uses an orchestrator's ``resume_async`` and its ``wait_for_runs_async``.

    Raises:
        WorkflowNotFoundError: No workflow for *story_id* there (a SQLite file that does not
            exist is not created, and an empty one is not written to).
        asyncio.CancelledError: The awaiting task was cancelled; the run stops as above.

    Example::

        result = await story_fsm.resume_async("story-42", reviewer=r, polisher=p,
                                              database_url="sqlite:///story_fsm.db")
    """
    _look_for(story_id, database_url)

    def work(should_stop: Callable[[], bool]) -> WorkflowResult:
        return _resume_in(
            story_id, reviewer, polisher, database_url, config, progress_callback, should_stop
        )

    return await await_run(work, story_id)


def _look_for(story_id: str, database_url: str) -> None:
    """Refuse a bad id, or a SQLite path that holds no database, before anything is opened."""
    validate_story_id(story_id)
    # A typo in the path must not leave a new, empty database behind: nothing to resume there.
    if absent_sqlite_database(database_url) is not None:
        raise WorkflowNotFoundError(story_id)


def _resume_in(
    story_id: str,
    reviewer: StoryReviewer,
    polisher: StoryPolisher,
    database_url: str,
    config: WorkflowConfig | None,
    progress_callback: ProgressCallback | None,
    should_stop: Callable[[], bool] | None = None,
) -> WorkflowResult:
    """Open the store at *database_url*, resume *story_id* there and close the store."""
    with WorkflowStateManager(database_url) as store:
        orchestrator = StoryWorkflowOrchestrator(reviewer, polisher, store, config)
        return orchestrator._resume(story_id, progress_callback, should_stop)
