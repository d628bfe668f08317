"""Running stage calls: a timeout per attempt, retries with backoff (tenacity), and hooks.

Retries and timeouts are declared here once, around the stage call only. The runner knows
nothing of the database or the machine: it reports each failed attempt to a hook (the engine
records it) and returns the normalized answer, or raises :class:`StageExhausted`.

Where the time goes decides the shape. A stage call runs *inline*, on the thread that carries
the run (:meth:`StageRunner.carry`), not handed to another thread and back: on a small VM that
round trip cost about as much as the rest of a transition's work. The thread that asked for
the run waits for it and watches the attempt in flight (:attr:`StageRunner.in_flight`); when an
attempt outlives its timeout, the waiter takes the attempt over (the carrier's late answer is
then discarded), and the run goes on from that failed attempt on a new carrier thread. So a
call that never returns costs one abandoned thread, never the caller's. The waiter does no
I/O itself: the lease's heartbeat, a write that can wait long for a lock, is made on another
thread of the pool, so that a heartbeat stuck behind a lock never delays a timeout. An async
stage's coroutine is run to its end on the process's stage loop (``story_fsm._aio``), bounded
by the same deadline, and cancelled there when it runs out.
"""

from __future__ import annotations

import contextvars
import inspect
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from types import SimpleNamespace
from typing import TypeVar, cast

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from story_fsm._aio import await_answer
from story_fsm._attempts import (
    AttemptFailure,
    InFlight,
    StageExhausted,
    StageStopped,
    StageSuccess,
    retryable,
    said,
)
from story_fsm._executor import RunAbandoned, StageCall, StageExecutor, default_executor
from story_fsm.config import WorkflowConfig
from story_fsm.errors import StageTimeoutError
from story_fsm.stages import attempt_deadline
from story_fsm.states import Stage

__all__ = ["RunAbandoned", "StageRunner"]

T = TypeVar("T")


#: The longest the waiting thread blocks at once (see :meth:`StageRunner.carry`), and the
#: longest a backoff or a rate-limit wait goes without looking whether the run must stop.
_SIGNAL_POLL_SECONDS = 0.5


class StageRunner:
    """Calls stages with a per-attempt timeout and ``config``'s retry policy.

    A run is carried by :meth:`carry`, which enforces the timeouts and the heartbeat while the
    run's own thread calls the stages inline through :meth:`run`. A :meth:`run` outside
    :meth:`carry` has no deadline (nobody watches it).

    Args:
        config: Supplies ``max_stage_retries``, ``stage_timeout_seconds`` and
            ``retry_backoff_seconds``.
        executor: Where carriers and heartbeats run (a shared pool of daemon threads by
            default).
        sleep: The backoff's sleep (injectable for a stop signal).
        heartbeat_seconds: While a run goes on, ``on_wait`` is sent this often, on a thread
            of *executor* (one at a time: see :meth:`_beat`).
        throttle: Asked before each attempt with its stage (a rate limiter's
            ``try_acquire``): 0 lets the attempt go, more is the seconds to wait first.
        should_stop: While an attempt waits for the throttle, checked between waits: true
            gives the attempt up with :class:`StageStopped`, before the call.

    """

    def __init__(
        self,
        config: WorkflowConfig,
        *,
        executor: StageExecutor | None = None,
        sleep: Callable[[float], None] = time.sleep,
        heartbeat_seconds: float = 10.0,
        throttle: Callable[[Stage], float] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self._config = config
        self._throttle = throttle
        self._should_stop = should_stop
        self._executor = executor or default_executor()
        self._sleep = sleep
        self._heartbeat_seconds = heartbeat_seconds
        self._timeout = config.stage_timeout_seconds
        # The policy is the config's, the same for every call: built once per runner.
        self._wait = wait_exponential(multiplier=config.retry_backoff_seconds, exp_base=2, min=0)
        self._retry = retry_if_exception(retryable)
        #: The attempt in flight on this run's carrier, published for the waiting thread: it
        #: reads it to know when a heartbeat is due and when the attempt is out of time.
        self.in_flight: InFlight | None = None
        #: Set when the waiting thread was interrupted: the run should stop at its next stage.
        self.interrupted = False
        #: When a heartbeat was last due (sent, or skipped behind one in flight), to either
        #: thread (the waiter, or the carrier in a backoff or a rate-limit wait): each sends
        #: one only when an interval has passed.
        self._beat_at = time.monotonic()
        #: The heartbeat sent last, running on a thread of the executor until it returns.
        self._beating: StageCall[None] | None = None
        #: Both threads may find a heartbeat due at once: one of them sends it.
        self._beat_lock = threading.Lock()

    # -- the waiting side ---------------------------------------------------------------------

    def _launch(self, fn: Callable[[], T]) -> StageCall[T]:
        # The carrier sees the caller's context variables (structlog's bound contextvars).
        return self._executor.submit(partial(contextvars.copy_context().run, fn))

    def carry(
        self,
        start: Callable[[], T],
        *,
        on_expired: Callable[[AttemptFailure], Callable[[], T]],
        on_wait: Callable[[], None] | None = None,
    ) -> T:
        """Run *start* on a carrier thread and wait for it, enforcing the stage timeouts.

        While the run goes on, this thread sends *on_wait* every ``heartbeat_seconds`` to a
        thread of the executor (in a stage call, and between stages too: a slow progress
        callback must not let the lease lapse), without waiting for it (see :meth:`_beat`);
        once an attempt outlives ``stage_timeout_seconds``, this
        thread takes it over (its late answer will be discarded: the carrier stops with
        :class:`RunAbandoned` when the call returns, touching nothing) and runs
        ``on_expired(failure)`` on a new carrier, from that failed attempt on.

        Returns what the last carrier returned; raises what it raised. If this thread is
        interrupted (``KeyboardInterrupt``), :attr:`interrupted` is set so that the run stops
        before its next stage, and the attempt in flight is abandoned as a timed-out one is:
        its late answer is dropped, the carrier touching nothing more. Either way, a heartbeat
        still in flight is not waited for: it ends on its own thread, and *on_wait* must not
        renew a lease the run gave up since.
        """
        pending = self._launch(start)
        self._beat_at = time.monotonic()
        try:
            while True:
                # Waits are cut to _SIGNAL_POLL_SECONDS: a Ctrl-C that the kernel delivers to
                # another thread (the carrier in a socket read) only marks it pending, and
                # this thread raises KeyboardInterrupt once it runs Python code again.
                wait = min(self._until_next_look(on_wait is not None), _SIGNAL_POLL_SECONDS)
                if pending.wait(timeout=wait):
                    return pending.result()
                pending = self._look(pending, on_expired, on_wait)
        except BaseException:
            if not pending.done():  # this thread was interrupted, not the run ended in error
                self.interrupted = True
                # The caller gives the run's lease up (the engine does, at once): an answer
                # landing later must not be written under a lease that is no longer held.
                current = self.in_flight
                if current is not None and current.settle():
                    self.in_flight = None
            raise

    def _until_next_look(self, beats: bool) -> float:
        """Seconds until the run is due a heartbeat or its attempt in flight runs out of time."""
        current, now = self.in_flight, time.monotonic()
        due = self._beat_due(current) if beats else math.inf
        if current is not None:
            due = min(due, current.deadline)
        elif not beats:  # between stages, nothing to watch: an attempt starting now ends later
            due = now + self._timeout
        return max(due - now, 0.0)

    def _beat_due(self, current: InFlight | None) -> float:
        """When the next heartbeat is due: an interval after the last (or the attempt's start)."""
        since = self._beat_at if current is None else max(current.started, self._beat_at)
        return since + self._heartbeat_seconds

    def _beat(self, on_wait: Callable[[], None]) -> None:
        """Send a heartbeat to a thread of the executor and return at once.

        A heartbeat is a write, which can wait for a lock: another process's on a SQLite file
        (up to the busy timeout), another run's transaction in this process, a row lock on
        PostgreSQL. Made on the waiting thread, it would hold the timeouts up that long; made
        on the carrier in a backoff, it would stretch the backoff and delay a stop's notice,
        and run beside a heartbeat of the waiter's found due meanwhile.

        While the last heartbeat is still in flight, a new one is skipped, not queued: the
        one in flight renews the lease once it gets through (its expiry is reckoned then),
        and a queue would pile writes on a database that is already slow. Either way the
        next is due an interval from now, whichever thread (waiter or carrier) found it due.
        What *on_wait* raises is dropped: it reports its own failures (a run's heartbeat
        logs them).
        """
        with self._beat_lock:
            self._beat_at = time.monotonic()
            beating = self._beating
            if beating is None or beating.done():
                self._beating = self._launch(on_wait)

    def _look(
        self,
        pending: StageCall[T],
        on_expired: Callable[[AttemptFailure], Callable[[], T]],
        on_wait: Callable[[], None] | None,
    ) -> StageCall[T]:
        """Take an attempt past its deadline over, or send a heartbeat that is due."""
        current, now = self.in_flight, time.monotonic()
        if current is not None and now >= current.deadline:
            if not current.settle():  # the call returned just now: the carrier goes on
                return pending
            self.in_flight = None
            error = StageTimeoutError(self._late(current.stage))
            failure = AttemptFailure(current.stage, current.attempt, error, now - current.started)
            return self._launch(on_expired(failure))
        # Between stages too: the carrier writes, builds and runs the progress callbacks, and
        # a callback slower than the lease would let a worker take over a live run (and pay
        # for its stage again).
        if on_wait is not None and now >= self._beat_due(current):
            self._beat(on_wait)
        return pending

    def _late(self, stage: Stage) -> str:
        """The text of a :class:`StageTimeoutError`, whichever side saw the deadline pass."""
        return f"{stage.value} took longer than {self._timeout:g}s"

    # -- the carrier side ---------------------------------------------------------------------

    def _stopping(self) -> bool:
        """True once the run is asked to stop (a draining worker) or its caller is gone."""
        return self.interrupted or (self._should_stop is not None and self._should_stop())

    def _sleeper(self, stage: Stage, on_wait: Callable[[], None] | None) -> Callable[[float], None]:
        """Return the backoff's sleep, which keeps the lease alive during long waits too.

        A stop ends the wait with :class:`StageStopped`: a draining worker must not sit out a
        long ``Retry-After`` and then make the paid call it was told not to start.
        """

        def sleep(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                if self._stopping():
                    raise StageStopped(stage)
                self._sleep(min(left, self._heartbeat_seconds, _SIGNAL_POLL_SECONDS))
                now = time.monotonic()
                if on_wait is not None and now < deadline and now >= self._beat_due(None):
                    self._beat(on_wait)

        return sleep

    def _backoff(self, attempt: int, error: BaseException | None = None) -> float:
        """The wait after failed attempt number *attempt*.

        The policy's (tenacity's formula), or longer when the stage's error asks for it
        (``retry_after_seconds``, as an HTTP ``Retry-After`` does), up to the stage timeout.
        """
        wait = float(self._wait(cast(RetryCallState, SimpleNamespace(attempt_number=attempt))))
        asked = said(error, "retry_after_seconds") if error is not None else None
        if isinstance(asked, int | float) and not isinstance(asked, bool) and asked > wait:
            # Longer, never shorter than the policy's own wait; NaN fails the comparison. Capped
            # before float(): an int past a float's range (10**400) would raise OverflowError.
            wait = max(wait, float(min(asked, self._timeout)))
        return wait

    def _retrying(
        self,
        stage: Stage,
        on_retry: Callable[[AttemptFailure], None],
        box: list[AttemptFailure],
        on_wait: Callable[[], None] | None,
        done: int,
    ) -> Retrying:
        """Tenacity's loop over the attempts after the *done* first (its 1 is our done + 1)."""

        def before_sleep(state: RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action else 0.0
            on_retry(replace(box[-1], next_wait_seconds=wait))

        return Retrying(
            stop=stop_after_attempt(self._config.max_stage_retries - done),
            wait=lambda state: self._backoff(
                state.attempt_number + done,
                state.outcome.exception() if state.outcome is not None else None,
            ),
            retry=self._retry,
            before_sleep=before_sleep,
            sleep=self._sleeper(stage, on_wait),
            reraise=True,
        )

    def _landed(self, flight: InFlight) -> None:
        """The call returned or raised: withdraw the attempt, unless the waiter took it over."""
        if not flight.settle():
            raise RunAbandoned  # past its deadline: the run went on on another thread
        self.in_flight = None

    def _wait_turn(self, stage: Stage, on_wait: Callable[[], None] | None) -> None:
        """Wait until the throttle lets *stage* make its call.

        The wait can last up to a minute, longer than a lease: it keeps the lease alive as
        the backoff does, and it gives the attempt up when the run is asked to stop (a
        stopping worker must not make a new paid call once its budget frees up).
        """
        assert self._throttle is not None
        while (wait := self._throttle(stage)) > 0:
            if self._stopping():
                raise StageStopped(stage)
            self._sleep(min(wait, self._heartbeat_seconds, _SIGNAL_POLL_SECONDS))
            if on_wait is not None and time.monotonic() >= self._beat_due(None):
                self._beat(on_wait)

    def _attempt(
        self,
        stage: Stage,
        call: Callable[[], object],
        normalize: Callable[[object], T],
        number: int,
        failures: list[AttemptFailure],
        on_wait: Callable[[], None] | None,
        on_start: Callable[[], None] | None = None,
    ) -> StageSuccess[T]:
        if number > 1 and self._stopping():
            # A retry is a new paid call: a run asked to stop between attempts makes none
            # (its failed attempts are recorded; the next holder starts the stage afresh).
            raise StageStopped(stage)
        if self._throttle is not None:
            self._wait_turn(stage, on_wait)
        if on_start is not None:
            on_start()
        started = time.monotonic()
        flight = InFlight(stage, number, started, self._timeout)
        self.in_flight = flight
        try:
            deadline = attempt_deadline.set(flight.deadline)  # for stage_time_left()
            try:
                raw = call()
                # An async stage: run on the stage loop. (A dict, the usual answer, is let
                # through without isawaitable's three isinstance checks, one of them an ABC's.)
                if type(raw) is not dict and inspect.isawaitable(raw):
                    raw = await_answer(raw, flight.deadline, self._late(stage))
            finally:
                attempt_deadline.reset(deadline)
                self._landed(flight)
            value = normalize(raw)
        except Exception as exc:
            failures.append(AttemptFailure(stage, number, exc, time.monotonic() - started))
            raise
        return StageSuccess(value, number, time.monotonic() - started)

    def run(
        self,
        stage: Stage,
        call: Callable[[], object],
        normalize: Callable[[object], T],
        *,
        on_retry: Callable[[AttemptFailure], None],
        on_wait: Callable[[], None] | None = None,
        after: AttemptFailure | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> StageSuccess[T]:
        """Call *call* on this thread until *normalize* accepts its answer or attempts run out.

        With *after* (an attempt that timed out on a carrier now abandoned), the attempts go
        on from the next one: it is reported to *on_retry* and waited for like any failure.
        *on_start* is called once, just before the first attempt's call (after any wait for
        the rate limit, which a stop can end with no call at all).

        Raises:
            StageExhausted: Every attempt failed; carries the last :class:`AttemptFailure`.
            RunAbandoned: An attempt outlived its timeout; the run goes on elsewhere.

        """
        failures: list[AttemptFailure] = []
        if after is None:
            # Most calls succeed at once, so the first attempt runs on its own: tenacity's
            # bookkeeping (a Future per attempt) costs more than the call's own handling.
            # The retries, their backoff and their stop are tenacity's.
            try:
                return self._attempt(stage, call, normalize, 1, failures, on_wait, on_start)
            except Exception as exc:
                if not failures or exc is not failures[-1].error:
                    raise  # not the stage's failure (the throttle's): as it is
            after = failures[-1]
        else:
            failures.append(after)
        if after.attempt >= self._config.max_stage_retries or not retryable(after.error):
            raise StageExhausted(after) from after.error
        done = after.attempt
        wait = self._backoff(done, after.error)
        on_retry(replace(after, next_wait_seconds=wait))
        self._sleeper(stage, on_wait)(wait)
        try:
            for attempt in self._retrying(stage, on_retry, failures, on_wait, done):
                with attempt:
                    number = attempt.retry_state.attempt_number + done
                    return self._attempt(stage, call, normalize, number, failures, on_wait)
        except Exception as exc:
            # Only the stage's own failure means "exhausted"; a hook's error (the database
            # failing while recording an attempt) propagates as it is.
            if failures and exc is failures[-1].error:
                raise StageExhausted(failures[-1]) from exc
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
