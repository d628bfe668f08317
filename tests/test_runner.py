"""The stage runner: timeouts, retries with backoff, and the lease heartbeat while waiting."""

from __future__ import annotations

import threading
import time

import pytest

from story_fsm import Stage, StageTimeoutError, WorkflowConfig
from story_fsm._executor import CancelledCall, StageExecutor
from story_fsm.runner import AttemptFailure, StageExhausted, StageRunner


def identity(value: object) -> object:
    return value


class TestStageRunner:
    def test_heartbeat_runs_while_a_slow_stage_runs(self) -> None:
        """on_wait is called periodically while the stage call is in flight."""
        beats: list[float] = []
        runner = StageRunner(WorkflowConfig(stage_timeout_seconds=5), heartbeat_seconds=0.05)
        result = runner.run(
            Stage.REVIEW,
            lambda: time.sleep(0.3) or "ok",
            identity,
            on_retry=lambda f: None,
            on_wait=lambda: beats.append(time.monotonic()),
        )
        assert result.value == "ok" and result.attempt == 1
        assert len(beats) >= 3

    def test_heartbeat_runs_during_backoff(self) -> None:
        """A long backoff between attempts keeps the lease alive too."""
        beats: list[int] = []
        calls: list[int] = []

        def flaky() -> str:
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("first fails")
            return "ok"

        config = WorkflowConfig(retry_backoff_seconds=0.3, stage_timeout_seconds=5)
        runner = StageRunner(config, heartbeat_seconds=0.05)
        failures: list[AttemptFailure] = []
        result = runner.run(
            Stage.POLISH, flaky, identity, on_retry=failures.append, on_wait=lambda: beats.append(1)
        )
        assert result.attempt == 2 and len(failures) == 1
        assert failures[0].next_wait_seconds == pytest.approx(0.3)
        assert len(beats) >= 3

    def test_stage_raising_timeout_error_is_its_own_failure(self) -> None:
        """A TimeoutError raised by the stage itself is not mistaken for our wait timing out."""

        def raises() -> str:
            raise TimeoutError("socket read timed out")

        runner = StageRunner(WorkflowConfig(max_stage_retries=1, stage_timeout_seconds=5))
        with pytest.raises(StageExhausted) as caught:
            runner.run(Stage.REVIEW, raises, identity, on_retry=lambda f: None)
        assert not isinstance(caught.value.failure.error, StageTimeoutError)
        assert "socket read timed out" in caught.value.failure.error_text

    def test_hook_errors_propagate_unwrapped(self) -> None:
        """An error while recording a failed attempt is not counted as a stage failure."""

        class RecordFailed(Exception):
            pass

        def on_retry(failure: AttemptFailure) -> None:
            raise RecordFailed("database gone")

        runner = StageRunner(WorkflowConfig(retry_backoff_seconds=0))
        with pytest.raises(RecordFailed):
            runner.run(Stage.REVIEW, lambda: 1 / 0, identity, on_retry=on_retry)

    @pytest.mark.parametrize("attempts", [1, 2, 4])
    def test_every_attempt_is_numbered_and_waits_double(self, attempts: int) -> None:
        """N failing attempts: N-1 retries reported with waits b, 2b, 4b ..., then exhausted."""
        config = WorkflowConfig(max_stage_retries=attempts, retry_backoff_seconds=0.01)
        runner = StageRunner(config)
        reported: list[AttemptFailure] = []
        calls: list[int] = []

        def failing() -> str:
            calls.append(1)
            raise RuntimeError(f"attempt {len(calls)}")

        with pytest.raises(StageExhausted) as info:
            runner.run(Stage.REVIEW, failing, identity, on_retry=reported.append)
        assert len(calls) == attempts
        assert [f.attempt for f in reported] == list(range(1, attempts))
        expected = [0.01 * 2**i for i in range(attempts - 1)]
        assert [f.next_wait_seconds for f in reported] == pytest.approx(expected)
        assert info.value.failure.attempt == attempts
        assert str(info.value.failure.error) == f"attempt {attempts}"


class TestExecutor:
    def test_threads_are_daemons_and_reused(self) -> None:
        """Calls run on daemon threads (a hung call cannot block exit), reused across calls."""
        executor = StageExecutor(max_workers=2)
        names = [
            executor.submit(
                lambda: (threading.current_thread().daemon, threading.get_ident())
            ).result(5)
            for _ in range(5)
        ]
        assert all(daemon for daemon, _ in names)
        assert len({ident for _, ident in names}) <= 2

    def test_a_call_cancelled_before_it_starts_never_runs(self) -> None:
        """Cancel wins over a queued call: it is dropped, and its waiter is told so."""
        executor = StageExecutor(max_workers=1)
        gate = threading.Event()
        ran: list[str] = []
        first = executor.submit(lambda: gate.wait(5))
        second = executor.submit(lambda: ran.append("second"))
        assert second.cancel() is True
        assert second.done()
        with pytest.raises(CancelledCall):
            second.result(1)
        gate.set()
        assert first.result(5) is True
        assert first.cancel() is False  # already ran: too late to cancel
        assert executor.submit(lambda: "after").result(5) == "after"
        assert ran == []

    def test_result_times_out_while_the_call_runs(self) -> None:
        """result(timeout) raises TimeoutError while the call is still running, then returns."""
        executor = StageExecutor(max_workers=1)
        gate = threading.Event()
        call = executor.submit(lambda: gate.wait(5) and "done")
        with pytest.raises(TimeoutError):
            call.result(0.05)
        assert not call.done()
        gate.set()
        assert call.result(5) == "done"
        assert call.done() and call.result(0) == "done"

    def test_exceptions_reach_the_future(self) -> None:
        """A call's exception is delivered to the waiting thread."""
        executor = StageExecutor(max_workers=1)
        with pytest.raises(ZeroDivisionError):
            executor.submit(lambda: 1 / 0).result(5)
