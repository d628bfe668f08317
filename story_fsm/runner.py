"""Running one stage call: a timeout per attempt, retries with backoff (tenacity), and hooks.

Retries and timeouts are declared here once, around the stage call only. The runner knows
nothing of the database or the machine: it reports each failed attempt to a hook (the engine
records it) and returns the normalized answer, or raises :class:`StageExhausted`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Generic, TypeVar, cast

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from story_fsm._executor import StageCall, StageExecutor, default_executor
from story_fsm.config import WorkflowConfig
from story_fsm.errors import InvalidStageOutputError, StageTimeoutError
from story_fsm.states import Stage

__all__ = ["AttemptFailure", "StageExhausted", "StageRunner", "StageSuccess"]

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
        cost = (
            getattr(self.error, "cost", 0.0)
            if isinstance(self.error, InvalidStageOutputError)
            else 0.0
        )
        return float(cost or 0.0)

    @property
    def error_text(self) -> str:
        """``Type: message`` of the error, as stored in the history."""
        return f"{type(self.error).__name__}: {self.error}"


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


class StageRunner:
    """Calls stages with a per-attempt timeout and ``config``'s retry policy.

    Args:
        config: Supplies ``max_stage_retries``, ``stage_timeout_seconds`` and
            ``retry_backoff_seconds``.
        executor: Where calls run (a shared daemon pool by default).
        sleep: The backoff's sleep (injectable for a stop signal).
        heartbeat_seconds: While a call runs, ``on_wait`` is called this often.

    """

    def __init__(
        self,
        config: WorkflowConfig,
        *,
        executor: StageExecutor | None = None,
        sleep: Callable[[float], None] = time.sleep,
        heartbeat_seconds: float = 10.0,
        throttle: Callable[[Stage], None] | None = None,
    ) -> None:
        self._config = config
        self._throttle = throttle
        self._executor = executor or default_executor()
        self._sleep = sleep
        self._heartbeat_seconds = heartbeat_seconds
        # The policy is the config's, the same for every call: built once per runner.
        self._wait = wait_exponential(multiplier=config.retry_backoff_seconds, exp_base=2, min=0)
        self._retry = retry_if_exception_type(Exception)

    def _await(
        self, stage: Stage, pending: StageCall[object], on_wait: Callable[[], None] | None
    ) -> object:
        deadline = time.monotonic() + self._config.stage_timeout_seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pending.cancel()  # if it has not started yet; a running call is abandoned
                raise StageTimeoutError(
                    f"{stage.value} took longer than {self._config.stage_timeout_seconds:g}s"
                )
            try:
                return pending.result(timeout=min(remaining, self._heartbeat_seconds))
            except TimeoutError:
                if pending.done():  # the stage itself raised a TimeoutError
                    raise
                if on_wait is not None:
                    on_wait()

    def _sleeper(self, on_wait: Callable[[], None] | None) -> Callable[[float], None]:
        """Return the backoff's sleep, which keeps the lease alive during long waits too."""

        def sleep(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                self._sleep(min(left, self._heartbeat_seconds))
                if on_wait is not None and time.monotonic() < deadline:
                    on_wait()

        return sleep

    def _backoff(self, attempt: int) -> float:
        """The policy's wait after failed attempt number *attempt* (tenacity's own formula)."""
        return float(self._wait(cast(RetryCallState, SimpleNamespace(attempt_number=attempt))))

    def _retrying(
        self,
        on_retry: Callable[[AttemptFailure], None],
        box: list[AttemptFailure],
        on_wait: Callable[[], None] | None,
    ) -> Retrying:
        """Tenacity's loop over attempts 2..N (its attempt 1 is the stage's attempt 2)."""

        def before_sleep(state: RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action else 0.0
            on_retry(replace(box[-1], next_wait_seconds=wait))

        return Retrying(
            stop=stop_after_attempt(self._config.max_stage_retries - 1),
            wait=lambda state: self._backoff(state.attempt_number + 1),
            retry=self._retry,
            before_sleep=before_sleep,
            sleep=self._sleeper(on_wait),
            reraise=True,
        )

    def _attempt(
        self,
        stage: Stage,
        call: Callable[[], object],
        normalize: Callable[[object], T],
        on_wait: Callable[[], None] | None,
        number: int,
        failures: list[AttemptFailure],
    ) -> StageSuccess[T]:
        if self._throttle is not None:
            self._throttle(stage)
        started = time.monotonic()
        try:
            value = normalize(self._await(stage, self._executor.submit(call), on_wait))
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
    ) -> StageSuccess[T]:
        """Run *call* until *normalize* accepts its answer or the attempts run out.

        Raises:
            StageExhausted: Every attempt failed; carries the last :class:`AttemptFailure`.

        """
        failures: list[AttemptFailure] = []
        # Most calls succeed at once, so the first attempt runs on its own: tenacity's
        # bookkeeping (a Future per attempt) costs more than handing the call to its thread.
        # The retries, their backoff and their stop are tenacity's.
        try:
            return self._attempt(stage, call, normalize, on_wait, 1, failures)
        except Exception as exc:
            if not failures or exc is not failures[-1].error:
                raise  # not the stage's failure (the throttle's): as it is
            if self._config.max_stage_retries <= 1:
                raise StageExhausted(failures[-1]) from exc
        wait = self._backoff(1)
        on_retry(replace(failures[-1], next_wait_seconds=wait))
        self._sleeper(on_wait)(wait)
        try:
            for attempt in self._retrying(on_retry, failures, on_wait):
                with attempt:
                    number = attempt.retry_state.attempt_number + 1
                    return self._attempt(stage, call, normalize, on_wait, number, failures)
        except Exception as exc:
            # Only the stage's own failure means "exhausted"; a hook's error (the database
            # failing while recording an attempt) propagates as it is.
            if failures and exc is failures[-1].error:
                raise StageExhausted(failures[-1]) from exc
            raise
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover
