"""What the offline reviewer complains about, in a shape the polisher can act on.

A :class:`Finding` names a criterion, points at characters of the script and may carry the
replacement text that would answer it. The review stores findings as plain dicts; the polisher
reads them back with :meth:`Finding.from_mapping`, which trusts nothing it cannot verify against
the script it is about to edit (the review may come from another editor).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Criterion", "Finding", "drop_overlaps"]


class Criterion(StrEnum):
    """The measurable properties a review grades; the values are the keys of ``criteria``."""

    READABILITY = "readability"
    SENTENCE_LENGTH = "sentence_length"
    STYLE = "style_lint"
    REPETITION = "repetition"
    FILLER = "filler_and_cliches"
    PASSIVE = "passive_voice"
    MECHANICS = "whitespace_punctuation"


@dataclass(frozen=True, slots=True)
class Finding:
    """One concrete problem at one place in the script.

    Attributes:
        criterion: The criterion whose score it lowers (a :class:`Criterion` value, or another
            reviewer's name for one).
        message: What is wrong, for a human.
        start: Offset of the first character concerned.
        end: Offset just past the last character concerned.
        excerpt: ``script[start:end]``, so a reader (and the polisher) can check the offsets.
        suggestion: Text to put in place of the excerpt ("" deletes it), or None when no safe
            mechanical fix exists.
        rule: Which check produced it (``"proselint:<check path>"`` or ``"offline:<rule>"``).
    """

    criterion: str
    message: str
    start: int
    end: int
    excerpt: str
    suggestion: str | None
    rule: str = ""

    @property
    def fixable(self) -> bool:
        """True when the finding carries a replacement that differs from the excerpt."""
        return self.suggestion is not None and self.suggestion != self.excerpt

    def overlaps(self, other: Finding) -> bool:
        """Tell whether two findings touch the same characters (so only one may be applied)."""
        return self.start < other.end and other.start < self.end

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-serializable form stored in the review."""
        return {
            "criterion": str(self.criterion),
            "message": self.message,
            "start": self.start,
            "end": self.end,
            "excerpt": self.excerpt,
            "suggestion": self.suggestion,
            "rule": self.rule,
        }

    @classmethod
    def from_mapping(cls, raw: object, script: str) -> Finding | None:
        """Read a finding from a review, or return None when it does not fit *script*.

        Offsets that do not point at the excerpt are repaired when the excerpt occurs exactly
        once in the script; otherwise the finding is dropped rather than guessed at.
        """
        if not isinstance(raw, Mapping):
            return None
        excerpt, suggestion = raw.get("excerpt"), raw.get("suggestion")
        if not isinstance(excerpt, str) or not excerpt:
            return None
        if suggestion is not None and not isinstance(suggestion, str):
            return None
        start = _locate(script, excerpt, raw.get("start"))
        if start is None:
            return None
        return cls(
            criterion=str(raw.get("criterion") or "unspecified"),
            message=str(raw.get("message") or ""),
            start=start,
            end=start + len(excerpt),
            excerpt=excerpt,
            suggestion=suggestion,
            rule=str(raw.get("rule") or ""),
        )


def _locate(script: str, excerpt: str, start: object) -> int | None:
    if (
        isinstance(start, int)
        and not isinstance(start, bool)
        and start >= 0
        and script[start : start + len(excerpt)] == excerpt
    ):
        return start
    first = script.find(excerpt)
    if first < 0 or script.find(excerpt, first + 1) >= 0:
        return None
    return first


def drop_overlaps(findings: list[Finding]) -> list[Finding]:
    """Keep findings in order, skipping any that overlaps one already kept."""
    kept: list[Finding] = []
    # The kept findings never overlap, so sorted by start they are sorted by end too: a new
    # one need only be checked against its two neighbours (not against all: a long script
    # has thousands of findings).
    spans: list[tuple[int, int]] = []
    for finding in findings:
        index = bisect_left(spans, (finding.start, finding.end))
        before = spans[index - 1] if index > 0 else None
        after = spans[index] if index < len(spans) else None
        if (before is not None and before[1] > finding.start) or (
            after is not None and after[0] < finding.end
        ):
            continue
        spans.insert(index, (finding.start, finding.end))
        kept.append(finding)
    return kept
