"""The orchestrator: load → decide → run stage → record → step, composed of small parts.

The ``transitions`` machine (``machine.py``) decides which edge a trigger takes;
:class:`~story_fsm._run.WorkflowRun` is its model (persist each edge, run each stage); the
store fences writers. This module validates input, takes the lease, and ties those together
for the three ways a workflow moves: a new run, an explicit resume, and a worker's claim.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from transitions import EventData

from story_fsm._awaited import await_run
from story_fsm._executor import StageExecutor
from story_fsm._inprogress import RunsInProgress, validate_timeout
from story_fsm._records import Lease, NewWorkflow, TransitionWrite, WorkflowRow
from story_fsm._run import Drained, RunDeps, WorkflowRun
from story_fsm.config import WorkflowConfig
from story_fsm.errors import (
    ConcurrentAdvanceError,
    InputValidationError,
    InvalidTransitionError,
    StageFailedError,
    WorkflowNotFoundError,
)
from story_fsm.events import Emitter, Event, ProgressCallback
from story_fsm.machine import MachineModel, bound_machine
from story_fsm.models import TransitionRecord, WorkflowResult, WorkflowSummary, build_result
from story_fsm.ratelimit import StageRateLimiter
from story_fsm.runner import StageRunner
from story_fsm.stages import StoryPolisher, StoryReviewer
from story_fsm.states import Stage, Trigger, WorkflowState
from story_fsm.store._rows import planned_row, submitted_record
from story_fsm.store.sql import WorkflowStateManager, utcnow
from story_fsm.validation import (
    validate_name,
    validate_new_workflow,
    validate_seconds,
    validate_story_id,
)

__all__ = ["StoryWorkflowOrchestrator"]

T = TypeVar("T")

#: The edge a resume takes from each stored state (COMPLETE needs none).
_RESUME_TRIGGERS: dict[WorkflowState, Trigger] = {
    WorkflowState.INITIAL: Trigger.START,
    WorkflowState.REVIEWING: Trigger.RESUME,
    WorkflowState.POLISHING: Trigger.RESUME,
    WorkflowState.FAILED: Trigger.RETRY,
}


def default_owner() -> str:
    """Return ``host:pid``, the lease owner name used when none is given."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Requeue(MachineModel):
    """Fires ``retry`` on a FAILED workflow without running the stage: a worker will.

    The edge (and its guard, which picks the failed stage's state) comes from the one machine
    definition; ``record`` writes it with the lease released, so any worker may claim it.
    """

    def __init__(self, row: WorkflowRow, store: WorkflowStateManager, lease: Lease) -> None:
        self.row, self.store, self.lease = row, store, lease
        self.failed_stage = row.failed_stage
        self.iteration = row.summary.iteration

    def record(self, event: EventData) -> None:
        assert event.transition is not None and event.transition.dest is not None
        write = TransitionWrite(
            Trigger.RETRY,
            WorkflowState.FAILED,
            WorkflowState[event.transition.dest],
            self.iteration,
            self.iteration,
            payload={"requeued_by": self.lease.owner},
            takeover=True,
            release_lease=True,
        )
        self.store.append(self.row.summary.story_id, self.row.summary.seq, write, self.lease)


def _has_method(stage: object, name: str) -> bool:
    """True when *stage* has a callable *name* (a proxy's ``__getattr__`` may raise anything)."""
    try:
        return callable(getattr(stage, name, None))
    except Exception:
        return False


class StoryWorkflowOrchestrator:
    """Runs stories through the review → polish loop, durably.

    Args:
        reviewer: Implements :class:`~story_fsm.StoryReviewer`.
        polisher: Implements :class:`~story_fsm.StoryPolisher`.
        state_manager: The :class:`~story_fsm.WorkflowStateManager` to persist to.
        config: The loop's settings; when None, new workflows use ``WorkflowConfig()`` and
            resumed ones the config they were started with.
        owner: Name recorded as the lease holder (default ``host:pid``).
        lease_seconds: How long a hold on a workflow lasts past each write or heartbeat.
        rate_limits: Optional per-stage caps in calls per minute, e.g. ``{"review": 60}``.
        executor: Where runs are carried, their stages called inline (default: a shared,
            uncapped pool of daemon threads, so a thread left in a call past its timeout never
            keeps the process from exiting).

    Example::

        orchestrator = StoryWorkflowOrchestrator(reviewer, polisher, store)
        result = orchestrator.run_story_workflow("s-1", "Title", "Script...", {})
        result.decision  # "publish" or "max_iterations_reached"
    """

    def __init__(
        self,
        reviewer: StoryReviewer,
        polisher: StoryPolisher,
        state_manager: WorkflowStateManager,
        config: WorkflowConfig | None = None,
        *,
        owner: str | None = None,
        lease_seconds: float = 60.0,
        rate_limits: Mapping[Stage | str, int] | None = None,
        executor: StageExecutor | None = None,
    ) -> None:
        for name, stage, method in (
            ("reviewer", reviewer, "review_story"),
            ("polisher", polisher, "polish_story"),
        ):
            # None is an orchestrator that only submits (or requeues); a run refuses it.
            if stage is not None and not _has_method(stage, method):
                raise InputValidationError(
                    f"{name} must have a {method}(...) method, got {type(stage).__name__}"
                )
        if config is not None and not isinstance(config, WorkflowConfig):
            raise InputValidationError(
                f"config must be a WorkflowConfig or None, got {type(config).__name__}"
            )
        self.reviewer = reviewer
        self.polisher = polisher
        self.state_manager = state_manager
        self._config = config
        self.owner = validate_name("owner", owner) if owner else default_owner()
        self.lease_seconds = validate_seconds("lease_seconds", lease_seconds)
        self._executor = executor
        self._throttle = StageRateLimiter(rate_limits) if rate_limits else None
        self._runs = RunsInProgress()

    @property
    def config(self) -> WorkflowConfig:
        """The config new workflows start with."""
        return self._config or WorkflowConfig()

    def _require_stages(self) -> None:
        """Refuse a run before anything is written when a stage is missing (None)."""
        for name, stage in (("reviewer", self.reviewer), ("polisher", self.polisher)):
            if stage is None:
                raise InputValidationError(
                    f"this orchestrator has no {name}: it can submit and requeue, not run"
                )

    def _lease(self) -> Lease:
        return Lease(self.owner, secrets.token_hex(16), self.lease_seconds)

    def _deps(
        self, config: WorkflowConfig, lease: Lease, should_stop: Callable[[], bool] | None
    ) -> RunDeps:
        runner = StageRunner(
            config,
            executor=self._executor,
            heartbeat_seconds=max(self.lease_seconds / 3, 0.05),
            throttle=self._throttle.try_acquire if self._throttle is not None else None,
            should_stop=should_stop,
        )
        deps = RunDeps(self.state_manager, self.reviewer, self.polisher, config, runner, lease)
        return deps if should_stop is None else deps.with_stop(should_stop)

    def submit(
        self,
        story_id: str,
        title: str,
        script: str,
        audience_context: Mapping[str, Any],
        original_idea: str = "",
        local_review_summary: Any = None,
    ) -> WorkflowSummary:
        """Record a workflow in INITIAL without running any stage (a worker will).

        Raises:
            InputValidationError: Bad input; nothing was written.
            WorkflowExistsError: The story already has a workflow.
        """
        new = self._validated(
            story_id, title, script, audience_context, original_idea, local_review_summary
        )
        return self.state_manager.create(new, None).summary

    def _validated(
        self,
        story_id: str,
        title: str,
        script: str,
        audience_context: Mapping[str, Any],
        original_idea: str,
        local_review_summary: Any,
    ) -> NewWorkflow:
        return validate_new_workflow(
            story_id,
            title,
            script,
            audience_context,
            original_idea,
            local_review_summary,
            self.config,
        )

    def run_story_workflow(
        self,
        story_id: str,
        title: str,
        script: str,
        audience_context: Mapping[str, Any],
        original_idea: str = "",
        local_review_summary: Any = None,
        progress_callback: ProgressCallback | None = None,
    ) -> WorkflowResult:
        """Run a new story through the loop until COMPLETE (or FAILED).

        Raises:
            InputValidationError: Bad input; nothing was written.
            WorkflowExistsError: The story already has a workflow (resume it instead).
            StageFailedError: A stage failed on every attempt; the workflow is FAILED.
        """
        new = self._validated(
            story_id, title, script, audience_context, original_idea, local_review_summary
        )
        return self._counted(partial(self._start, new, progress_callback))

    async def run_story_workflow_async(
        self,
        story_id: str,
        title: str,
        script: str,
        audience_context: Mapping[str, Any],
        original_idea: str = "",
        local_review_summary: Any = None,
        progress_callback: ProgressCallback | None = None,
    ) -> WorkflowResult:
        """Await :meth:`run_story_workflow`: the same run, without blocking the event loop.

        The input is checked on the calling loop (no I/O); the run then waits on a thread of
        story_fsm's pool of daemon threads, as the thread of a blocking call would: its
        stages, writes and progress callbacks run on the engine's threads, never on the
        loop. A callback that touches the loop's objects must hand its work over with
        ``loop.call_soon_threadsafe``.

        Cancelling the awaiting task (``task.cancel()``, ``asyncio.timeout``) stops the
        run: no stage is started after the cancel; a stage call in flight finishes and its
        result is committed; then the lease is released (log ``workflow_released``), so
        that :meth:`resume`, a worker or ``delete_workflow`` may take the story at once.
        ``CancelledError`` is raised at once, without waiting for the call in flight.
        Cancelled before the run's first write, nothing is stored (no workflow, no event;
        log ``workflow_stopped``); later, the workflow stays where its last committed row
        left it, resumable. A cancelled run sends neither ``workflow_complete`` nor
        ``workflow_failed``, unless the stage in flight ended the workflow. A process that
        exits meanwhile takes the daemon threads with it: the call in flight is lost, as in
        a crash, and the lease lapses after ``lease_seconds`` (``resume`` needs no wait).
        :meth:`wait_for_runs_async` waits for such runs, on shutdown.

        Raises:
            InputValidationError: Bad input; nothing was written.
            WorkflowExistsError: The story already has a workflow (resume it instead).
            StageFailedError: A stage failed on every attempt; the workflow is FAILED.
            asyncio.CancelledError: The awaiting task was cancelled; the run stops as above.
        """
        new = self._validated(
            story_id, title, script, audience_context, original_idea, local_review_summary
        )
        work = partial(self._start, new, progress_callback)
        return await await_run(work, new.story_id, self._runs)

    def _start(
        self,
        new: NewWorkflow,
        progress_callback: ProgressCallback | None,
        should_stop: Callable[[], bool] | None = None,
    ) -> WorkflowResult:
        self._require_stages()
        lease = self._lease()
        # Nothing is written yet: the run's first edge (``start``) writes the workflow and
        # itself in one transaction, so a new story costs one commit before its first stage.
        row = planned_row(new, lease, utcnow())
        emit = Emitter(new.story_id, progress_callback)
        deps = self._deps(self.config, lease, should_stop)
        return self._drive(row, Trigger.START, deps, emit, pending=new)

    def resume(
        self, story_id: str, progress_callback: ProgressCallback | None = None
    ) -> WorkflowResult:
        """Continue a workflow from its last committed row.

        COMPLETE returns the stored result with no stage call; REVIEWING/POLISHING re-run only
        the stage that had not committed; FAILED retries the stage that failed. The resume
        takes the workflow's lease over at once (an explicit resume says the previous holder
        is gone); a holder that was in fact alive is fenced off its next write.

        Raises:
            WorkflowNotFoundError: No workflow for *story_id*.
            ConcurrentAdvanceError: Another resumer claimed it first; no stage was called and
                no ``workflow_resumed`` was sent.
            StageFailedError: The stage failed on every attempt again.
        """
        return self._counted(partial(self._resume, validate_story_id(story_id), progress_callback))

    async def resume_async(
        self, story_id: str, progress_callback: ProgressCallback | None = None
    ) -> WorkflowResult:
        """Await :meth:`resume`: the same resume, without blocking the event loop.

        The run waits on a thread of story_fsm's pool, and its stages, writes and progress
        callbacks run on the engine's threads (a callback that touches the loop's objects
        uses ``loop.call_soon_threadsafe``). A cancel of the awaiting task stops the run as
        it stops :meth:`run_story_workflow_async`'s: no new stage, the call in flight
        committed, the lease released, ``CancelledError`` raised at once. Cancelled before
        the resume's first write, the workflow is left as it was found.

        Raises:
            WorkflowNotFoundError: No workflow for *story_id*.
            ConcurrentAdvanceError: Another resumer claimed it first; no stage was called.
            StageFailedError: The stage failed on every attempt again.
            asyncio.CancelledError: The awaiting task was cancelled; the run stops as above.
        """
        story_id = validate_story_id(story_id)
        work = partial(self._resume, story_id, progress_callback)
        return await await_run(work, story_id, self._runs)

    def _resume(
        self,
        story_id: str,
        progress_callback: ProgressCallback | None,
        should_stop: Callable[[], bool] | None = None,
    ) -> WorkflowResult:
        row = self.state_manager.load_row(story_id)
        if row is None:
            raise WorkflowNotFoundError(story_id)
        state = row.summary.state
        if state is WorkflowState.COMPLETE:
            result = self.state_manager.load_state(story_id)
            if result is None:  # deleted since its row was read
                raise WorkflowNotFoundError(story_id)
            return result
        self._require_stages()
        config = self._config or WorkflowConfig.from_dict(row.config)
        emit = Emitter(story_id, progress_callback)
        # workflow_resumed is sent by the run once its opening row holds the lease.
        deps = self._deps(config, self._lease(), should_stop)
        return self._drive(row, _RESUME_TRIGGERS[state], deps, emit, takeover=True)

    def advance_claimed(
        self,
        row: WorkflowRow,
        lease: Lease,
        *,
        progress_callback: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> WorkflowResult | None:
        """Advance a workflow this process claimed with *lease* (the worker's path).

        Every write is fenced on *lease*, so if another process took the workflow over, this
        one stops at its next write with ConcurrentAdvanceError. When *should_stop* turns true,
        no new stage is started: the lease is released at the next stage boundary and None is
        returned, so another worker can go on at once.
        """
        self._require_stages()
        story_id = row.summary.story_id
        state = row.summary.state
        if state is WorkflowState.COMPLETE:
            # An explicit resume took the story over and finished it between the claim and
            # its read: nothing is left to run, and the lease is not this claim's any more.
            raise ConcurrentAdvanceError(story_id, "it was finished by another process")
        config = self._config or WorkflowConfig.from_dict(row.config)
        emit = Emitter(story_id, progress_callback)

        def announce() -> None:
            # The same events, with the same data, as run_story_workflow's and resume()'s;
            # sent from the carried run, while this thread has the claim's lease renewed.
            if state is WorkflowState.INITIAL:
                emit(Event.WORKFLOW_STARTED, title=row.summary.title, config=config.to_dict())
            else:
                emit(
                    Event.WORKFLOW_RESUMED,
                    state=state.value,
                    seq=row.summary.seq,
                    iteration=row.summary.iteration,
                )

        # A workflow only submitted has one row, known from its summary: this run will then
        # have written (or know) the whole history and need not read it back at the end.
        known = [submitted_record(row)] if row.summary.seq == 0 else None
        deps = self._deps(config, lease, should_stop)
        drive = partial(
            self._drive, row, _RESUME_TRIGGERS[state], deps, emit, records=known, announce=announce
        )
        try:
            return self._counted(drive)
        except Drained:  # released by _drive
            return None

    def requeue(self, story_id: str) -> WorkflowSummary:
        """Put a FAILED workflow back in line: a ``retry`` row, no stage call, lease free.

        A worker then claims it and re-runs the stage that failed.

        Raises:
            WorkflowNotFoundError: No workflow for *story_id*.
            InvalidTransitionError: The workflow is not FAILED.
        """
        row = self.state_manager.load_row(validate_story_id(story_id))
        if row is None:
            raise WorkflowNotFoundError(story_id)
        if row.summary.state is not WorkflowState.FAILED:
            raise InvalidTransitionError(
                f"can't retry when in {row.summary.state.name}: only a FAILED workflow is re-queued"
            )
        model = _Requeue(row, self.state_manager, self._lease())
        with bound_machine(model, WorkflowState.FAILED):
            model.fire(Trigger.RETRY)
        refreshed = self.state_manager.load_row(story_id)
        if refreshed is None:  # deleted once re-queued (unfinished and unheld, it may be)
            raise WorkflowNotFoundError(story_id)
        return refreshed.summary

    def _counted(self, run: Callable[[], T]) -> T:
        """Call *run* counted as a run in progress (see :meth:`wait_for_runs`)."""
        self._runs.begin()
        try:
            return run()
        finally:
            self._runs.end()

    def wait_for_runs(self, timeout: float | None = None) -> bool:
        """Wait until none of this orchestrator's runs is in progress, and say whether it is so.

        A run is one of :meth:`run_story_workflow`, :meth:`resume`, their async forms, or a
        worker's (:meth:`advance_claimed`), from the call until its thread is done with the
        store. What this waits for that the callers do not: awaited runs whose task was
        cancelled, which go on in the background to their next stage boundary (the stage
        call in flight committed, the lease released). Call it on shutdown, once no new run
        is being started, before closing the store or leaving the process; not from a run's
        own progress callback (that run would wait for itself until *timeout*).

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes.

        Returns:
            True once no run is in progress; False if *timeout* passed first.

        Raises:
            InputValidationError: *timeout* is not None nor a number of seconds >= 0.
        """
        return self._runs.wait(validate_timeout(timeout))

    async def wait_for_runs_async(self, timeout: float | None = None) -> bool:
        """Await what :meth:`wait_for_runs` waits for, without blocking the event loop.

        The graceful end of an asyncio application: cancel the tasks that await runs, then
        ``await orchestrator.wait_for_runs_async(30)`` before closing the store, so that the
        stage calls in flight are committed rather than lost at exit.

        Raises:
            InputValidationError: *timeout* is not None nor a number of seconds >= 0.
        """
        return await self._runs.wait_async(validate_timeout(timeout))

    def _release(self, run: WorkflowRun) -> None:
        """Give up the lease of a run that stopped (another holder may go on at once)."""
        if not run.holds_lease:  # stopped before its first write: there is nothing to free
            run.log.info("workflow_stopped", owner=run.deps.lease.owner)
            return
        run.release_lease("stopped")

    def _drive(
        self,
        row: WorkflowRow,
        trigger: Trigger,
        deps: RunDeps,
        emit: Emitter,
        *,
        takeover: bool = False,
        records: list[TransitionRecord] | None = None,
        pending: NewWorkflow | None = None,
        announce: Callable[[], None] | None = None,
    ) -> WorkflowResult:
        """Fire *trigger* and let the queued machine run the loop to a terminal state.

        With *announce* (a worker's run, whose claim already holds the lease), the run opens
        with it, carried, and its lease is renewed from the start.

        Raises:
            Drained: The run was asked to stop (``deps.should_stop``); its lease is released.
        """
        run = WorkflowRun(row, deps, emit, records, pending, claimed=announce is not None)
        # The run is carried by a thread of the pool, which calls the stages inline; this
        # thread waits for it, has the heartbeats sent and enforces the stage timeouts.
        try:
            deps.runner.carry(
                partial(run.carried, trigger, announce=announce, takeover=takeover),
                on_expired=run.after_timeout,
                on_wait=run.heartbeat,
            )
        except Drained:
            self._release(run)
            raise
        except BaseException:
            if deps.runner.interrupted:
                # Ctrl-C: the caller stops waiting now. The run's lease goes with it, so a
                # resume, a worker or a delete need not wait for it to lapse.
                run.let_go()
            raise
        finally:
            # After a drained run's release: a heartbeat still in flight must not call the
            # lease it then finds freed lost.
            run.ended()
        if run.records is not None:  # a run that wrote the whole history knows the result
            result = build_result(run.row, run.records)
        else:
            loaded = self.state_manager.load_state(run.story_id)
            if loaded is None:  # finished, the lease freed, and deleted before this read
                raise WorkflowNotFoundError(run.story_id)
            result = loaded
        if run.failure is not None:
            failure = run.failure
            emit(
                Event.WORKFLOW_FAILED,
                stage=failure.stage.value,
                attempts=failure.attempt,
                error=failure.error_text,
                iteration=run.iteration,
            )
            run.log.error("workflow_failed", stage=failure.stage.value, error=failure.error_text)
            raise StageFailedError(
                run.story_id, failure.stage, failure.attempt, result
            ) from failure.error
        emit(
            Event.WORKFLOW_COMPLETE,
            decision=result.decision,
            final_quality_score=result.final_quality_score,
            iterations=len(result.iterations),
            total_cost=result.total_cost,
        )
        run.log.info(
            "workflow_complete", decision=result.decision, score=result.final_quality_score
        )
        return result
