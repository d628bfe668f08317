"""The one place the stages' answers are normalized.

The pipeline's stages answer in several shapes (a mapping, or an object with ``.to_dict()``);
:func:`normalize_review` and :func:`normalize_polish` turn any of them into a small typed outcome
or raise :class:`~story_fsm.errors.InvalidStageOutputError`, which the engine treats as a failed
attempt and retries.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from story_fsm._json import as_stored, deeper_than
from story_fsm._log import get_logger
from story_fsm._text import error_text, unstorable_reason
from story_fsm.errors import InvalidStageOutputError
from story_fsm.states import ReviewDecision
from story_fsm.validation import MAX_INPUT_DEPTH

__all__ = [
    "MAX_STAGE_COST",
    "PolishOutcome",
    "ReviewOutcome",
    "kept_answer",
    "normalize_polish",
    "normalize_review",
    "readable_cost",
]

#: A stage cost above this is taken for a bad field, not a price (and sums of such values
#: would overflow a database's float).
MAX_STAGE_COST = 1e9


@dataclass(frozen=True, slots=True)
class ReviewOutcome:
    """A review, normalized.

    Attributes:
        decision: The review's recommendation.
        quality_score: 0–100.
        cost: What the call cost (0 when the stage did not say).
        data: The whole answer as a JSON-serializable dict, kept in the audit trail.
    """

    decision: ReviewDecision
    quality_score: float
    cost: float
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PolishOutcome:
    """A polish, normalized.

    Attributes:
        title: The new title (the old one when the polisher gave none).
        script: The new script.
        changes_count: Entries in the change log.
        cost: What the call cost (0 when the stage did not say).
        data: The whole answer as a JSON-serializable dict, kept in the audit trail.
    """

    title: str
    script: str
    changes_count: int
    cost: float
    data: dict[str, Any]


def _unreadable(stage: str, exc: Exception) -> InvalidStageOutputError:
    """The refusal of an answer whose reading raised (a to_dict() or a property that fails)."""
    return InvalidStageOutputError(
        f"the {stage} stage's answer could not be read: {error_text(exc)}"
    )


def _as_dict(raw: object, stage: str) -> dict[str, Any]:
    if raw is None:
        raise InvalidStageOutputError(f"the {stage} stage returned None")
    if isinstance(raw, str):  # a model's text handed on as it came: kept on the failed row
        raise InvalidStageOutputError(
            f"the {stage} stage returned text; expected a mapping or an object with to_dict()",
            answer=raw,
        )
    try:
        if isinstance(raw, Mapping):
            return dict(raw)
        if not callable(getattr(raw, "to_dict", None)):
            raise InvalidStageOutputError(
                f"the {stage} stage returned {type(raw).__name__}; expected a mapping or an "
                "object with to_dict()"
            )
        data = raw.to_dict()  # type: ignore[attr-defined]
        if not isinstance(data, Mapping):
            raise InvalidStageOutputError(f"the {stage} stage's to_dict() did not return a dict")
        return dict(data)
    except InvalidStageOutputError:
        raise
    except Exception as exc:  # the stage's own object failed (its iteration, its to_dict())
        raise _unreadable(stage, exc) from exc


def _jsonable(data: dict[str, Any], stage: str) -> dict[str, Any]:
    # The audit trail must store exactly what later reads return: a JSON round trip's result
    # (tuples become lists, keys strings, objects str()); NaN is refused.
    try:
        result: dict[str, Any] = as_stored(data, default=str)
    except RecursionError as exc:
        raise InvalidStageOutputError(f"the {stage} stage's answer is nested too deeply") from exc
    except (TypeError, ValueError) as exc:
        raise InvalidStageOutputError(f"the {stage} stage's answer is not JSON: {exc}") from exc
    # As for the inputs: an answer far deeper could be written from this stack and then not
    # be read back from a deeper one (a worker's thread), which would leave the history
    # unreadable.
    if deeper_than(result, MAX_INPUT_DEPTH):
        raise InvalidStageOutputError(
            f"the {stage} stage's answer is nested too deeply (more than {MAX_INPUT_DEPTH} levels)"
        )
    return result


def _field(raw: object, data: Mapping[str, Any], name: str) -> Any:
    """Read *name* from the object when it has it (typed), else from its dict form."""
    value = getattr(raw, name, None) if not isinstance(raw, Mapping) else None
    return data.get(name) if value is None else value


def _score(raw: object, data: Mapping[str, Any]) -> float:
    score = data.get("quality_score")
    if score is None:
        assessment = _field(raw, data, "overall_assessment")
        if isinstance(assessment, Mapping):
            score = assessment.get("quality_score")
        else:
            score = getattr(assessment, "quality_score", None)
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise InvalidStageOutputError(
            f"the review's quality_score is not a number: {_short(score)}"
        )
    # Compared as it is: float() or math.isfinite() of a huge int raises OverflowError.
    if not 0 <= score <= 100:  # also false for NaN
        raise InvalidStageOutputError(
            f"the review's quality_score is not within 0-100: {_short(score)}"
        )
    return float(score)


def _short(value: object) -> str:
    """*value*'s repr for a message, at most 80 characters (a huge int's repr can raise)."""
    try:
        text = repr(value)
    except Exception:  # an int past sys.get_int_max_str_digits(), a broken __repr__
        if isinstance(value, int):
            return f"<an int of about {int(value.bit_length() * 0.30103)} digits>"
        return f"<{type(value).__name__} object whose repr() failed>"
    return text if len(text) <= 80 else text[:77] + "..."


def _decision(raw: object, data: Mapping[str, Any]) -> ReviewDecision:
    value = _field(raw, data, "decision")
    if isinstance(value, ReviewDecision):
        return value
    text = getattr(value, "value", value)
    if isinstance(text, str):
        try:
            return ReviewDecision(text.strip().lower())
        except ValueError:
            pass
    raise InvalidStageOutputError(
        f"the review's decision must be 'publish' or 'polish', got {_short(value)}"
    )


def readable_cost(cost: object) -> float:
    """Return *cost* as a float when it is a number from 0 to ``MAX_STAGE_COST``, else 0.0.

    None (no cost said) is 0.0. Anything else that is no such number (a string, NaN, an
    infinity, a negative or absurd value, a bool) is logged as ``stage_cost_unreadable`` and
    counted as 0.0: a bad cost field must not throw away a paid answer, nor make the
    workflow's total unusable.
    """
    if cost is None:
        return 0.0
    # A plain comparison: exact for any int (math.isfinite overflows on 10**400), false for NaN.
    if (
        isinstance(cost, bool)
        or not isinstance(cost, int | float)
        or not 0 <= cost <= MAX_STAGE_COST
    ):
        # _short, not repr: an int too long for text (10**5000) must not fail the answer.
        get_logger().warning("stage_cost_unreadable", cost=_short(cost))
        return 0.0
    return float(cost)


def _cost_as_text(raw: object) -> str | None:
    """The text a refused cost is stored as when JSON cannot hold it, else None (kept as is)."""
    if isinstance(raw, float):
        return None if math.isfinite(raw) else repr(raw)
    try:
        as_stored(raw)
    except ValueError:  # an int too long to write (10**5000)
        return _short(raw)
    except TypeError:  # an object: stored as its str(), as any in the answer
        pass
    return None


def _cost(data: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Return the answer's cost and the answer as it is to be stored.

    A cost that JSON cannot hold (NaN, an infinity, an int too long to write) is stored as its
    text (``"nan"``), so the paid answer stays storable and the audit trail still shows what
    the stage said.
    """
    meta = data.get("_meta")
    in_meta = isinstance(meta, Mapping) and meta.get("cost_estimate") is not None
    raw = meta["cost_estimate"] if in_meta else data.get("cost")  # type: ignore[index]
    cost = readable_cost(raw)
    text = _cost_as_text(raw) if not cost and raw is not None else None
    if text is not None:
        data = dict(data)
        if in_meta:
            data["_meta"] = {**data["_meta"], "cost_estimate": text}
        else:
            data["cost"] = text
    return cost, data


#: How much of a refused answer's repr is kept when JSON cannot hold the answer itself.
_REPR_KEPT = 10_000


def kept_answer(data: object) -> object:
    """A refused answer as the failed attempt's row can store it: as JSON data, else its repr.

    A score of NaN, say, has no JSON form; the repr still shows an operator what was refused.
    Also for the ``answer`` a stage puts on its own :class:`InvalidStageOutputError`, which
    may be anything.
    """
    try:
        kept = as_stored(data, default=str)
    except Exception:  # no JSON form (NaN), nesting past the limit, an object whose str() fails
        pass
    else:
        # Deeper than an answer may be stored (see _jsonable): its text instead.
        if not deeper_than(kept, MAX_INPUT_DEPTH):
            return kept
    try:
        return repr(data)[:_REPR_KEPT]
    except Exception:  # a huge int, a broken __repr__, nesting past the recursion limit
        return None


class _Charged:
    """Charge an answer refused here with the cost its stage said it paid, and keep it.

    The call was made and paid for; refusing its answer must not drop that from the failed
    attempt's row and the workflow's total (a stage's own refusal may already carry a cost),
    nor hide what the answer was. An answer whose reading raised (a property of its object,
    a value whose str() fails) is refused the same way.

    A class rather than a ``@contextmanager`` generator: it wraps every answer, and a
    generator's exit raises and catches a ``StopIteration`` each time.
    """

    __slots__ = ("_cost", "_data", "_stage")

    def __init__(self, cost: float, data: dict[str, Any], stage: str) -> None:
        self._cost, self._data, self._stage = cost, data, stage

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, InvalidStageOutputError):
            if not exc.cost:
                exc.cost = self._cost
            if exc.answer is None:
                exc.answer = kept_answer(self._data)
            return  # not swallowed: the with statement raises it on
        if isinstance(exc, Exception):
            refused = _unreadable(self._stage, exc)
            refused.cost, refused.answer = self._cost, kept_answer(self._data)
            raise refused from exc


def normalize_review(raw: object) -> ReviewOutcome:
    """Turn a reviewer's answer into a :class:`ReviewOutcome`.

    Raises:
        InvalidStageOutputError: None, an unknown decision, a score that is not a finite
            number within 0–100, or an answer whose reading raises (its ``to_dict()``, a
            property); it carries the cost the answer stated, since the call was paid for.

    >>> normalize_review({"decision": "polish", "quality_score": 72}).quality_score
    72.0
    """
    data = _as_dict(raw, "review")
    cost, data = _cost(data)
    with _Charged(cost, data, "review"):
        decision, score = _decision(raw, data), _score(raw, data)
        stored = _jsonable(data, "review")
    return ReviewOutcome(decision, score, cost, stored)


def _change_count(change_log: object) -> int:
    if change_log is None:
        return 0
    if isinstance(change_log, str):
        return 1 if change_log.strip() else 0
    if isinstance(change_log, Mapping | list | tuple):
        return len(change_log)
    return 1


def normalize_polish(raw: object, current_title: str) -> PolishOutcome:
    """Turn a polisher's answer into a :class:`PolishOutcome`.

    Raises:
        InvalidStageOutputError: None, no non-empty ``polished_script``, or a script or title
            that no database can store as text (a NUL character, an unpaired surrogate), or an
            answer whose reading raises; it carries the cost the answer stated.
    """
    data = _as_dict(raw, "polish")
    cost, data = _cost(data)
    with _Charged(cost, data, "polish"):
        script = _field(raw, data, "polished_script")
        if not isinstance(script, str) or not script.strip():
            raise InvalidStageOutputError(
                f"the polish has no polished_script (a non-empty string), got {_short(script)}"
            )
        title = _field(raw, data, "polished_title")
        if not isinstance(title, str) or not title.strip():
            title = current_title
        for name, text in (("polished_script", script), ("polished_title", title)):
            # Refused here, as a failed attempt (retried), rather than by the database in the
            # middle of the transition that stores it.
            reason = unstorable_reason(text)
            if reason is not None:
                raise InvalidStageOutputError(f"the polish's {name} {reason}")
        stored = _jsonable(data, "polish")
        changes = _change_count(_field(raw, data, "change_log"))
    return PolishOutcome(title=title, script=script, changes_count=changes, cost=cost, data=stored)
