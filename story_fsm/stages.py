"""The reviewer and polisher seams: what the engine asks of a stage, and how long it has.

:class:`StoryReviewer` and :class:`StoryPolisher` are the protocols a pipeline's stages
implement; :func:`stage_time_left` tells a stage in a call how long the engine will still wait.
What a stage answers is read by :mod:`story_fsm._normalize`.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["StoryPolisher", "StoryReviewer", "attempt_deadline", "stage_time_left"]


#: The ``time.monotonic()`` deadline of the stage attempt this thread is running, set by the
#: runner around each call (each carrier runs in a context of its own, so an abandoned
#: attempt keeps the deadline it had).
attempt_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "story_fsm_attempt_deadline", default=None
)


def stage_time_left() -> float | None:
    """Return the seconds left before the engine gives up the stage call running now.

    The engine abandons an attempt after ``stage_timeout_seconds`` and discards its late
    answer; a stage that makes a network call can bound the call with this, so the request
    does not go on (and bill) after the engine stopped waiting for it. The OpenAI stages do.
    0.0 once the time is up; None outside a stage call the engine made (a stage called
    directly, from a test or a script).
    """
    deadline = attempt_deadline.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


@runtime_checkable
class StoryReviewer(Protocol):
    """Grades a story 0–100 and decides publish or polish (the pipeline's Stage 21).

    The engine calls it with keywords only. ``story_version`` is ``"v1"``, ``"v2"``, … per
    iteration. When ``WorkflowConfig.review_model`` is set it is passed as ``model=``; when it
    is None no ``model`` keyword is passed, so reviewers without one keep working.

    The answer is a mapping ``{"decision": "publish"|"polish", "quality_score": 0..100, ...}``
    (the score may also sit at ``overall_assessment.quality_score``) or an object with
    ``.decision``, ``.overall_assessment.quality_score`` and ``.to_dict()``. A cost, if any,
    is read from ``_meta.cost_estimate`` (or a top-level ``cost``).

    The method may be ``async def``: its coroutine runs on the process's one loop for async
    stages, cancelled at the stage timeout (README, "Embedding it").
    """

    def review_story(
        self,
        *,
        title: str,
        script: str,
        audience_context: Mapping[str, Any],
        original_idea: str,
        story_id: str,
        story_version: str,
        local_review_summary: Any,
    ) -> Any:
        """Return the review of one version of the story (see the class docstring)."""
        ...


@runtime_checkable
class StoryPolisher(Protocol):
    """Rewrites title and script from an expert review (the pipeline's Stage 22).

    ``expert_review_data`` is the review as a dict, exactly as the reviewer returned it. The
    answer is a mapping or an object with ``polished_title``, ``polished_script``,
    ``change_log`` (and ``.to_dict()``). The method may be ``async def``, as the reviewer's.
    """

    def polish_story(
        self,
        *,
        story_id: str,
        current_title: str,
        current_script: str,
        expert_review_data: Mapping[str, Any],
        iteration_number: int,
        audience_context: Mapping[str, Any],
        original_idea: str,
    ) -> Any:
        """Return the polished title and script (see the class docstring)."""
        ...
