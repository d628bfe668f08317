"""A small pool of daemon threads that stage calls run on, so a timeout can abandon one.

``concurrent.futures.ThreadPoolExecutor`` joins its threads at interpreter exit, so one stage
call that never returns (a hung HTTP read) would keep a finished CLI from exiting. Here the
threads are daemons: a timed-out call's thread is left behind, its late answer discarded, and
the process can still exit. Threads are reused, so a stage call costs no thread start.
"""

from __future__ import annotations

import _thread
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["CancelledCall", "StageCall", "StageExecutor", "default_executor"]

T = TypeVar("T")


class StageCall(Generic[T]):
    """One call handed to a stage thread: the waiting side's view of it.

    Lighter than ``concurrent.futures.Future`` (no condition variable, no callbacks): the
    waiter blocks on one lock that the stage thread releases when the call is over, which
    halves the cost of the hand-off that every stage call pays.
    """

    __slots__ = ("_done", "_error", "_fn", "_ticket", "_value")

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._value: T | None = None
        self._error: BaseException | None = None
        # Held until the call is over; ``result`` waits on it.
        self._done = _thread.allocate_lock()
        self._done.acquire()
        # Whoever pops the ticket first decides: the stage thread runs the call, or a
        # cancel drops it (list.pop is atomic, so no lock is needed for the race).
        self._ticket = [True]

    def _run(self) -> None:
        try:
            self._ticket.pop()
        except IndexError:  # cancelled before a thread got to it
            return
        try:
            self._value = self._fn()
        except BaseException as exc:  # delivered to the waiting thread by result()
            self._error = exc
        finally:
            self._done.release()

    def cancel(self) -> bool:
        """Drop the call if no thread has started it yet; True if dropped."""
        try:
            self._ticket.pop()
        except IndexError:
            return False
        self._error = CancelledCall()
        self._done.release()
        return True

    def done(self) -> bool:
        """True once the call returned, raised, or was cancelled."""
        return not self._done.locked()

    def result(self, timeout: float | None = None) -> T:
        """Wait up to *timeout* seconds (forever if None); return the value or raise its error.

        Raises:
            TimeoutError: The call is still running after *timeout*.
        """
        if not self._done.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            raise TimeoutError
        self._done.release()  # stays "done" for later calls of done() and result()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class CancelledCall(Exception):
    """The call was cancelled before it started."""


class StageExecutor:
    """Runs callables on up to *max_workers* reusable daemon threads."""

    def __init__(self, max_workers: int = 64) -> None:
        self._max_workers = max_workers
        self._jobs: queue.SimpleQueue[StageCall[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[[], T]) -> StageCall[T]:
        """Schedule *fn* and return the call, to wait on."""
        call = StageCall(fn)
        with self._lock:
            self._jobs.put(call)
            if self._idle == 0 and self._threads < self._max_workers:
                self._threads += 1
                threading.Thread(target=self._work, name="story-fsm-stage", daemon=True).start()
            else:
                self._idle -= 1
        return call

    def _work(self) -> None:
        while True:
            self._jobs.get()._run()
            with self._lock:
                self._idle += 1


_default: StageExecutor | None = None
_default_lock = threading.Lock()


def default_executor() -> StageExecutor:
    """Return the process-wide executor (created on first use)."""
    global _default  # noqa: PLW0603 - one pool per process is the point
    with _default_lock:
        if _default is None:
            _default = StageExecutor()
        return _default
