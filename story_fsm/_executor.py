"""A small pool of daemon threads that stage calls run on, so a timeout can abandon one.

``concurrent.futures.ThreadPoolExecutor`` joins its threads at interpreter exit, so one stage
call that never returns (a hung HTTP read) would keep a finished CLI from exiting. Here the
threads are daemons: a timed-out call's thread is left behind, its late answer discarded, and
the process can still exit. Threads are reused, so a stage call costs no thread start.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["StageExecutor", "default_executor"]

T = TypeVar("T")

_Job = tuple["Future[Any]", Callable[[], Any]]


class StageExecutor:
    """Runs callables on up to *max_workers* reusable daemon threads."""

    def __init__(self, max_workers: int = 64) -> None:
        self._max_workers = max_workers
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Schedule *fn* and return its future."""
        future: Future[T] = Future()
        with self._lock:
            self._jobs.put((future, fn))
            if self._idle == 0 and self._threads < self._max_workers:
                self._threads += 1
                threading.Thread(target=self._work, name="story-fsm-stage", daemon=True).start()
            else:
                self._idle -= 1
        return future

    def _work(self) -> None:
        while True:
            future, fn = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:  # delivered to the waiting thread via the future
                    future.set_exception(exc)
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
