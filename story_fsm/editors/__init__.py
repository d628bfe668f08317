"""Ready-made stages: an offline editor (the embedded default) and an OpenAI-compatible one.

The OpenAI classes are imported on first use, so the offline path never pays for the SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from story_fsm.editors.offline import OfflinePolisher, OfflineReviewer

if TYPE_CHECKING:
    from story_fsm.editors.openai_compat import OpenAIPolisher, OpenAIReviewer

__all__ = ["OfflinePolisher", "OfflineReviewer", "OpenAIPolisher", "OpenAIReviewer"]


def __getattr__(name: str) -> Any:
    if name in ("OpenAIReviewer", "OpenAIPolisher"):
        from story_fsm.editors import openai_compat

        return getattr(openai_compat, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
