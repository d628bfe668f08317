"""The stage runner: timeouts, retries with backoff, and the lease heartbeat while waiting."""

from __future__ import annotations

import _thread
import contextvars
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from story_fsm import Stage, StageTimeoutError, WorkflowConfig
from story_fsm._attempts import AttemptFailure, StageExhausted, StageStopped, StageSuccess
from story_fsm._executor import RunAbandoned, StageCall, StageExecutor
from story_fsm.runner import StageRunner


def identity(value: object) -> object:
    return value


def fails_once() -> Callable[[], str]:
    """A stage whose first call raises and whose later calls answer "ok"."""
    calls: list[int] = []

    def stage() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first fails")
        return "ok"

    return stage


def unexpected(failure: AttemptFailure) -> Callable[[], object]:
    raise AssertionError(f"no attempt should time out here: {failure}")


class TestStageRunner:
    def test_heartbeat_runs_while_a_slow_stage_runs(self) -> None:
        """on_wait runs periodically while the carrier's call is in flight, on neither of them."""
        beats: list[int] = []
        runner = StageRunner(WorkflowConfig(stage_timeout_seconds=5), heartbeat_seconds=0.05)
        waiter, carriers = threading.get_ident(), []

        def stage() -> str:
            carriers.append(threading.get_ident())
            time.sleep(0.3)
            return "ok"

        def start() -> StageSuccess[object]:
            return runner.run(Stage.REVIEW, stage, identity, on_retry=lambda f: None)

        result = runner.carry(
            start, on_expired=unexpected, on_wait=lambda: beats.append(threading.get_ident())
        )
        assert result.value == "ok" and result.attempt == 1
        assert len(beats) >= 3 and not set(beats) & {waiter, *carriers}

    def test_heartbeat_runs_between_stages_too(self) -> None:
        """The carrier busy outside a stage (a slow progress callback) keeps the lease alive."""
        beats: list[int] = []
        runner = StageRunner(WorkflowConfig(stage_timeout_seconds=5), heartbeat_seconds=0.02)
        runner.carry(
            lambda: time.sleep(0.2), on_expired=unexpected, on_wait=lambda: beats.append(1)
        )
        assert len(beats) >= 3

    def test_a_run_shorter_than_the_heartbeat_interval_sends_none(self) -> None:
        """The run's own writes renew its lease: a quick run costs no heartbeat write."""
        beats: list[int] = []
        runner = StageRunner(WorkflowConfig(stage_timeout_seconds=5), heartbeat_seconds=0.5)
        runner.carry(
            lambda: time.sleep(0.05), on_expired=unexpected, on_wait=lambda: beats.append(1)
        )
        assert beats == []

    def test_heartbeat_runs_during_backoff(self) -> None:
        """A long backoff between attempts keeps the lease alive too."""
        beats: list[int] = []
        flaky = fails_once()

        config = WorkflowConfig(retry_backoff_seconds=0.3, stage_timeout_seconds=5)
        runner = StageRunner(config, heartbeat_seconds=0.05)
        failures: list[AttemptFailure] = []
        result = runner.run(
            Stage.POLISH, flaky, identity, on_retry=failures.append, on_wait=lambda: beats.append(1)
        )
        assert result.attempt == 2 and len(failures) == 1
        assert failures[0].next_wait_seconds == pytest.approx(0.3)
        assert len(beats) >= 3

    def test_a_backoff_under_carry_beats_once_per_interval_not_twice(self) -> None:
        """Carrier (in its backoff) and waiter share one clock: one heartbeat per interval."""
        beats: list[float] = []
        flaky = fails_once()

        config = WorkflowConfig(retry_backoff_seconds=1.0, stage_timeout_seconds=5)
        runner = StageRunner(config, heartbeat_seconds=0.1)

        def start() -> StageSuccess[object]:
            return runner.run(
                Stage.POLISH, flaky, identity, on_retry=lambda f: None,
                on_wait=lambda: beats.append(time.monotonic()),
            )  # fmt: skip

        runner.carry(start, on_expired=unexpected, on_wait=lambda: beats.append(time.monotonic()))
        # About ten intervals in the 1 s wait; two senders each beating every interval would
        # give about twenty.
        assert 5 <= len(beats) <= 13, len(beats)

    def test_carry_without_heartbeats_waits_instead_of_spinning(self) -> None:
        """No on_wait: between stages the waiter sleeps (it used to loop without waiting)."""
        runner = StageRunner(WorkflowConfig(stage_timeout_seconds=5), heartbeat_seconds=0.01)
        started = time.process_time()
        runner.carry(lambda: time.sleep(0.5), on_expired=unexpected)
        assert time.process_time() - started < 0.25

    def test_on_start_comes_after_the_rate_limit_wait_and_not_when_it_is_given_up(self) -> None:
        """The announcement of a stage is made only when its call is about to be made."""
        stop = threading.Event()
        waits = {"left": 3}
        order: list[str] = []

        def throttle(stage: Stage) -> float:
            if waits["left"] > 0:
                waits["left"] -= 1
                order.append("wait")
                return 0.01
            return 0.0

        runner = StageRunner(
            WorkflowConfig(), heartbeat_seconds=0.01, throttle=throttle, should_stop=stop.is_set
        )
        runner.run(
            Stage.REVIEW, lambda: order.append("call") or "ok", identity,
            on_retry=lambda f: None, on_start=lambda: order.append("start"),
        )  # fmt: skip
        assert order == ["wait", "wait", "wait", "start", "call"]
        waits["left"], started = 100, []
        stop.set()
        with pytest.raises(StageStopped):
            runner.run(
                Stage.REVIEW, lambda: "never", identity,
                on_retry=lambda f: None, on_start=lambda: started.append(1),
            )  # fmt: skip
        assert started == []

    def test_a_throttled_attempt_heartbeats_and_gives_up_on_stop(self) -> None:
        """While the throttle says wait, on_wait runs; a stop then ends it before the call.

        Also on a retry (tenacity's loop): the stop is no failure to try again.
        """
        stop = threading.Event()
        budget = {"left": 1}
        beats: list[float] = []

        def throttle(stage: Stage) -> float:
            if budget["left"] > 0:
                budget["left"] -= 1
                return 0.0
            return 30.0

        def on_wait() -> None:
            beats.append(time.monotonic())
            if len(beats) == 3:
                stop.set()

        calls: list[int] = []

        def stage() -> object:
            calls.append(1)
            raise RuntimeError("first attempt fails")

        runner = StageRunner(
            WorkflowConfig(max_stage_retries=3, retry_backoff_seconds=0),
            heartbeat_seconds=0.01,
            throttle=throttle,
            should_stop=stop.is_set,
        )
        with pytest.raises(StageStopped):
            runner.run(Stage.REVIEW, stage, identity, on_retry=lambda f: None, on_wait=on_wait)
        assert calls == [1]  # the attempt that had its budget; none after the stop
        assert len(beats) >= 3

    @pytest.mark.parametrize("backoff", [0.0, 60.0], ids=["no-backoff", "long-backoff"])
    def test_a_stop_between_attempts_makes_no_further_call(self, backoff: float) -> None:
        """Asked to stop after a failed attempt: no retry, and no backoff sat out first.

        A draining worker told to stop must not wait out a minute's backoff (or a long
        Retry-After) and then pay for the call anyway.
        """
        stop = threading.Event()
        calls: list[int] = []
        retried: list[AttemptFailure] = []

        def stage() -> object:
            calls.append(1)
            stop.set()  # SIGTERM arrives while this attempt fails
            raise RuntimeError("fails")

        runner = StageRunner(
            WorkflowConfig(max_stage_retries=3, retry_backoff_seconds=backoff),
            should_stop=stop.is_set,
        )
        started = time.monotonic()
        with pytest.raises(StageStopped):
            runner.run(Stage.REVIEW, stage, identity, on_retry=retried.append)
        assert calls == [1]
        assert [f.attempt for f in retried] == [1]  # the failed attempt is still reported
        assert time.monotonic() - started < backoff / 2 + 5  # the wait was given up

    def test_a_stop_during_a_rate_limit_wait_is_seen_within_a_poll(self) -> None:
        """A minute's wait for the budget, heartbeats every 30 s: a stop ends it long before.

        A draining worker is not held for a third of its lease.
        """
        stop = threading.Event()
        runner = StageRunner(
            WorkflowConfig(),
            heartbeat_seconds=30,
            throttle=lambda stage: 60.0,
            should_stop=stop.is_set,
        )
        threading.Timer(0.2, stop.set).start()
        started = time.monotonic()
        with pytest.raises(StageStopped):
            runner.run(Stage.REVIEW, lambda: "never", identity, on_retry=lambda f: None)
        assert time.monotonic() - started < 15  # against 30 s before

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


class TestCarry:
    """StageRunner.carry: the run on a carrier thread, the timeouts enforced by the waiter."""

    def test_a_late_attempt_is_taken_over_and_the_run_goes_on_elsewhere(self) -> None:
        """Past its deadline an attempt fails with StageTimeoutError; its late answer is dropped."""
        config = WorkflowConfig(stage_timeout_seconds=0.2, retry_backoff_seconds=0)
        runner = StageRunner(config, heartbeat_seconds=5)
        release, returned = threading.Event(), threading.Event()
        normalized: list[object] = []
        reported: list[AttemptFailure] = []
        calls: list[str] = []

        def stage() -> str:
            calls.append("call")
            if len(calls) == 1:
                release.wait(5)
                returned.set()
                return "late"
            return "on time"

        def normalize(raw: object) -> object:
            normalized.append(raw)
            return raw

        def start() -> StageSuccess[object]:
            return runner.run(Stage.POLISH, stage, normalize, on_retry=reported.append)

        def go_on(failure: AttemptFailure) -> Callable[[], StageSuccess[object]]:
            return lambda: runner.run(
                Stage.POLISH, stage, normalize, on_retry=reported.append, after=failure
            )

        started = time.monotonic()
        result = runner.carry(start, on_expired=go_on)
        assert time.monotonic() - started < 2
        assert (result.value, result.attempt) == ("on time", 2)
        assert len(reported) == 1 and isinstance(reported[0].error, StageTimeoutError)
        assert (reported[0].stage, reported[0].attempt) == (Stage.POLISH, 1)
        assert reported[0].duration_seconds >= 0.2
        assert "polish took longer than 0.2s" in reported[0].error_text
        release.set()
        assert returned.wait(5)
        time.sleep(0.05)  # the abandoned carrier unwinds: it must not normalize or report
        assert normalized == ["on time"] and len(reported) == 1
        assert runner.in_flight is None

    def test_the_abandoned_carrier_stops_with_run_abandoned(self) -> None:
        """A call that returns after the waiter took its attempt over unwinds its carrier."""
        runner = StageRunner(WorkflowConfig(stage_timeout_seconds=0.1), heartbeat_seconds=5)
        release = threading.Event()
        outcome: list[BaseException] = []

        def start() -> object:
            try:
                return runner.run(
                    Stage.REVIEW, lambda: release.wait(5), identity, on_retry=lambda f: None
                )
            except BaseException as exc:
                outcome.append(exc)
                raise

        failures: list[AttemptFailure] = []

        def go_on(failure: AttemptFailure) -> Callable[[], str]:
            failures.append(failure)
            return lambda: "continued"

        assert runner.carry(start, on_expired=go_on) == "continued"
        release.set()
        deadline = time.monotonic() + 5
        while not outcome and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(outcome) == 1 and isinstance(outcome[0], RunAbandoned)
        assert [f.attempt for f in failures] == [1]

    def test_a_timeout_on_the_last_attempt_exhausts_the_stage(self) -> None:
        """After a timed-out last attempt, no call is made: StageExhausted with the timeout."""
        config = WorkflowConfig(stage_timeout_seconds=0.1, max_stage_retries=1)
        runner = StageRunner(config, heartbeat_seconds=5)
        release = threading.Event()
        calls: list[int] = []

        def stage() -> object:
            calls.append(1)
            return release.wait(5)

        def go_on(failure: AttemptFailure) -> Callable[[], object]:
            return lambda: runner.run(
                Stage.REVIEW, stage, identity, on_retry=lambda f: None, after=failure
            )

        with pytest.raises(StageExhausted) as caught:
            runner.carry(
                lambda: runner.run(Stage.REVIEW, stage, identity, on_retry=lambda f: None),
                on_expired=go_on,
            )
        release.set()
        assert calls == [1]
        assert isinstance(caught.value.failure.error, StageTimeoutError)

    def test_retries_after_a_timeout_keep_their_numbers_and_backoff(self) -> None:
        """Going on after attempt 2 of 4: attempts 3 and 4, waits 2b and 4b, then exhausted."""
        config = WorkflowConfig(max_stage_retries=4, retry_backoff_seconds=0.01)
        runner = StageRunner(config)
        reported: list[AttemptFailure] = []
        timed_out = AttemptFailure(Stage.REVIEW, 2, StageTimeoutError("late"), 0.5)

        def failing() -> str:
            raise RuntimeError("still failing")

        with pytest.raises(StageExhausted) as caught:
            runner.run(Stage.REVIEW, failing, identity, on_retry=reported.append, after=timed_out)
        assert [f.attempt for f in reported] == [2, 3]
        assert [f.next_wait_seconds for f in reported] == pytest.approx([0.02, 0.04])
        assert isinstance(reported[0].error, StageTimeoutError)
        assert caught.value.failure.attempt == 4

    def test_the_carrier_sees_the_callers_context_and_errors_come_back(self) -> None:
        """Context variables cross to the carrier; what it raises is raised to the caller."""
        request = contextvars.ContextVar("request", default="none")
        request.set("r-42")
        runner = StageRunner(WorkflowConfig())
        assert runner.carry(request.get, on_expired=unexpected) == "r-42"
        with pytest.raises(ZeroDivisionError):
            runner.carry(lambda: 1 / 0, on_expired=unexpected)
        assert runner.interrupted is False  # the run ended in error: nothing to stop

    def test_a_run_ending_as_the_wait_runs_out_returns_its_result(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The waiter's wait runs out, then the run ends before it looks: no TimeoutError.

        Each wait here runs out first and returns only once the call is over (the thread
        switch at the worst moment, made certain), so the waiter always meets a run that
        finished after its wait said "not yet".
        """
        real_wait = StageCall.wait
        go = threading.Event()

        def late_wait(self: StageCall[Any], timeout: float | None = None) -> bool:
            if real_wait(self, 0):
                return True
            go.set()  # the run ends now, after the wait has run out
            real_wait(self, None)
            return False

        def finishing(value: object) -> Callable[[], object]:
            def run() -> object:
                go.wait(5)
                go.clear()
                if isinstance(value, BaseException):
                    raise value
                return value

            return run

        monkeypatch.setattr(StageCall, "wait", late_wait)
        runner = StageRunner(WorkflowConfig())
        assert runner.carry(finishing("done"), on_expired=unexpected) == "done"
        with pytest.raises(TimeoutError, match="the run's own"):
            runner.carry(finishing(TimeoutError("the run's own")), on_expired=unexpected)

    def test_an_interrupted_waiter_marks_the_run_to_stop(self) -> None:
        """KeyboardInterrupt in the waiting thread sets ``interrupted`` and propagates."""
        runner = StageRunner(WorkflowConfig(stage_timeout_seconds=5), heartbeat_seconds=0.02)
        release = threading.Event()

        def interrupted_stage() -> bool:
            _thread.interrupt_main()  # as a Ctrl-C: KeyboardInterrupt in the waiting thread
            return release.wait(5)

        def start() -> object:
            return runner.run(Stage.REVIEW, interrupted_stage, identity, on_retry=lambda f: None)

        try:
            with pytest.raises(KeyboardInterrupt):
                runner.carry(start, on_expired=unexpected, on_wait=lambda: None)
        finally:
            release.set()
        assert runner.interrupted is True


class TestHeartbeatOffTheWaiter:
    """The heartbeat goes to a thread of the pool: a slow one never holds the waiter up."""

    def test_a_heartbeat_stuck_in_its_write_does_not_hold_a_timeout_up(self) -> None:
        """An attempt runs out of time while a heartbeat is stuck: it is taken over at once.

        The heartbeat used to be made by the waiting thread, which took the attempt over
        only once the heartbeat's write got through (after SQLite's busy timeout, 30 s).
        """
        config = WorkflowConfig(stage_timeout_seconds=0.3, retry_backoff_seconds=0)
        runner = StageRunner(config, heartbeat_seconds=0.05)
        beat_sent, beat_returned, unstick, late = (threading.Event() for _ in range(4))
        stuck_at_takeover: list[bool] = []

        def stuck_heartbeat() -> None:
            beat_sent.set()
            unstick.wait(10)  # the write waits for a lock another process holds
            beat_returned.set()

        def stage() -> str:
            if late.is_set():
                return "on time"
            late.wait(10)  # past the timeout: this answer is dropped
            return "late"

        def go_on(failure: AttemptFailure) -> Callable[[], StageSuccess[object]]:
            stuck_at_takeover.append(beat_sent.is_set() and not beat_returned.is_set())
            late.set()  # the abandoned call returns; the next attempt answers at once
            unstick.set()
            return lambda: runner.run(
                Stage.REVIEW, stage, identity, on_retry=lambda f: None, after=failure
            )

        def start() -> StageSuccess[object]:
            return runner.run(Stage.REVIEW, stage, identity, on_retry=lambda f: None)

        try:
            result = runner.carry(start, on_expired=go_on, on_wait=stuck_heartbeat)
        finally:
            late.set()
            unstick.set()
        assert stuck_at_takeover == [True]
        assert (result.value, result.attempt) == ("on time", 2)

    def test_at_most_one_heartbeat_is_in_flight(self) -> None:
        """Beats due while one is stuck (the waiter's, the backoff's) are skipped, not queued.

        Once it returns, the next ones go out again.
        """
        config = WorkflowConfig(stage_timeout_seconds=5, retry_backoff_seconds=0.3)
        runner = StageRunner(config, heartbeat_seconds=0.01)
        entered, unstick = threading.Event(), threading.Event()
        guard = threading.Lock()
        beats = {"sent": 0, "in_flight": 0, "most": 0}

        def heartbeat() -> None:
            with guard:
                beats["sent"] += 1
                beats["in_flight"] += 1
                beats["most"] = max(beats["most"], beats["in_flight"])
            entered.set()
            unstick.wait(10)
            with guard:
                beats["in_flight"] -= 1

        calls: list[int] = []

        def stage() -> int:
            calls.append(1)
            if len(calls) == 1:
                entered.wait(5)
                raise RuntimeError("fails: a backoff of thirty intervals follows")
            time.sleep(0.1)  # ten intervals more, the stuck heartbeat still out
            with guard:
                sent_while_stuck = beats["sent"]
            unstick.set()
            time.sleep(0.2)
            return sent_while_stuck

        def start() -> StageSuccess[object]:
            return runner.run(
                Stage.REVIEW, stage, identity, on_retry=lambda f: None, on_wait=heartbeat
            )

        try:
            result = runner.carry(start, on_expired=unexpected, on_wait=heartbeat)
        finally:
            unstick.set()
        assert result.value == 1 and result.attempt == 2
        assert beats["most"] == 1
        assert beats["sent"] >= 2  # they went on once the stuck one returned

    def test_a_ctrl_c_reaches_the_caller_while_a_heartbeat_is_stuck(self) -> None:
        """KeyboardInterrupt is raised to the caller at once, the stuck heartbeat left behind."""
        runner = StageRunner(WorkflowConfig(stage_timeout_seconds=30), heartbeat_seconds=0.02)
        beat_sent, beat_returned, release = (threading.Event() for _ in range(3))

        def stuck_heartbeat() -> None:
            beat_sent.set()
            release.wait(10)
            beat_returned.set()

        def interrupted_stage() -> bool:
            beat_sent.wait(5)
            _thread.interrupt_main()  # as a Ctrl-C: KeyboardInterrupt in the waiting thread
            return release.wait(10)

        def start() -> object:
            return runner.run(Stage.REVIEW, interrupted_stage, identity, on_retry=lambda f: None)

        try:
            with pytest.raises(KeyboardInterrupt):
                runner.carry(start, on_expired=unexpected, on_wait=stuck_heartbeat)
            returned_first = beat_returned.is_set()
        finally:
            release.set()
        assert beat_sent.is_set() and not returned_first
        assert runner.interrupted is True


class TestExecutor:
    def test_the_default_pool_has_no_cap(self) -> None:
        """Ten calls blocked at once each get a thread: a run never waits for another's."""
        executor = StageExecutor()
        gate = threading.Barrier(10, timeout=5)
        calls = [executor.submit(gate.wait) for _ in range(10)]
        assert sorted(call.result(5) for call in calls) == list(range(10))

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


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("backoff", "timeout", "asked", "expected"),
        [
            (0.0, 300, 7.0, 7.0),  # the server's wait, longer than the policy's
            (10.0, 300, 3.0, 10.0),  # the policy's, when longer
            (0.0, 5, 60.0, 5.0),  # capped at the stage timeout
            (400.0, 300, 500.0, 400.0),  # the cap never shortens the policy's own wait
            (1.0, 300, float("nan"), 1.0),
            (1.0, 300, None, 1.0),
            # Past a float's range: capped, not an OverflowError that ends the run unrecorded.
            pytest.param(0.0, 5, 10**400, 5.0, id="an-int-past-a-float"),
            (0.0, 5, float("inf"), 5.0),
        ],
    )
    def test_the_wait_honours_retry_after_within_bounds(
        self, backoff: float, timeout: float, asked: float | None, expected: float
    ) -> None:
        """After attempt 1 the policy waits *backoff*; an error may ask for longer."""
        runner = StageRunner(
            WorkflowConfig(retry_backoff_seconds=backoff, stage_timeout_seconds=timeout)
        )
        error = RuntimeError("429")
        error.retry_after_seconds = asked  # type: ignore[attr-defined]
        assert runner._backoff(1, error) == expected


class TestInterrupt:
    def test_ctrl_c_delivered_to_the_carrier_reaches_the_caller_promptly(
        self, sqlite_url: str, fast_config: WorkflowConfig
    ) -> None:
        """A SIGINT that lands on the carrier thread still interrupts the waiting caller.

        The kernel may deliver a process's Ctrl-C to any thread; Python then only marks it
        pending for the main thread, which used to notice it after its next heartbeat wait
        (20 s by default): seen once in CI as a run that ignored Ctrl-C.
        """
        import signal
        import threading
        import time

        from story_fsm import StoryWorkflowOrchestrator, WorkflowStateManager
        from tests.stages import ScriptedPolisher, ScriptedReviewer, review

        release, returned = threading.Event(), threading.Event()

        def review_then_wait() -> Any:
            try:
                signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this carrier
                release.wait(10)
                return review(99, "publish")
            finally:
                returned.set()

        # Python's own Ctrl-C handler (a worker test of this process may have replaced it).
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        store = WorkflowStateManager(sqlite_url)
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(review_then_wait), ScriptedPolisher(), store, fast_config
        )
        started = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                orchestrator.run_story_workflow("s-1", "T", "Script.", {})
            elapsed = time.monotonic() - started
        finally:
            release.set()
            # The interrupt abandoned the review: its carrier, once the call returns, drops
            # the answer and touches nothing more. Close the store after that.
            returned.wait(10)
            store.close()
            signal.signal(signal.SIGINT, previous)
        assert elapsed < 5  # at most a poll interval plus scheduling, not a heartbeat period
