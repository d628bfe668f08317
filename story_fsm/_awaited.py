"""Awaiting a run from asyncio: the blocking run on a pool thread, and a cancel that stops it.

A run needs a thread that waits for it: the thread renews the lease and enforces the stage
timeouts while a carrier calls the stages (``runner.StageRunner.carry``). An awaited run puts
that waiting on a thread of story_fsm's own pool (``_executor.default_executor``), and the
event loop awaits a future which that thread settles.

Not ``asyncio.to_thread``: the loop's default executor is capped (``min(32, cpus + 4)``
threads) and shared with the host, and a run holds its thread for minutes, so a few concurrent
runs would queue every other ``to_thread`` call of the application behind them; and its
threads are joined at shutdown (``asyncio.run`` waits for them), so a cancelled run's stage in
flight would hold up the exit of the process. The engine's pool is uncapped and its threads
are daemons, like the carriers themselves.

A thread cannot be interrupted, and a paid call in flight should not be: a cancel of the
awaiting task sets the run's stop flag (the one a draining worker sets) and re-raises at once.
The run starts no new stage, commits the call in flight, and releases its lease at the next
stage boundary (``_run.Drained``, which the orchestrator handles). What the run ends with
then has nobody to go to: an error is logged (``workflow_error_after_cancel``).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from functools import partial
from typing import TypeVar, cast

from story_fsm._executor import default_executor
from story_fsm._inprogress import RunsInProgress
from story_fsm._log import get_logger
from story_fsm._run import Drained
from story_fsm._text import error_text
from story_fsm.errors import StageFailedError

__all__ = ["await_run"]

T = TypeVar("T")


def _unheard(story_id: str, error: BaseException | None) -> None:
    """Log what a run whose awaiting task was cancelled ended with, when nobody else did."""
    # A result (COMPLETE), a failed stage and a stop are logged by the orchestrator already.
    if error is not None and not isinstance(error, Drained | StageFailedError):
        get_logger(story_id=story_id).error(
            "workflow_error_after_cancel", error=error_text(error), exc_info=error
        )


def _settle(
    done: asyncio.Future[T], story_id: str, value: T | None, error: BaseException | None
) -> None:
    """Hand the run's outcome to the awaiting task (on the loop's thread)."""
    if done.done():  # the task was cancelled after the run ended, before this ran
        _unheard(story_id, error)
    elif error is not None:
        done.set_exception(error)
    else:
        done.set_result(cast(T, value))


async def await_run(
    work: Callable[[Callable[[], bool]], T], story_id: str, runs: RunsInProgress | None = None
) -> T:
    """Run ``work(should_stop)`` on a thread of the engine's pool and await what it returns.

    With *runs*, the run is counted there from this call until *work* is over on its thread
    (a cancel of the awaiting task does not end it: the run drains after).

    Raises:
        asyncio.CancelledError: The awaiting task was cancelled: *should_stop* turned true,
            and the run goes on only to its next stage boundary, without a listener.
        BaseException: Whatever *work* raised.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    stop = threading.Event()
    counted = RunsInProgress() if runs is None else runs

    def wait() -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = work(stop.is_set)
        except BaseException as exc:  # the awaiting task raises it, as the sync call would
            error = exc
        finally:
            counted.end()
        if stop.is_set():
            _unheard(story_id, error)
            return
        try:
            loop.call_soon_threadsafe(_settle, done, story_id, value, error)
        except RuntimeError:  # the loop was closed without awaiting the run to its end
            _unheard(story_id, error)

    counted.begin()  # now, not on the thread: a wait for the runs must see it at once
    try:
        # The run sees the awaiting task's context variables, as a sync run sees its caller's.
        default_executor().submit(partial(contextvars.copy_context().run, wait))
    except BaseException:  # no thread to run it (the process is out of threads)
        counted.end()
        raise
    try:
        return await done
    except asyncio.CancelledError:
        stop.set()
        if done.done() and not done.cancelled():  # the run ended just before the cancel landed
            _unheard(story_id, done.exception())
        get_logger(story_id=story_id).info("workflow_cancelled")
        raise
