"""Per-stage request caps (LLM APIs limit requests per minute), on the `limits` library."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Mapping

from limits import RateLimitItemPerMinute, storage, strategies

from story_fsm.errors import InputValidationError
from story_fsm.states import Stage

__all__ = ["StageRateLimiter"]


class StageRateLimiter:
    """Blocks a stage call until its per-minute budget allows it (a moving window).

    The budget is per process: N worker processes may together make N × the limit, so size
    the limit for one process. A process forked from one that holds a limiter starts its
    copy with new locks and a budget of its own (the calls counted before the fork are
    the parent's).

    Args:
        per_minute: Requests per minute for each stage that has a cap, e.g.
            ``{"review": 60}``; stages not named are not limited.

    Example:
        >>> limiter = StageRateLimiter({"review": 120})
        >>> limiter(Stage.REVIEW)  # returns at once while under the cap
    """

    def __init__(self, per_minute: Mapping[Stage | str, int]) -> None:
        if not isinstance(per_minute, Mapping):
            raise InputValidationError(
                "rate limits must be a mapping of stage to calls per minute, e.g. "
                f'{{"review": 60}}; got {type(per_minute).__name__}'
            )
        self._items = {}
        for stage, limit in per_minute.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise InputValidationError(f"rate limit for {stage} must be an integer >= 1")
            try:
                named = Stage(stage)
            except ValueError:
                stages = ", ".join(s.value for s in Stage)
                raise InputValidationError(
                    f"rate limit for unknown stage {stage!r}; use one of {stages}"
                ) from None
            self._items[named] = RateLimitItemPerMinute(limit)
        self._start_afresh()
        _limiters.add(self)

    def _start_afresh(self) -> None:
        """A new window and new locks (at first, and in a forked child)."""
        # In a child only the forking thread exists: a lock another thread held at the fork,
        # ours or the in-memory storage's own, would never be released there.
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        self._lock = threading.Lock()

    def try_acquire(self, stage: Stage) -> float:
        """Count one call of *stage* and return 0.0 if the budget allows it now.

        Otherwise count nothing and return the seconds until it may (at least 0.01), for a
        caller that waits its own way: the engine keeps the workflow's lease alive and
        listens for a stop while it waits.
        """
        item = self._items.get(stage)
        if item is None:
            return 0.0
        with self._lock:
            if self._limiter.hit(item, stage.value):
                return 0.0
            reset_at = self._limiter.get_window_stats(item, stage.value).reset_time
        return max(reset_at - time.time(), 0.01)

    def __call__(self, stage: Stage) -> None:
        """Wait until *stage* may make one more call, then count it."""
        while (wait := self.try_acquire(stage)) > 0:
            time.sleep(min(wait, 1.0))


#: Every limiter of this process, for :func:`_after_fork` (weakly: a limiter dropped goes away).
_limiters: weakref.WeakSet[StageRateLimiter] = weakref.WeakSet()


def _after_fork() -> None:
    for limiter in list(_limiters):
        limiter._start_afresh()


os.register_at_fork(after_in_child=_after_fork)
