"""Apply a review's findings to a script: choose which to answer, then splice them in.

A polish round answers the findings of the few criteria that cost the story the most points,
the way an editor makes one pass for mechanics and another for wording rather than everything
at once. That keeps each change log readable and lets the review -> polish loop show its
progress round by round. Edits never overlap and are spliced from the end of the script
backwards, so every finding's offsets stay valid while the others are applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from story_fsm.editors._prose import capitalize_first, is_sentence_start
from story_fsm.editors._prose_findings import Criterion, Finding, drop_overlaps

__all__ = ["Edit", "apply_edits", "choose_edits"]

_SHORT_PHRASE_WORDS = 6
#: The spaces a deleted word may leave on either side of it.
_BLANKS = " \t\u00a0"
_ACTIONS = {
    Criterion.SENTENCE_LENGTH: "split sentence",
    Criterion.PASSIVE: "rewrite in active voice",
    Criterion.MECHANICS: "fix whitespace/punctuation",
}


@dataclass(frozen=True, slots=True)
class Edit:
    """One applied change, as the change log reports it.

    Attributes:
        finding: The finding it answers.
        action: What was done ("delete", "replace", "split sentence", ...).
    """

    finding: Finding
    action: str

    def to_dict(self) -> dict[str, str]:
        """Return the change-log entry: criterion, action, before, after, reason."""
        return {
            "criterion": str(self.finding.criterion),
            "action": self.action,
            "before": self.finding.excerpt,
            "after": self.finding.suggestion or "",
            "reason": self.finding.message,
        }


def _action(finding: Finding) -> str:
    if finding.criterion in _ACTIONS:
        return _ACTIONS[Criterion(finding.criterion)]
    return "delete" if finding.suggestion == "" else "replace"


def _keeps_the_story(finding: Finding) -> bool:
    """Refuse a fix that would drop most of a longer passage (a foreign review may ask to).

    Short phrases may shrink ("as luck would have it" -> "luckily"); from seven words up, at
    least half of them must stay, so no sentence is cut out of the story.
    """
    before = len(finding.excerpt.split())
    after = len((finding.suggestion or "").split())
    return before <= _SHORT_PHRASE_WORDS or 2 * after >= before


def choose_edits(
    findings: list[Finding], cost: dict[str, float], max_criteria: int | None
) -> list[Edit]:
    """Pick the fixable findings of the *max_criteria* costliest criteria (all when None).

    *cost* maps a criterion to the points it costs the story; criteria without an entry rank
    last. Where two chosen findings overlap, the one of the costlier criterion wins and the
    other waits for the next round, when it is measured again on the edited text.
    """
    fixable = [f for f in findings if f.fixable and _keeps_the_story(f)]
    ranked = sorted({f.criterion for f in fixable}, key=lambda c: (-cost.get(c, 0.0), c))
    focus = ranked if max_criteria is None else ranked[:max_criteria]
    chosen = sorted(
        (f for f in fixable if f.criterion in focus),
        key=lambda f: (focus.index(f.criterion), f.start, -f.end),
    )
    kept = drop_overlaps(chosen)
    return [Edit(f, _action(f)) for f in sorted(kept, key=lambda f: f.start)]


def _splice(text: str, start: int, end: int, replacement: str) -> str:
    before, after = text[:start], text[end:]
    if replacement.endswith(" ") and after[:1].isspace():
        # An earlier-applied neighbour may already have put a space here ("," + " " + "very").
        replacement = replacement.rstrip(" ")
    if replacement == "" and text[start:end].strip():
        # A deleted word leaves the spaces on both sides; keep one, or none before punctuation
        # or a line break (no trailing space left on the line). A no-break space counts too.
        if not before or before[-1].isspace() or before[-1] in '"\u201c(':
            after = after.lstrip(_BLANKS)
        if before.endswith(tuple(_BLANKS)) and after[:1] in tuple(",.;:!?\n"):
            before = before.rstrip(_BLANKS)
        if text[start].isupper() and is_sentence_start(text, start):
            # The deleted word opened its sentence (it was capitalized there): the next one
            # opens it now. A lower-case filler after "p.m." or a quoted "Go!" opened nothing.
            after = capitalize_first(after[:40]) + after[40:]
    return before + replacement + after


def apply_edits(script: str, edits: list[Edit]) -> str:
    """Splice every edit into *script*; the edits must not overlap."""
    text = script
    for edit in sorted(edits, key=lambda e: e.finding.start, reverse=True):
        finding = edit.finding
        text = _splice(text, finding.start, finding.end, finding.suggestion or "")
    # Never hand back an empty story: if the edits ate everything, keep the original.
    return text if text.strip() else script
