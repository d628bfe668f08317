"""Strict checks of what an LLM answered for a review or a polish.

A model asked for JSON can still answer prose, cut its JSON off at the token limit, rename a
field or grade on the wrong scale. Each of those must become an
:class:`~story_fsm.errors.InvalidStageOutputError` (the engine retries it) with a message that
says which story, which model and what was wrong, instead of a ``KeyError`` three frames deep
or, worse, a bad score recorded as if it were good.

Every function takes ``where`` (e.g. ``"review of story 's1' by gpt-4o-mini"``) to name the call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from story_fsm._text import unstorable_reason
from story_fsm.errors import InvalidStageOutputError
from story_fsm.states import ReviewDecision

__all__ = ["parse_json_object", "validate_polish", "validate_review"]

_SNIPPET = 200
_REVIEW_FIELDS = ("decision", "quality_score", "criteria", "feedback")
_POLISH_FIELDS = ("polished_title", "polished_script", "change_log")


def _bad(where: str, problem: str) -> InvalidStageOutputError:
    return InvalidStageOutputError(f"{where}: {problem}")


#: A reply that is one Markdown code fence, untagged or tagged json, and nothing else: servers
#: that ignore ``response_format`` (or models that format anyway) wrap the object so.
_FENCED = re.compile(r"\s*```(?:json)?(?=\s)(.*)```\s*", re.DOTALL | re.IGNORECASE)


def _unfenced(content: str) -> str:
    # Greedy up to the last fence: a ``` inside one of the object's strings stays in it.
    match = _FENCED.fullmatch(content)
    return match.group(1) if match else content


def _reject_constant(name: str) -> float:
    # json accepts NaN and Infinity by default; no score or count may be either.
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(content: str, where: str) -> dict[str, Any]:
    """Decode *content* as one JSON object, unwrapped first if it is one fenced code block.

    Raises:
        InvalidStageOutputError: Not JSON, or JSON that is not an object.

    """
    try:
        data = json.loads(_unfenced(content), parse_constant=_reject_constant)
    except ValueError as exc:  # also an int past Python's digit limit
        raise _bad(where, f"the answer is not valid JSON ({exc}): {content[:_SNIPPET]!r}") from exc
    except RecursionError as exc:  # "[[[[..." nested deeper than the parser recurses
        raise _bad(
            where, f"the answer's JSON is nested too deeply: {content[:_SNIPPET]!r}"
        ) from exc
    if not isinstance(data, dict):
        raise _bad(where, f"the answer must be a JSON object, got {type(data).__name__}")
    return data


def _require(data: Mapping[str, Any], fields: tuple[str, ...], where: str) -> None:
    missing = [name for name in fields if name not in data]
    if missing:
        raise _bad(
            where, f"the answer lacks {', '.join(missing)} (it has: {', '.join(data) or 'nothing'})"
        )


def _score(value: object, name: str, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(where, f"{name} must be a number, got {value!r}")
    # A plain comparison, false for NaN and infinities: math.isfinite() of a huge JSON int
    # (10**400) raises OverflowError instead of refusing it.
    if not 0 <= value <= 100:
        raise _bad(where, f"{name} must be within 0-100, got {value!r}")
    return value


def _decision(value: object, where: str) -> ReviewDecision:
    # Case and stray spaces are forgiven ("Publish "); any other word is not.
    if isinstance(value, str):
        try:
            return ReviewDecision(value.strip().lower())
        except ValueError:
            pass
    raise _bad(where, f"decision must be 'publish' or 'polish', got {value!r}")


def _criteria(value: object, where: str) -> dict[str, float | int]:
    if not isinstance(value, dict):
        raise _bad(where, f"criteria must be an object of name: score, got {value!r:.{_SNIPPET}}")
    return {str(name): _score(score, f"criteria[{name!r}]", where) for name, score in value.items()}


def _feedback(value: object, where: str) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise _bad(where, f"feedback must be a string or a list of strings, got {value!r:.{_SNIPPET}}")


def validate_review(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Return the review's fields, checked and with ``decision`` lower-cased.

    Fields other than ``decision``, ``quality_score``, ``criteria`` and ``feedback`` are
    dropped, so what is stored has one shape whatever the model added.

    Raises:
        InvalidStageOutputError: A field is missing or has the wrong type, or a score is not
            a finite number within 0-100.

    """
    _require(data, _REVIEW_FIELDS, where)
    return {
        "decision": _decision(data["decision"], where).value,
        "quality_score": _score(data["quality_score"], "quality_score", where),
        "criteria": _criteria(data["criteria"], where),
        "feedback": _feedback(data["feedback"], where),
    }


def _text(value: object, name: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(where, f"{name} must be a non-empty string, got {value!r:.{_SNIPPET}}")
    # Checked here as well as by the engine, so that the refusal carries this call's cost.
    reason = unstorable_reason(value)
    if reason is not None:
        raise _bad(where, f"{name} {reason}")
    return value


def _change_log(value: object, where: str) -> list[Any]:
    if isinstance(value, list) and all(isinstance(item, str | dict) for item in value):
        return list(value)
    raise _bad(where, f"change_log must be a list of strings or objects, got {value!r:.{_SNIPPET}}")


def validate_polish(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Return the polish's fields, checked; other fields are dropped.

    Raises:
        InvalidStageOutputError: A field is missing, the title or script is empty, or the
            change log is not a list.

    """
    _require(data, _POLISH_FIELDS, where)
    return {
        "polished_title": _text(data["polished_title"], "polished_title", where),
        "polished_script": _text(data["polished_script"], "polished_script", where),
        "change_log": _change_log(data["change_log"], where),
    }
