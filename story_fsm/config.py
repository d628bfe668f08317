"""WorkflowConfig: the loop's knobs, validated once when the object is built."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from story_fsm.errors import InputValidationError

__all__ = ["WorkflowConfig"]


def _is_number(value: object) -> bool:
    # bool is an int subclass; True as a threshold is a bug, not a number.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


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
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputValidationError(f"{name} must be an integer >= 1, got {value!r}")
        threshold = self.quality_threshold
        if not _is_number(threshold) or not 0 <= threshold <= 100:
            raise InputValidationError(
                f"quality_threshold must be a number from 0 to 100, got {threshold!r}"
            )
        timeout = self.stage_timeout_seconds
        if not _is_number(timeout) or timeout <= 0:
            raise InputValidationError(
                f"stage_timeout_seconds must be a number > 0, got {timeout!r}"
            )
        backoff = self.retry_backoff_seconds
        if not _is_number(backoff) or backoff < 0:
            raise InputValidationError(
                f"retry_backoff_seconds must be a number >= 0, got {backoff!r}"
            )
        for name in ("review_model", "polish_model"):
            model = getattr(self, name)
            if model is not None and (not isinstance(model, str) or not model.strip()):
                raise InputValidationError(
                    f"{name} must be None or a non-empty string, got {model!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a JSON-serializable dict (stored with each workflow)."""
        # Every field is a scalar: a flat copy is what ``asdict`` would return, for less.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkflowConfig:
        """Build a config from :meth:`to_dict` output, ignoring keys this version lacks."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
