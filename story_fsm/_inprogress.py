"""How many runs of one orchestrator are in progress, and a way to wait until none is.

A run can outlive its caller: an awaited run whose task was cancelled goes on, on the engine's
threads, to its next stage boundary (it commits the stage call in flight, then releases its
lease). An application that shuts down waits for those before it closes its store or exits,
or the call in flight is lost as in a crash. The orchestrator counts its runs here, from the
moment one is asked for until its thread is done with the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from story_fsm.errors import InputValidationError

__all__ = ["RunsInProgress", "validate_timeout"]


def validate_timeout(timeout: object) -> float | None:
    """Return *timeout* if it is None (no limit) or a number of seconds >= 0, else raise.

    Raises:
        InputValidationError: Not None and not a finite number in ``[0, threading.TIMEOUT_MAX]``.
    """
    if timeout is None:
        return None
    if (
        isinstance(timeout, int | float)
        and not isinstance(timeout, bool)
        and 0 <= timeout <= threading.TIMEOUT_MAX
    ):
        return float(timeout)
    raise InputValidationError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")


def _wake(future: asyncio.Future[None]) -> None:
    """Settle an async waiter's future, on its loop's thread (unless it gave up already)."""
    if not future.done():
        future.set_result(None)


class RunsInProgress:
    """A count of runs in progress that threads and event loops can wait to see reach zero."""

    __slots__ = ("_count", "_idle", "_waiters")

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition(threading.Lock())
        #: The futures of coroutines waiting for none, each with the loop it belongs to.
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def begin(self) -> None:
        """Count one more run in progress."""
        with self._idle:
            self._count += 1

    def end(self) -> None:
        """Count a run as over; the last one wakes every waiter."""
        with self._idle:
            self._count -= 1
            if self._count:
                return
            self._idle.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            # RuntimeError: that loop is closed, and nobody awaits on it any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)

    def wait(self, timeout: float | None) -> bool:
        """Block until no run is in progress; False if *timeout* seconds passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)

    async def wait_async(self, timeout: float | None) -> bool:
        """Await the moment no run is in progress; False if *timeout* seconds passed first."""
        loop = asyncio.get_running_loop()
        with self._idle:
            if self._count == 0:
                return True
            future: asyncio.Future[None] = loop.create_future()
            entry = (loop, future)
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            with self._idle:
                if entry in self._waiters:  # timed out or cancelled: no wake-up owed to it
                    self._waiters.remove(entry)
        return True
