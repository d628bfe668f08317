"""Input checks that run before anything is written (pure functions, no I/O)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

from story_fsm._json import as_stored, deeper_than
from story_fsm._records import NewWorkflow
from story_fsm._text import unstorable_reason
from story_fsm.config import WorkflowConfig
from story_fsm.errors import InputValidationError

__all__ = [
    "MAX_LEASE_SECONDS",
    "validate_name",
    "validate_new_workflow",
    "validate_seconds",
    "validate_story_id",
    "validate_text",
]

MAX_STORY_ID_LENGTH = 200
#: The deepest nesting of dicts and lists accepted in ``audience_context`` and
#: ``local_review_summary`` (the context itself is the first level). ``json.loads`` reads
#: nesting on the call stack: far deeper, an input written from a shallow stack could not be
#: read back from a deeper one (a worker's thread, a web request's handler).
MAX_INPUT_DEPTH = 100
#: The longest lease (and poll interval) accepted: a week. Longer is a mistake, and beyond a
#: point the expiry it adds to the clock is not a date at all.
MAX_LEASE_SECONDS = 7 * 24 * 3600.0


def validate_seconds(name: str, value: object, maximum: float = MAX_LEASE_SECONDS) -> float:
    """Return *value* if it is a number of seconds > 0 and <= *maximum*, else raise.

    Raises:
        InputValidationError: Not a number, not finite, <= 0, or above *maximum*.
    """
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= maximum:
        return float(value)  # NaN fails the comparison, like infinity
    raise InputValidationError(
        f"{name} must be a number of seconds > 0 and at most {maximum:g}, got {value!r}"
    )


def validate_story_id(story_id: object) -> str:
    """Return *story_id* if it is a usable id, else raise :class:`InputValidationError`.

    A usable id is a non-empty string of at most 200 characters with no control characters
    (and no unpaired surrogates, which are not text any database can store).
    """
    return validate_name("story_id", story_id)


def validate_name(name: str, value: object) -> str:
    """Return *value* if it is a usable id (as :func:`validate_story_id` says), else raise.

    Also the rule for a lease holder's name (``owner``, ``worker_id``), stored beside the id.

    Raises:
        InputValidationError: The message names the field *name*.
    """
    if not isinstance(value, str):
        raise InputValidationError(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InputValidationError(f"{name} must not be empty")
    if len(value) > MAX_STORY_ID_LENGTH:
        raise InputValidationError(
            f"{name} is {len(value)} characters; at most {MAX_STORY_ID_LENGTH} are allowed"
        )
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise InputValidationError(
            f"{name} must not contain control characters or unpaired surrogates: {value!r}"
        )
    return value


def validate_text(name: str, value: object, *, allow_empty: bool = False) -> str:
    """Return *value* if it is a string every backend can store (non-empty unless allowed).

    Raises:
        InputValidationError: Not a string, empty (or blank), or holding a NUL character or an
            unpaired surrogate; the message names the field *name*.
    """
    if not isinstance(value, str):
        raise InputValidationError(f"{name} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise InputValidationError(f"{name} must not be empty")
    reason = unstorable_reason(value)
    if reason is not None:
        raise InputValidationError(f"{name} {reason}; no database can store it as text")
    return value


def _json(name: str, value: object) -> Any:
    too_deep = f"{name} is nested too deeply (more than {MAX_INPUT_DEPTH} levels)"
    try:
        # NaN is refused: it is not JSON, and PostgreSQL's json would refuse it later.
        stored = as_stored(value, unique_keys=True)
    except RecursionError as exc:
        raise InputValidationError(f"{too_deep}, or refers to itself") from exc
    except (TypeError, ValueError) as exc:
        raise InputValidationError(f"{name} must be JSON-serializable: {exc}") from exc
    if deeper_than(stored, MAX_INPUT_DEPTH):
        raise InputValidationError(too_deep)
    return stored


def validate_new_workflow(
    story_id: object,
    title: object,
    script: object,
    audience_context: object,
    original_idea: object,
    local_review_summary: object,
    config: WorkflowConfig,
) -> NewWorkflow:
    """Check a submission and return it as a :class:`NewWorkflow`.

    Raises:
        InputValidationError: Naming the first field that is wrong.
    """
    if not isinstance(audience_context, Mapping):
        raise InputValidationError(
            f"audience_context must be a mapping, got {type(audience_context).__name__}"
        )
    return NewWorkflow(
        story_id=validate_story_id(story_id),
        title=validate_text("title", title),
        script=validate_text("script", script),
        audience_context=_json("audience_context", dict(audience_context)),
        original_idea=validate_text("original_idea", original_idea, allow_empty=True),
        local_review_summary=_json("local_review_summary", local_review_summary),
        config=config.to_dict(),
    )
