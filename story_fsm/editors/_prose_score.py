"""Turn a script into findings and a 0-100 score, one weighted criterion at a time.

Every criterion is a measurable property of the text, scaled by length (problems per 100 words,
or the share of sentences affected) so a long story is not punished for being long. The weights
and slopes below are the editor's whole opinion of what good prose is; change them together
with ``RULES_VERSION`` in :mod:`story_fsm.editors.offline` so old scores stay explainable.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from story_fsm.editors._prose import Sentence, flesch_reading_ease, sentences, words
from story_fsm.editors._prose_findings import Criterion, Finding, drop_overlaps
from story_fsm.editors._prose_lint import lint_findings
from story_fsm.editors._prose_rules import filler_findings, mechanics_findings, repetition_findings
from story_fsm.editors._prose_sentences import (
    LONG_SENTENCE_WORDS,
    passive_findings,
    run_on_findings,
)

__all__ = ["WEIGHTS", "Assessment", "CriterionScore", "assess"]

WEIGHTS: dict[Criterion, float] = {
    Criterion.READABILITY: 0.15,
    Criterion.SENTENCE_LENGTH: 0.15,
    Criterion.STYLE: 0.10,
    Criterion.REPETITION: 0.10,
    Criterion.FILLER: 0.20,
    Criterion.PASSIVE: 0.10,
    Criterion.MECHANICS: 0.20,
}
# Flesch reading ease at which readability scores 0 and 100 (fiction reads at about 70-90).
_FRE_FLOOR, _FRE_TARGET = 40.0, 80.0
# Points lost per problem per 100 words, by criterion.
_SLOPES = {Criterion.STYLE: 20.0, Criterion.REPETITION: 12.0, Criterion.MECHANICS: 30.0}
_FILLER_SLOPE, _CLICHE_WEIGHT = 20.0, 2.0
_EXCESS_SLOPE = 6.0  # per word beyond the long-sentence limit, per 100 words
_PASSIVE_ALLOWED, _PASSIVE_SLOPE = 0.05, 250.0


@dataclass(frozen=True, slots=True)
class CriterionScore:
    """One criterion's grade.

    Attributes:
        criterion: Which criterion.
        score: 0-100, rounded to one decimal.
        weight: Its share of the overall score (the weights sum to 1).
        detail: The measurement behind the grade, for a human.
    """

    criterion: Criterion
    score: float
    weight: float
    detail: str


@dataclass(frozen=True, slots=True)
class Assessment:
    """Everything the reviewer measured in one script.

    Attributes:
        score: The weighted overall score, 0-100, rounded to one decimal.
        criteria: One grade per criterion, in :data:`WEIGHTS` order.
        findings: Every finding, sorted by position.
        word_count: Words in the script.
        sentence_count: Sentences in the script.
    """

    score: float
    criteria: tuple[CriterionScore, ...]
    findings: tuple[Finding, ...]
    word_count: int
    sentence_count: int


@dataclass(frozen=True, slots=True)
class _Text:
    sentences: list[Sentence]
    words: list[str]
    findings: dict[Criterion, list[Finding]]

    def density(self, count: float) -> float:
        return 100.0 * count / max(len(self.words), 1)


def _clamp(value: float) -> float:
    return round(min(100.0, max(0.0, value)), 1)


def _readability(text: _Text) -> tuple[float, str]:
    ease = flesch_reading_ease(text.words, len(text.sentences))
    score = (ease - _FRE_FLOOR) * 100.0 / (_FRE_TARGET - _FRE_FLOOR)
    return _clamp(score), f"Flesch reading ease {ease:.1f} (aim for {_FRE_TARGET:.0f}+)"


def _sentence_length(text: _Text) -> tuple[float, str]:
    lengths = [len(sentence.words) for sentence in text.sentences if sentence.words]
    if not lengths:
        return 0.0, "no sentences"
    excess = sum(max(0, n - LONG_SENTENCE_WORDS) for n in lengths)
    spread = statistics.pstdev(lengths)
    # Uniform sentence lengths drone; a spread under 4 words costs up to 20 points.
    monotony = max(0.0, 4.0 - spread) * 5.0 if len(lengths) >= 6 else 0.0
    long_count = sum(n > LONG_SENTENCE_WORDS for n in lengths)
    detail = (
        f"mean {statistics.fmean(lengths):.1f} words, spread {spread:.1f}; "
        f"{long_count} over {LONG_SENTENCE_WORDS} words"
    )
    return _clamp(100.0 - _EXCESS_SLOPE * text.density(excess) - monotony), detail


def _per_word(criterion: Criterion, noun: str) -> Callable[[_Text], tuple[float, str]]:
    def grade(text: _Text) -> tuple[float, str]:
        count = len(text.findings[criterion])
        density = text.density(count)
        return _clamp(
            100.0 - _SLOPES[criterion] * density
        ), f"{count} {noun} ({density:.1f} per 100 words)"

    return grade


def _repetition(text: _Text) -> tuple[float, str]:
    found = text.findings[Criterion.REPETITION]
    doubled = sum(not f.rule.endswith("near_repeat") for f in found)
    near = len(found) - doubled
    # A doubled word ("the the") is a plain error; a near repeat only a matter of style.
    density = text.density(3 * doubled + near)
    detail = f"{doubled} doubled words, {near} words repeated within a few words"
    return _clamp(100.0 - _SLOPES[Criterion.REPETITION] * density), detail


def _filler(text: _Text) -> tuple[float, str]:
    found = text.findings[Criterion.FILLER]
    cliches = sum("cliches" in f.rule for f in found)
    fillers = len(found) - cliches
    density = text.density(fillers + _CLICHE_WEIGHT * cliches)
    return _clamp(100.0 - _FILLER_SLOPE * density), f"{fillers} filler words, {cliches} clichés"


def _passive(text: _Text) -> tuple[float, str]:
    narration = [sentence for sentence in text.sentences if not sentence.has_dialogue]
    count = len(text.findings[Criterion.PASSIVE])
    share = count / max(len(narration), 1)
    score = 100.0 - _PASSIVE_SLOPE * max(0.0, share - _PASSIVE_ALLOWED)
    return _clamp(score), f"{count} of {len(narration)} narrative sentences are passive"


_GRADERS: dict[Criterion, Callable[[_Text], tuple[float, str]]] = {
    Criterion.READABILITY: _readability,
    Criterion.SENTENCE_LENGTH: _sentence_length,
    Criterion.STYLE: _per_word(Criterion.STYLE, "style issues"),
    Criterion.REPETITION: _repetition,
    Criterion.FILLER: _filler,
    Criterion.PASSIVE: _passive,
    Criterion.MECHANICS: _per_word(Criterion.MECHANICS, "whitespace/punctuation slips"),
}


def _all_findings(script: str, sentence_list: list[Sentence]) -> list[Finding]:
    found = [
        *lint_findings(script),
        *mechanics_findings(script),
        *filler_findings(script),
        *repetition_findings(sentence_list),
        *passive_findings(sentence_list),
        *run_on_findings(sentence_list),
    ]
    found.sort(key=lambda f: (f.start, -f.end, f.criterion, f.rule, f.message))
    # Two checks flagging the same words for the same reason count once.
    kept: list[Finding] = []
    for criterion in WEIGHTS:
        kept += drop_overlaps([f for f in found if f.criterion == criterion])
    return sorted(kept, key=lambda f: (f.start, -f.end, f.criterion, f.rule))


def assess(script: str) -> Assessment:
    """Measure *script*: every finding, a grade per criterion and the weighted score."""
    sentence_list = sentences(script)
    found = _all_findings(script, sentence_list)
    text = _Text(
        sentences=sentence_list,
        words=[word.text for word in words(script)],
        findings={c: [f for f in found if f.criterion == c] for c in WEIGHTS},
    )
    criteria = []
    for criterion, weight in WEIGHTS.items():
        score, detail = _GRADERS[criterion](text) if text.words else (0.0, "no words")
        criteria.append(CriterionScore(criterion, score, weight, detail))
    total = sum(c.score * c.weight for c in criteria)
    return Assessment(
        score=_clamp(total),
        criteria=tuple(criteria),
        findings=tuple(found),
        word_count=len(text.words),
        sentence_count=len(sentence_list),
    )
