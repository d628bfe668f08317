"""Progress events: their names, and delivery that can never break a workflow."""

from __future__ import annotations

import contextlib
from enum import StrEnum
from typing import Any, Protocol

from story_fsm._log import get_logger

__all__ = ["Event", "ProgressCallback"]


class ProgressCallback(Protocol):
    """What ``progress_callback=`` takes: ``callback(event, data)``, both positional.

    *event* is an :class:`Event` member (a ``str``); *data* always carries ``story_id``, and
    the keys the README's event table lists. Any function or lambda of two arguments fits.
    """

    def __call__(self, event: str, data: dict[str, Any], /) -> None:
        """Receive one event."""


class Event(StrEnum):
    """The names passed as the first argument of a progress callback.

    The callback gets the member itself; members are strings, so a callback may as well
    compare with plain ``"review_complete"`` (or serialize it as that string).
    """

    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_RESUMED = "workflow_resumed"
    ITERATION_STARTED = "iteration_started"
    STAGE_STARTED = "stage_started"
    STAGE_RETRY = "stage_retry"
    REVIEW_COMPLETE = "review_complete"
    POLISH_COMPLETE = "polish_complete"
    WORKFLOW_COMPLETE = "workflow_complete"
    WORKFLOW_FAILED = "workflow_failed"


class Emitter:
    """Delivers events to one workflow's callback; a callback that raises is logged, not fatal."""

    def __init__(self, story_id: str, callback: ProgressCallback | None) -> None:
        self._story_id = story_id
        self._callback = callback
        #: False when nobody listens: a caller may skip building an event's data then.
        self.wanted = callback is not None

    def __call__(self, event: Event, **data: Any) -> None:
        """Send *event* with *data* (plus ``story_id``) to the callback, if any."""
        if self._callback is None:
            return
        payload = {"story_id": self._story_id, **data}
        try:
            self._callback(event, payload)  # the member: equal to its plain string too
        except Exception:  # a progress display must never fail a paid workflow
            # Nor may the note of its failure: a log sink can fail the same way (a display
            # and a log both on a stderr that a full disk refuses).
            with contextlib.suppress(Exception):
                get_logger(story_id=self._story_id).exception(
                    "progress_callback_failed", progress_event=event.value
                )
