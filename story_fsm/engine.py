"""The orchestrator: load → decide → run stage → record → step, composed of small parts.

The ``transitions`` machine (``machine.py``) decides which edge a trigger takes; ``_Run`` is its
model: its ``record`` callback persists each edge before the state changes (so a failed write
leaves the machine where it was), and its on-enter callbacks run the reviewer and the polisher
through the :class:`~story_fsm.runner.StageRunner` (timeouts, retries). The store fences
writers; this module only ties the parts together.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from transitions import EventData

from story_fsm._executor import StageExecutor
from story_fsm._log import get_logger
from story_fsm.config import WorkflowConfig
from story_fsm.errors import StageFailedError, WorkflowNotFoundError
from story_fsm.events import Emitter, Event, ProgressCallback
from story_fsm.machine import MachineModel, build_machine
from story_fsm.models import (
    DECISION_MAX_ITERATIONS,
    DECISION_PUBLISH,
    Lease,
    TransitionWrite,
    WorkflowResult,
    WorkflowRow,
    WorkflowSummary,
)
from story_fsm.runner import AttemptFailure, StageExhausted, StageRunner, StageSuccess
from story_fsm.stages import (
    PolishOutcome,
    ReviewOutcome,
    StoryPolisher,
    StoryReviewer,
    normalize_polish,
    normalize_review,
)
from story_fsm.states import Stage, Trigger, WorkflowState
from story_fsm.store.sql import WorkflowStateManager
from story_fsm.validation import validate_new_workflow, validate_story_id

__all__ = ["StoryWorkflowOrchestrator"]

#: The edge a resume takes from each stored state (COMPLETE needs none).
_RESUME_TRIGGERS: dict[WorkflowState, Trigger] = {
    WorkflowState.INITIAL: Trigger.START,
    WorkflowState.REVIEWING: Trigger.RESUME,
    WorkflowState.POLISHING: Trigger.RESUME,
    WorkflowState.FAILED: Trigger.RETRY,
}


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class _Deps:
    """What one run needs from its orchestrator."""

    store: WorkflowStateManager
    reviewer: StoryReviewer
    polisher: StoryPolisher
    config: WorkflowConfig
    runner: StageRunner
    lease: Lease


def _review_write(
    src: WorkflowState, dst: WorkflowState, it: int, kw: dict[str, Any]
) -> TransitionWrite:
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
        payload_json=json.dumps(payload),
        stage=Stage.REVIEW,
        attempt=kw["attempt"],
        duration_seconds=kw["duration"],
        cost=review.cost,
        quality_score=review.quality_score,
        decision=DECISION_PUBLISH if dst is WorkflowState.COMPLETE else None,
    )


def _polish_write(
    src: WorkflowState, dst: WorkflowState, it: int, kw: dict[str, Any], script: str
) -> TransitionWrite:
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
        payload_json=json.dumps(payload),
        stage=Stage.POLISH,
        attempt=kw["attempt"],
        duration_seconds=kw["duration"],
        cost=polish.cost,
        title=polish.title,
        script=None if unchanged else polish.script,
        decision=DECISION_MAX_ITERATIONS if dst is WorkflowState.COMPLETE else None,
    )


def _failure_write(
    trigger: Trigger, src: WorkflowState, dst: WorkflowState, it: int, failure: AttemptFailure
) -> TransitionWrite:
    payload: dict[str, Any] = {
        "stage": failure.stage.value,
        "attempt": failure.attempt,
        "error": failure.error_text,
    }
    if trigger is Trigger.ATTEMPT_FAILED:
        payload["next_wait_seconds"] = failure.next_wait_seconds
    return TransitionWrite(
        trigger,
        src,
        dst,
        it,
        it,
        payload_json=json.dumps(payload),
        stage=failure.stage,
        attempt=failure.attempt,
        duration_seconds=failure.duration_seconds,
        error=failure.error_text,
        failed_stage=failure.stage if dst is WorkflowState.FAILED else None,
    )


class _Run(MachineModel):
    """One workflow being advanced by this process: the ``transitions`` model."""

    def __init__(self, row: WorkflowRow, deps: _Deps, emit: Emitter) -> None:
        summary = row.summary
        self.story_id = summary.story_id
        self.seq = summary.seq
        self.iteration = summary.iteration
        self.title = summary.title
        self.script = row.script
        self.row = row
        self.last_review: dict[str, Any] | None = (
            row.last_review.get("review") if row.last_review else None
        )
        self.failed_stage = row.failed_stage
        self.max_iterations = deps.config.max_iterations
        self.quality_threshold = deps.config.quality_threshold
        self.deps = deps
        self.emit = emit
        self.failure: AttemptFailure | None = None
        self.log = get_logger(story_id=self.story_id)

    # -- persistence ---------------------------------------------------------------------------

    def record(self, event: EventData) -> None:
        """Persist the edge about to be taken (the machine's ``before_state_change``)."""
        assert event.transition is not None  # always set for before_state_change
        trigger = Trigger(event.event.name)
        source = WorkflowState[event.transition.source]
        dest = WorkflowState[event.transition.dest] if event.transition.dest else source
        write = self._plan(trigger, source, dest, event.kwargs)
        self._append(write)
        self._announce(trigger, write.iteration, event.kwargs)

    def _plan(
        self, trigger: Trigger, src: WorkflowState, dst: WorkflowState, kw: dict[str, Any]
    ) -> TransitionWrite:
        if trigger is Trigger.REVIEWED:
            return _review_write(src, dst, self.iteration, kw)
        if trigger is Trigger.POLISHED:
            return _polish_write(src, dst, self.iteration, kw, self.script)
        if trigger is Trigger.FAIL:
            return _failure_write(trigger, src, dst, self.iteration, kw["failure"])
        payload = json.dumps({"owner": self.deps.lease.owner})
        return TransitionWrite(
            trigger,
            src,
            dst,
            self.iteration,
            self.iteration,
            payload_json=payload,
            takeover=bool(kw.get("takeover")),
        )

    def _append(self, write: TransitionWrite) -> None:
        self.deps.store.append(self.story_id, self.seq, write, self.deps.lease)
        self.seq += 1
        self.iteration = write.next_iteration
        self.title = write.title or self.title
        self.script = write.script or self.script
        self.log.debug(
            "transition_recorded",
            seq=self.seq,
            trigger=write.trigger.value,
            source=write.source.value,
            dest=write.dest.value,
            iteration=write.iteration,
        )

    def _announce(self, trigger: Trigger, iteration: int, kw: dict[str, Any]) -> None:
        """Emit the progress event a just-committed row stands for."""
        if trigger is Trigger.REVIEWED:
            review: ReviewOutcome = kw["outcome"]
            self.last_review = review.data
            self.emit(
                Event.REVIEW_COMPLETE,
                iteration=iteration,
                quality_score=review.quality_score,
                decision=review.decision.value,
            )
        elif trigger is Trigger.POLISHED:
            polish: PolishOutcome = kw["outcome"]
            self.emit(
                Event.POLISH_COMPLETE, iteration=iteration, changes_count=polish.changes_count
            )

    # -- stages -------------------------------------------------------------------------------

    def on_enter_REVIEWING(self, event: EventData) -> None:
        """Run the reviewer; fire ``reviewed`` or ``fail`` (queued) with its outcome."""
        self.emit(
            Event.ITERATION_STARTED, iteration=self.iteration, story_version=f"v{self.iteration}"
        )
        self._run_stage(Stage.REVIEW, self._review_call(), normalize_review, Trigger.REVIEWED)

    def on_enter_POLISHING(self, event: EventData) -> None:
        """Run the polisher; fire ``polished`` or ``fail`` (queued) with its outcome."""
        title = self.title

        def normalize(raw: object) -> PolishOutcome:
            return normalize_polish(raw, title)

        self._run_stage(Stage.POLISH, self._polish_call(), normalize, Trigger.POLISHED)

    def _review_call(self) -> Callable[[], object]:
        kwargs: dict[str, Any] = {
            "title": self.title,
            "script": self.script,
            "audience_context": dict(self.row.audience_context),
            "original_idea": self.row.original_idea,
            "story_id": self.story_id,
            "story_version": f"v{self.iteration}",
            "local_review_summary": self.row.local_review_summary,
        }
        if self.deps.config.review_model is not None:
            kwargs["model"] = self.deps.config.review_model
        reviewer = self.deps.reviewer
        return lambda: reviewer.review_story(**kwargs)

    def _polish_call(self) -> Callable[[], object]:
        kwargs: dict[str, Any] = {
            "story_id": self.story_id,
            "current_title": self.title,
            "current_script": self.script,
            "expert_review_data": dict(self.last_review or {}),
            "iteration_number": self.iteration,
            "audience_context": dict(self.row.audience_context),
            "original_idea": self.row.original_idea,
        }
        if self.deps.config.polish_model is not None:
            kwargs["model"] = self.deps.config.polish_model
        polisher = self.deps.polisher
        return lambda: polisher.polish_story(**kwargs)

    def _run_stage(
        self,
        stage: Stage,
        call: Callable[[], object],
        normalize: Callable[[object], Any],
        done: Trigger,
    ) -> None:
        self.emit(Event.STAGE_STARTED, stage=stage.value, iteration=self.iteration)
        try:
            success: StageSuccess[Any] = self.deps.runner.run(
                stage, call, normalize, on_retry=self._attempt_failed, on_wait=self._heartbeat
            )
        except StageExhausted as exc:
            self.failure = exc.failure
            self.fire(Trigger.FAIL, failure=exc.failure)
            return
        self.fire(
            done, outcome=success.value, attempt=success.attempt, duration=success.duration_seconds
        )

    def _attempt_failed(self, failure: AttemptFailure) -> None:
        # Recorded directly, not fired: inside an on-enter callback a queued trigger would
        # only run after the stage, and the record must land before the next attempt.
        self._append(
            _failure_write(Trigger.ATTEMPT_FAILED, self.state, self.state, self.iteration, failure)
        )
        self.log.warning(
            "stage_retry",
            stage=failure.stage.value,
            iteration=self.iteration,
            attempt=failure.attempt,
            error=failure.error_text,
            wait_seconds=failure.next_wait_seconds,
        )
        self.emit(
            Event.STAGE_RETRY,
            stage=failure.stage.value,
            iteration=self.iteration,
            attempt=failure.attempt,
            error=failure.error_text,
            wait_seconds=failure.next_wait_seconds,
        )

    def _heartbeat(self) -> None:
        try:
            if not self.deps.store.heartbeat(self.story_id, self.deps.lease):
                self.log.warning("lease_lost", owner=self.deps.lease.owner)
        except Exception:  # the next fenced write reports a real problem; keep the call alive
            self.log.exception("heartbeat_failed")


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
        executor: StageExecutor | None = None,
    ) -> None:
        self.reviewer = reviewer
        self.polisher = polisher
        self.state_manager = state_manager
        self._config = config
        self.owner = owner or _default_owner()
        self.lease_seconds = lease_seconds
        self._executor = executor

    @property
    def config(self) -> WorkflowConfig:
        """The config new workflows start with."""
        return self._config or WorkflowConfig()

    def _lease(self) -> Lease:
        return Lease(self.owner, uuid.uuid4().hex, self.lease_seconds)

    def _deps(self, config: WorkflowConfig, lease: Lease) -> _Deps:
        runner = StageRunner(
            config, executor=self._executor, heartbeat_seconds=max(self.lease_seconds / 3, 0.05)
        )
        return _Deps(self.state_manager, self.reviewer, self.polisher, config, runner, lease)

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
        new = validate_new_workflow(
            story_id=story_id,
            title=title,
            script=script,
            audience_context=audience_context,
            original_idea=original_idea,
            local_review_summary=local_review_summary,
            config=self.config,
        )
        return self.state_manager.create(new, None).summary

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
        new = validate_new_workflow(
            story_id=story_id,
            title=title,
            script=script,
            audience_context=audience_context,
            original_idea=original_idea,
            local_review_summary=local_review_summary,
            config=self.config,
        )
        lease = self._lease()
        row = self.state_manager.create(new, lease)
        emit = Emitter(story_id, progress_callback)
        emit(Event.WORKFLOW_STARTED, title=title, config=self.config.to_dict())
        get_logger(story_id=story_id).info("workflow_started", owner=lease.owner)
        return self._drive(row, Trigger.START, self.config, lease, emit, takeover=False)

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
            ConcurrentAdvanceError: Another resumer claimed it first; no stage was called.
            StageFailedError: The stage failed on every attempt again.
        """
        row = self.state_manager.load_row(validate_story_id(story_id))
        if row is None:
            raise WorkflowNotFoundError(story_id)
        state = row.summary.state
        if state is WorkflowState.COMPLETE:
            result = self.state_manager.load_state(story_id)
            assert result is not None
            return result
        config = self._config or WorkflowConfig.from_dict(row.config)
        emit = Emitter(story_id, progress_callback)
        emit(
            Event.WORKFLOW_RESUMED,
            state=state.value,
            seq=row.summary.seq,
            iteration=row.summary.iteration,
        )
        get_logger(story_id=story_id).info(
            "workflow_resumed", state=state.value, seq=row.summary.seq
        )
        return self._drive(row, _RESUME_TRIGGERS[state], config, self._lease(), emit, takeover=True)

    def _drive(
        self,
        row: WorkflowRow,
        trigger: Trigger,
        config: WorkflowConfig,
        lease: Lease,
        emit: Emitter,
        *,
        takeover: bool,
    ) -> WorkflowResult:
        """Fire *trigger* and let the queued machine run the loop to a terminal state."""
        run = _Run(row, self._deps(config, lease), emit)
        build_machine(run, row.summary.state)
        run.fire(trigger, takeover=takeover)
        result = self.state_manager.load_state(run.story_id)
        assert result is not None
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
