"""One workflow being advanced by this process: the ``transitions`` model and its callbacks.

:class:`WorkflowRun` is the model of a machine lent by ``machine.bound_machine``. Its
``record`` callback persists each edge before the state changes (so a failed write leaves the
machine where it was); its on-enter callbacks run the reviewer and the polisher through the
:class:`~story_fsm.runner.StageRunner` and fire the next trigger, queued. What each edge
writes is decided by the pure functions of ``_writes.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from transitions import EventData

from story_fsm._attempts import AttemptFailure, StageExhausted, StageStopped, StageSuccess
from story_fsm._log import debug_enabled, get_logger
from story_fsm._normalize import (
    PolishOutcome,
    ReviewOutcome,
    normalize_polish,
    normalize_review,
)
from story_fsm._records import Lease, NewWorkflow, TransitionWrite, WorkflowRow
from story_fsm._writes import failure_write, polish_write, review_write
from story_fsm.config import WorkflowConfig
from story_fsm.events import Emitter, Event
from story_fsm.machine import MachineModel, bound_machine
from story_fsm.models import TransitionRecord, WorkflowSummary
from story_fsm.runner import StageRunner
from story_fsm.stages import StoryPolisher, StoryReviewer
from story_fsm.states import Stage, Trigger, WorkflowState
from story_fsm.store.sql import WorkflowStateManager, utcnow

__all__ = ["Drained", "RunDeps", "WorkflowRun"]


class Drained(Exception):
    """The host asked to stop: no new stage is started (internal).

    Raised at a stage boundary, or before the run's first write; the orchestrator then
    releases the lease if the run holds it.
    """


_TRIGGERS: dict[str, Trigger] = {t.value: t for t in Trigger}
#: The machine names its states by the members' names (``REVIEWING``), not their values.
_STATES_BY_NAME: dict[str, WorkflowState] = {s.name: s for s in WorkflowState}


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class RunDeps:
    """What one run needs from its orchestrator."""

    store: WorkflowStateManager
    reviewer: StoryReviewer
    polisher: StoryPolisher
    config: WorkflowConfig
    runner: StageRunner
    lease: Lease
    should_stop: Callable[[], bool] = _never

    def with_stop(self, should_stop: Callable[[], bool]) -> RunDeps:
        """Return a copy whose runs stop before their next stage when *should_stop* is true."""
        return replace(self, should_stop=should_stop)


class WorkflowRun(MachineModel):
    """One workflow being advanced by this process: the ``transitions`` model."""

    def __init__(
        self,
        row: WorkflowRow,
        deps: RunDeps,
        emit: Emitter,
        records: list[TransitionRecord] | None = None,
        pending: NewWorkflow | None = None,
        *,
        claimed: bool = False,
    ) -> None:
        self.story_id = row.summary.story_id
        self.state = row.summary.state
        #: A new workflow not written yet: its rows go in with the run's first edge.
        self.pending = pending
        #: The summary row as stored now, kept current write by write (no reads).
        self.row = row
        #: The whole history when this run wrote all of it (a new workflow), else None.
        self.records = records
        self.iteration = row.summary.iteration  # the guards read it as a plain attribute
        self.failed_stage = row.failed_stage
        self.max_iterations = deps.config.max_iterations
        self.quality_threshold = deps.config.quality_threshold
        self.deps = deps
        self.emit = emit
        self.failure: AttemptFailure | None = None
        #: This run's lease is on the row (a worker's claim put it there; else the run's first
        #: write does), and not freed by a last write.
        self._holds = claimed
        #: No more heartbeats: the run's last write frees the lease, or the run is over here.
        self._freeing = False
        self.log = get_logger(story_id=self.story_id)
        self._debug = debug_enabled()
        #: The stage call running now (or last), kept for a new carrier should this one's
        #: attempt outlive its timeout: stage, call, normalizer, the trigger it fires.
        self._stage_call: (
            tuple[Stage, Callable[[], object], Callable[[object], Any], Trigger] | None
        ) = None

    @property
    def seq(self) -> int:
        """The last stored history position."""
        return self.row.summary.seq

    @property
    def holds_lease(self) -> bool:
        """True while the stored workflow is held by this run's lease (this run's to release)."""
        return self._holds and not self._freeing

    @property
    def title(self) -> str:
        """The current title."""
        return self.row.summary.title

    @property
    def script(self) -> str:
        """The current script."""
        return self.row.script

    @property
    def last_review(self) -> dict[str, Any] | None:
        """The last committed review, as the reviewer returned it."""
        return self.row.last_review.get("review") if self.row.last_review else None

    # -- persistence ---------------------------------------------------------------------------

    def record(self, event: EventData) -> None:
        """Persist the edge about to be taken (the machine's ``before_state_change``)."""
        assert event.transition is not None  # always set for before_state_change
        transition = event.transition
        # Dict lookups, not enum-class calls: this runs once per transition.
        trigger = _TRIGGERS[event.event.name]
        source = _STATES_BY_NAME[transition.source]
        dest = _STATES_BY_NAME[transition.dest] if transition.dest else source
        write = self._plan(trigger, source, dest, event.kwargs)
        resumed = self.row.summary if write.takeover else None
        self._append(write)
        if resumed is not None:
            self._resumed(resumed)
        self._announce(trigger, write.iteration, event.kwargs)

    def _resumed(self, summary: WorkflowSummary) -> None:
        """Announce an explicit resume of the workflow as *summary* left it.

        Sent once the resume's own row is committed and this run holds the lease, so that
        a resumer that lost the race to another announces nothing.
        """
        state = summary.state.value
        self.emit(Event.WORKFLOW_RESUMED, state=state, seq=summary.seq, iteration=summary.iteration)
        self.log.info("workflow_resumed", state=state, seq=summary.seq)

    def _plan(
        self, trigger: Trigger, src: WorkflowState, dst: WorkflowState, kw: dict[str, Any]
    ) -> TransitionWrite:
        if trigger is Trigger.REVIEWED:
            return review_write(src, dst, self.iteration, kw)
        if trigger is Trigger.POLISHED:
            return polish_write(src, dst, self.iteration, kw, self.script)
        if trigger is Trigger.FAIL:
            return failure_write(trigger, src, dst, self.iteration, kw["failure"])
        payload: dict[str, Any] = {"owner": self.deps.lease.owner}
        config = self._changed_config()
        if config is not None:
            # The run goes on with a config of its own (the orchestrator's or the worker's):
            # its first row says which, so the result reports the config that ran.
            payload["config"] = config
        takeover = bool(kw.get("takeover"))
        if takeover:
            held_by = self._live_holder()
            if held_by is not None:
                # An explicit resume took the story from a lease that had not expired: the
                # audit trail says from whom (that holder, if alive, is fenced off now).
                payload["took_over_from"] = held_by
                self.log.warning("lease_taken_over", previous_owner=held_by, owner=payload["owner"])
        return TransitionWrite(
            trigger,
            src,
            dst,
            self.iteration,
            self.iteration,
            payload=payload,
            takeover=takeover,
        )

    def _changed_config(self) -> dict[str, Any] | None:
        """The run's config as a dict when it is not the stored one, else None."""
        if self.pending is not None:  # a new workflow stores the run's own config
            return None
        # Compared as stored: a stored value read at a cap (WorkflowConfig.from_dict) makes
        # the run's config differ from the row's, and the result must report what ran.
        config = self.deps.config.to_dict()
        return None if self.row.config == config else config

    def _live_holder(self) -> str | None:
        """The owner of the stored lease if it had not expired yet (else None)."""
        summary = self.row.summary
        expires = summary.lease_expires_at
        if summary.lease_owner is None or expires is None or expires <= utcnow():
            return None
        return summary.lease_owner

    def _append(self, write: TransitionWrite) -> None:
        if write.dest.is_terminal:
            # Set before the write: a heartbeat that lands just after it finds the lease
            # freed, which is no loss.
            self._freeing = True
        if self.pending is not None:
            self._create(self.pending, write)
        else:
            store, lease = self.deps.store, self.deps.lease
            applied = store.append(self.story_id, self.seq, write, lease, self.row)
            assert applied is not None  # a current row was given
            self.row, record = applied
            self.iteration = self.row.summary.iteration
            if self.records is not None:
                self.records.append(record)
        self._holds = True
        if self._debug:  # one line per row: skip building it when nobody reads it
            self.log.debug(
                "transition_recorded",
                seq=self.seq,
                trigger=write.trigger.value,
                source=write.source.value,
                dest=write.dest.value,
                iteration=write.iteration,
            )

    def _create(self, new: NewWorkflow, first: TransitionWrite) -> None:
        """Write the new workflow and the run's first edge in one transaction."""
        self.row, self.records = self.deps.store.create_with_record(
            new, self.deps.lease, first=first
        )
        self.pending = None
        self.iteration = self.row.summary.iteration
        if self.emit.wanted:  # the config's dict is not built for nobody
            self.emit(Event.WORKFLOW_STARTED, title=new.title, config=self.deps.config.to_dict())
        self.log.info("workflow_started", owner=self.deps.lease.owner)

    def _announce(self, trigger: Trigger, iteration: int, kw: dict[str, Any]) -> None:
        """Emit the progress event a just-committed row stands for."""
        if not self.emit.wanted:  # once per transition: no event data built for nobody
            return
        if trigger is Trigger.REVIEWED:
            review: ReviewOutcome = kw["outcome"]
            self.emit(
                Event.REVIEW_COMPLETE,
                iteration=iteration,
                quality_score=review.quality_score,
                decision=review.decision.value,
                attempt=kw["attempt"],
            )
        elif trigger is Trigger.POLISHED:
            polish: PolishOutcome = kw["outcome"]
            self.emit(
                Event.POLISH_COMPLETE,
                iteration=iteration,
                changes_count=polish.changes_count,
                attempt=kw["attempt"],
            )

    # -- stages -------------------------------------------------------------------------------

    def on_enter_REVIEWING(self, event: EventData) -> None:
        """Run the reviewer; fire ``reviewed`` or ``fail`` (queued) with its outcome."""
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
        after: AttemptFailure | None = None,
    ) -> None:
        runner = self.deps.runner
        on_start = None
        if after is None and (self.deps.should_stop() or runner.interrupted):
            self._drain()  # before the paid call: the state stays, committed, for the next
        if after is None and self.emit.wanted:  # nobody listens: no closure per stage

            def on_start() -> None:
                # Sent by the runner just before the call, after any rate-limit wait (which a
                # stop can end with no call): only a stage that does start is announced. A
                # review starts an iteration (REVIEWING entered; a retry after a timeout comes
                # with *after*, and announces nothing again).
                if stage is Stage.REVIEW:
                    self.emit(
                        Event.ITERATION_STARTED,
                        iteration=self.iteration,
                        story_version=f"v{self.iteration}",
                    )
                self.emit(Event.STAGE_STARTED, stage=stage.value, iteration=self.iteration)

        self._stage_call = (stage, call, normalize, done)
        try:
            success: StageSuccess[Any] = runner.run(
                stage,
                call,
                normalize,
                on_retry=self._attempt_failed,
                on_wait=self.heartbeat,
                after=after,
                on_start=on_start,
            )
        except StageExhausted as exc:
            self.failure = exc.failure
            self.fire(Trigger.FAIL, failure=exc.failure)
            return
        except StageStopped:
            self._drain()  # asked to stop before a call (rate limit, backoff, retry)
        self.fire(
            done, outcome=success.value, attempt=success.attempt, duration=success.duration_seconds
        )

    def _drain(self) -> NoReturn:
        """Stop the run at a stage boundary, with :class:`Drained`.

        A run asked to stop (a draining worker, a cancelled await) has its lease released by
        the thread that waits for it, once the run is back (the orchestrator's ``_drive``). An
        interrupted caller is not waiting any more: the run gives the lease up itself, for
        the case where its first write (a resume's takeover) landed after the caller's own
        release found nothing to release.
        """
        if self.deps.runner.interrupted:
            self.let_go()
        raise Drained

    def release_lease(self, reason: str) -> bool:
        """Give the run's lease up now; True if this run held it and the release took.

        Nothing else changes: the last committed row stays, and ``resume``, a worker or
        ``delete`` may take the story without waiting for the lease to lapse. A write of the
        run still under way lands first (the store's lock, or the row's, orders the two);
        any later one is fenced off. A second release, or one after a last write freed the
        lease, finds no row holding the token and changes nothing.

        Raises:
            StoreError: The release could not be written (the lease then lapses after
                ``lease_seconds``, as when a process dies).
        """
        if not self._holds:
            return False  # nothing of this run's on the row yet
        # No check of _freeing: the caller's end of the run (ended()) sets it too, and this
        # must still release then.
        self._freeing = True  # no heartbeat renews it after this
        lease = self.deps.lease
        if not self.deps.store.release(self.story_id, lease):
            return False
        self.log.info(
            "workflow_released",
            owner=lease.owner,
            state=self.row.summary.state.value,
            seq=self.seq,
            reason=reason,
        )
        return True

    def let_go(self) -> None:
        """Give the lease up for a caller that was interrupted and stops waiting.

        Nobody is left to report an error to: a failed release is logged, not raised.
        """
        try:
            self.release_lease("interrupted")
        except Exception as exc:
            self.log.warning("lease_release_failed", owner=self.deps.lease.owner, error=str(exc))

    # -- carriers ------------------------------------------------------------------------------

    def carried(
        self, trigger: Trigger, *, announce: Callable[[], None] | None = None, **kwargs: Any
    ) -> None:
        """Fire *trigger* and let the queued machine run the loop to its end, on this thread.

        The thread that waits for the run (:meth:`StageRunner.carry`) calls this on a
        carrier; the stages are called here, inline. *announce* (the event that opens the
        run) goes first, here too, so that the waiting thread has a claimed lease renewed
        while a slow progress callback takes its time.
        """
        if self.deps.should_stop():
            # Asked to stop before the run's first write (a cancelled await, a draining
            # worker): no row and no event of this run; a new story is not created at all.
            raise Drained
        if announce is not None:
            announce()
        with bound_machine(self, self.state):
            self.fire(trigger, **kwargs)

    def after_timeout(self, failure: AttemptFailure) -> Callable[[], None]:
        """Return what a new carrier runs once the attempt in flight timed out.

        The stage's next attempts (the timed-out one is recorded first, like any failed
        attempt), then the loop, on a machine of the new carrier at the current state.
        """
        assert self._stage_call is not None  # an attempt is in flight: its call is known
        stage, call, normalize, done = self._stage_call

        def go_on() -> None:
            with bound_machine(self, self.state):
                self._run_stage(stage, call, normalize, done, after=failure)

        return go_on

    @property
    def stage_log(self) -> Any:
        """The run's logger, naming the stage running now and its iteration."""
        # Bound when a line is logged (retries, heartbeats), not for every stage call.
        stage = self._stage_call[0].value if self._stage_call else None
        return self.log.bind(iteration=self.iteration, stage=stage)

    def _attempt_failed(self, failure: AttemptFailure) -> None:
        # Recorded directly, not fired: inside an on-enter callback a queued trigger would
        # only run after the stage, and the record must land before the next attempt.
        self._append(
            failure_write(Trigger.ATTEMPT_FAILED, self.state, self.state, self.iteration, failure)
        )
        self.stage_log.warning(
            "stage_retry",
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

    def ended(self) -> None:
        """Stop renewing the lease: the run is over in this process (or its caller gone).

        A heartbeat may still be in flight on another thread (the runner does not wait for
        it). The store fences it on the lease's token, so it renews nothing once a terminal
        row or a release freed the lease; this keeps it from reporting that as a lost lease,
        and keeps a heartbeat not begun yet from being sent at all.
        """
        self._freeing = True

    def heartbeat(self) -> None:
        """Renew the run's lease while the run goes on (failures are logged, not raised)."""
        if not self._holds or self._freeing:
            # Before the run's first write the row holds no lease of this run yet (a new
            # story is not written, a resume has not taken over); after the last, none.
            return
        try:
            if not self.deps.store.heartbeat(self.story_id, self.deps.lease) and not self._freeing:
                self.stage_log.warning("lease_lost", owner=self.deps.lease.owner)
        except Exception as exc:  # the next fenced write reports a real problem; go on
            self.stage_log.warning("heartbeat_failed", error=str(exc))
