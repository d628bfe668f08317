"""A pool of daemon threads that runs are carried on, so a timeout can abandon one.

A run's stages are called on the thread that carries it (``runner.StageRunner.carry``), so a
stage call that outlives its timeout leaves that thread behind and the run goes on on another.
``concurrent.futures.ThreadPoolExecutor`` joins its threads at interpreter exit, so one call
that never returns (a hung HTTP read) would keep a finished CLI from exiting. Here the threads
are daemons: an abandoned thread's late answer is discarded and the process can still exit.
Threads are reused, so a run costs no thread start. A child forked from the process (as
``multiprocessing`` does on Linux) starts with its pools empty: their threads stay behind.
"""

from __future__ import annotations

import _thread
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["RunAbandoned", "StageCall", "StageExecutor", "default_executor"]

T = TypeVar("T")


class StageCall(Generic[T]):
    """One call handed to a pool thread: the waiting side's view of it.

    Lighter than ``concurrent.futures.Future`` (no condition variable, no callbacks): the
    waiter blocks on one lock that the pool thread releases when the call is over.
    """

    __slots__ = ("_done", "_error", "_fn", "_value")

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._value: T | None = None
        self._error: BaseException | None = None
        # Held until the call is over; ``result`` waits on it.
        self._done = _thread.allocate_lock()
        self._done.acquire()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # delivered to the waiting thread by result()
            self._error = exc
        finally:
            self._done.release()

    def done(self) -> bool:
        """True once the call returned or raised."""
        return not self._done.locked()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to *timeout* seconds (forever if None); True once the call is over.

        A separate answer from :meth:`result`'s, so that a call which itself raised
        ``TimeoutError`` is never confused with a wait that ran out.
        """
        if not self._done.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            return False
        self._done.release()  # stays "done" for later calls of done(), wait() and result()
        return True

    def result(self, timeout: float | None = None) -> T:
        """Wait up to *timeout* seconds (forever if None); return the value or raise its error.

        Raises:
            TimeoutError: The call is still running after *timeout*.
        """
        if not self.wait(timeout):
            raise TimeoutError
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class RunAbandoned(BaseException):
    """This thread's stage attempt outlived its timeout, and the run went on on another thread.

    A ``BaseException`` so that no ``except Exception`` on the way out (the runner's,
    tenacity's, a callback's) takes it for the stage's failure: it unwinds the abandoned
    carrier, which leaves the run's state to the thread that carries it now.
    """


class StageExecutor:
    """Runs callables on reusable daemon threads, at most *max_workers* (None: no cap).

    The default pool has no cap: each run in progress holds one thread (its caller waits on
    another), and one more while its heartbeat is being written, so the count follows the
    callers' own concurrency, plus any thread left in a call that never returned. A cap makes
    runs past it wait for a thread (and heartbeats: one queued behind a run's carrier is sent
    late); a run started from a callback of another needs one more thread while the other
    waits for it.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self._max_workers = max_workers
        self._start_afresh()
        _pools.add(self)

    def _start_afresh(self) -> None:
        # Also run in a forked child, whose copy of the pool counts threads that were not
        # forked with it: its first run would wait for an idle thread that is not there.
        self._jobs: queue.SimpleQueue[StageCall[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[[], T]) -> StageCall[T]:
        """Schedule *fn* and return the call, to wait on."""
        call = StageCall(fn)
        with self._lock:
            self._jobs.put(call)
            if self._idle == 0 and (self._max_workers is None or self._threads < self._max_workers):
                self._threads += 1
                threading.Thread(target=self._work, name="story-fsm-stage", daemon=True).start()
            else:
                self._idle -= 1
        return call

    def busy(self) -> int:
        """How many of the pool's threads are in a call now (an abandoned one included)."""
        with self._lock:
            return self._threads - self._idle

    def _work(self) -> None:
        while True:
            self._jobs.get()._run()
            with self._lock:
                self._idle += 1


#: Every pool of this process, for :func:`_after_fork` (weakly: a pool dropped goes away).
_pools: weakref.WeakSet[StageExecutor] = weakref.WeakSet()


def _after_fork() -> None:
    # In the child, only the forking thread exists: each pool starts with no thread (and
    # new locks, one of which another thread may have held at the fork).
    global _default_lock  # noqa: PLW0603 - reset once, in the child, before any other use
    _default_lock = threading.Lock()
    for pool in list(_pools):
        pool._start_afresh()


os.register_at_fork(after_in_child=_after_fork)

_default: StageExecutor | None = None
_default_lock = threading.Lock()


def default_executor() -> StageExecutor:
    """Return the process-wide executor (created on first use)."""
    global _default  # noqa: PLW0603 - one pool per process is the point
    with _default_lock:
        if _default is None:
            _default = StageExecutor()
        return _default
