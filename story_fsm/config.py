"""WorkflowConfig: the loop's knobs, validated once when the object is built."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from story_fsm.errors import InputValidationError

__all__ = ["MAX_COUNT", "MAX_SECONDS", "WorkflowConfig"]

#: The largest ``max_iterations`` and ``max_stage_retries`` accepted.
MAX_COUNT = 1_000_000
#: The longest ``stage_timeout_seconds`` and ``retry_backoff_seconds`` accepted: a week.
MAX_SECONDS = 7 * 24 * 3600.0
_CAPS: dict[str, int | float] = {
    "max_iterations": MAX_COUNT,
    "max_stage_retries": MAX_COUNT,
    "stage_timeout_seconds": MAX_SECONDS,
    "retry_backoff_seconds": MAX_SECONDS,
}


def _shown(value: object) -> str:
    """The value for an error message: its repr, cut short (an int's repr can fail, 10**5000)."""
    try:
        text = repr(value)
    except ValueError:
        return f"an integer of {value.bit_length()} bits" if isinstance(value, int) else "?"
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: object) -> bool:
    # bool is an int subclass; True as a threshold is a bug, not a number.
    # Compared, not math.isfinite: that overflows on an int past a float's range (10**400).
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and -math.inf < value < math.inf
    )


@dataclass(frozen=True, slots=True)
class WorkflowConfig:
    """How the review → polish loop runs.

    Args:
        max_iterations: Review/polish rounds before the loop stops with
            ``decision="max_iterations_reached"`` (≥ 1).
        quality_threshold: A review scoring at least this (0–100) is publishable even when its
            decision says polish.
        max_stage_retries: Attempts per stage before the workflow goes to FAILED (≥ 1).
        stage_timeout_seconds: Upper bound of one stage call (> 0); a late answer is discarded.
        retry_backoff_seconds: Wait before attempt *n+1* is ``retry_backoff_seconds × 2^(n-1)``
            (≥ 0).
        review_model: Passed to the reviewer as ``model=`` when set.
        polish_model: Passed to the polisher as ``model=`` when set.

    Raises:
        InputValidationError: A field is out of range; the message names the field (it is
            also a ``ValueError``).

    Example:
        >>> WorkflowConfig(max_iterations=2, quality_threshold=90).max_iterations
        2
    """

    max_iterations: int = 3
    quality_threshold: float = 95
    max_stage_retries: int = 3
    stage_timeout_seconds: float = 300
    retry_backoff_seconds: float = 2.0
    review_model: str | None = None
    polish_model: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_iterations", "max_stage_retries"):
            value = getattr(self, name)
            # The cap: far past any real loop, and short of integers no JSON encoder writes.
            cap = _CAPS[name]
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= cap:
                raise InputValidationError(
                    f"{name} must be an integer from 1 to {cap:,}, got {_shown(value)}"
                )
        threshold = self.quality_threshold
        if not _is_number(threshold) or not 0 <= threshold <= 100:
            raise InputValidationError(
                f"quality_threshold must be a number from 0 to 100, got {_shown(threshold)}"
            )
        for name, zero_ok in (("stage_timeout_seconds", False), ("retry_backoff_seconds", True)):
            seconds, cap = getattr(self, name), _CAPS[name]
            # Capped like a lease: past a week is a mistake, and far past it no clock adds it.
            if not _is_number(seconds) or not (0 < seconds <= cap or (zero_ok and seconds == 0)):
                raise InputValidationError(
                    f"{name} must be a number {'>=' if zero_ok else '>'} 0 and at most {cap:g}, "
                    f"got {_shown(seconds)}"
                )
        for name in ("review_model", "polish_model"):
            model = getattr(self, name)
            if model is not None and (not isinstance(model, str) or not model.strip()):
                raise InputValidationError(
                    f"{name} must be None or a non-empty string, got {_shown(model)}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serializable dict (stored with each workflow)."""
        # Every field is a scalar: a flat copy is what ``asdict`` would return, for less.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowConfig:
        """Build a config from :meth:`to_dict` output, ignoring keys this version lacks.

        A config stored before the caps existed may hold a count or a time past them: it is
        read with those at the cap (a week of timeout waits as long as more, in practice), so
        that its workflow still resumes.
        """
        if not isinstance(data, Mapping):
            raise InputValidationError(
                f"a workflow config must be a mapping, got {type(data).__name__}"
            )
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name, cap in _CAPS.items():
            value = values.get(name)
            if _is_number(value) and value > cap:  # type: ignore[operator]
                values[name] = cap
        return cls(**values)
