"""Medians with their spread, ratios taken within a repeat, and interleaved run orders."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Spread:
    """The median of repeated measurements, with the lowest and highest of them."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Summarize *values* (at least one)."""
        if not values:
            raise ValueError("no measurements to summarize")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as plain data (for results.json)."""
        return asdict(self)

    def fmt(self, digits: int = 0, unit: str = "") -> str:
        """Render ``median (low–high)unit``."""
        return f"{self.median:.{digits}f}{unit} ({self.low:.{digits}f}–{self.high:.{digits}f})"


def ratio_spread(numerators: Sequence[float], denominators: Sequence[float]) -> Spread:
    """Summarize per-repeat ratios: ``numerators[i] / denominators[i]`` came from repeat *i*."""
    if len(numerators) != len(denominators):
        raise ValueError("ratios need one numerator and one denominator per repeat")
    return Spread.of([a / b for a, b in zip(numerators, denominators, strict=True)])


def rotated(items: Sequence[T], repeat: int) -> list[T]:
    """Return *items* starting at a different one each repeat (interleaving, no fixed first)."""
    if not items:
        return []
    k = repeat % len(items)
    return [*items[k:], *items[:k]]


def fmt_spread(spread: dict[str, Any] | None, digits: int = 0, unit: str = "") -> str:
    """Render a :meth:`Spread.to_dict` as ``median (low–high)unit``; "–" when missing."""
    if not spread:
        return "–"
    d = digits
    return f"{spread['median']:.{d}f}{unit} ({spread['low']:.{d}f}–{spread['high']:.{d}f})"
