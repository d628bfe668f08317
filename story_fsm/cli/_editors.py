"""Building the reviewer/polisher pair that ``--editor`` names."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from story_fsm.errors import InputValidationError
from story_fsm.stages import StoryPolisher, StoryReviewer

__all__ = ["DEFAULT_MODEL", "MODEL_ENV", "Editor", "Stages", "editor_stages"]

#: The environment variable naming the model when ``--model`` is not given.
MODEL_ENV = "STORY_FSM_MODEL"

#: The model used when neither ``--model`` nor ``STORY_FSM_MODEL`` is set.
DEFAULT_MODEL = "gpt-4o-mini"


class Editor(StrEnum):
    """The stage pairs the command line can run."""

    OFFLINE = "offline"
    OPENAI = "openai"


@dataclass(frozen=True, slots=True)
class Stages:
    """A reviewer and a polisher that work together."""

    reviewer: StoryReviewer
    polisher: StoryPolisher


def _check_openai_settings() -> None:
    # Without either, the SDK would fail every attempt of the first review, with backoff.
    if not os.environ.get("OPENAI_API_KEY") and not os.environ.get("OPENAI_BASE_URL"):
        raise InputValidationError(
            "--editor openai needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local server "
            "such as Ollama or vLLM); use --editor offline to run without a model"
        )


@contextmanager
def editor_stages(editor: Editor, *, threshold: float, model: str) -> Iterator[Stages]:
    """Yield the stages for *editor*, closing their connections afterwards.

    Args:
        editor: Which pair to build.
        threshold: The offline reviewer's publish threshold (the workflow's quality threshold).
        model: The chat model for the OpenAI pair (ignored offline).

    Raises:
        InputValidationError: The OpenAI pair has neither an API key nor a base URL.
    """
    if editor is Editor.OFFLINE:
        from story_fsm.editors.offline import OfflinePolisher, OfflineReviewer

        yield Stages(OfflineReviewer(publish_threshold=threshold), OfflinePolisher())
        return
    _check_openai_settings()
    from story_fsm.editors.openai_compat import OpenAIPolisher, OpenAIReviewer

    # No timeout of their own: each request waits no longer than its attempt has left of the
    # workflow's stage_timeout_seconds (stored per workflow, so a worker's stories may differ),
    # and an attempt the engine abandoned does not go on, and bill, for the SDK's ten minutes.
    with (
        OpenAIReviewer(model=model) as reviewer,
        OpenAIPolisher(model=model) as polisher,
    ):
        yield Stages(reviewer, polisher)
