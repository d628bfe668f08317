"""Per-stage request caps (LLM APIs limit requests per minute), on the `limits` library."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from limits import RateLimitItemPerMinute, storage, strategies

from story_fsm.errors import InputValidationError
from story_fsm.states import Stage

__all__ = ["StageRateLimiter"]


class StageRateLimiter:
    """Blocks a stage call until its per-minute budget allows it (a moving window).

    The budget is per process: N worker processes may together make N × the limit, so size
    the limit for one process.

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
