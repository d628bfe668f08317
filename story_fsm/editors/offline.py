"""The embedded default stage pair: a rule-based reviewer and polisher that need no network.

:class:`OfflineReviewer` grades a script 0-100 on measurable properties of the text
(readability, sentence length, proselint's style checks, repetition, filler and clichés,
passive voice, whitespace and punctuation) and lists concrete findings with character offsets.
:class:`OfflinePolisher` answers those findings with deterministic edits. Both are pure
functions of their input: the same story always gets the same review and the same polish, and
nothing is downloaded, cached or written at run time (no API key, no model files).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from story_fsm._log import get_logger
from story_fsm.editors._prose_edit import Edit, apply_edits, choose_edits
from story_fsm.editors._prose_findings import Criterion, Finding
from story_fsm.editors._prose_lint import PROSELINT_VERSION
from story_fsm.editors._prose_score import Assessment, assess
from story_fsm.errors import InputValidationError
from story_fsm.states import ReviewDecision

__all__ = ["RULES_VERSION", "OfflinePolisher", "OfflineReviewer"]

RULES_VERSION = "1.1"
"""Version of the scoring and editing rules; stored in every answer's ``_meta``."""

_ADVICE = {
    Criterion.READABILITY: "use shorter sentences and plainer words",
    Criterion.SENTENCE_LENGTH: "split the longest sentences",
    Criterion.STYLE: "see the proselint notes among the findings",
    Criterion.REPETITION: "remove doubled words and vary repeated ones",
    Criterion.FILLER: "cut filler words and replace clichés with plain words",
    Criterion.PASSIVE: "say who does what (active voice)",
    Criterion.MECHANICS: "fix spacing and punctuation",
}
_MAX_FEEDBACK = 4


def _meta() -> dict[str, Any]:
    return {
        "cost_estimate": 0.0,
        "editor": "offline",
        "version": RULES_VERSION,
        "proselint": PROSELINT_VERSION,
    }


def _feedback(assessment: Assessment, decision: ReviewDecision, threshold: float) -> list[str]:
    verdict = "ready to publish" if decision is ReviewDecision.PUBLISH else "needs polish"
    lines = [f"Score {assessment.score:.1f}/100 against a threshold of {threshold:g}: {verdict}."]
    costly = sorted(assessment.criteria, key=lambda c: (-(100 - c.score) * c.weight, c.criterion))
    for grade in costly[:_MAX_FEEDBACK]:
        if grade.score < 100:
            advice = _ADVICE[grade.criterion]
            lines.append(f"{grade.criterion} {grade.score:.0f}/100: {grade.detail}; {advice}.")
    fixable = sum(f.fixable for f in assessment.findings)
    lines.append(f"{fixable} of {len(assessment.findings)} findings carry a suggested fix.")
    return lines


class OfflineReviewer:
    """Grades a story with rules instead of a model; implements ``StoryReviewer``.

    Args:
        publish_threshold: Score (0-100) at or above which the decision is "publish".

    Raises:
        InputValidationError: The threshold is not a number within 0-100.
    """

    def __init__(self, *, publish_threshold: float = 90.0) -> None:
        if (
            isinstance(publish_threshold, bool)
            or not isinstance(publish_threshold, int | float)
            or not (math.isfinite(publish_threshold) and 0 <= publish_threshold <= 100)
        ):
            raise InputValidationError(
                f"publish_threshold must be a number within 0-100, got {publish_threshold!r}"
            )
        self.publish_threshold = float(publish_threshold)

    def review_story(
        self,
        *,
        title: str,
        script: str,
        audience_context: Mapping[str, Any],
        original_idea: str,
        story_id: str,
        story_version: str,
        local_review_summary: Any,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Review *script* and return the review as a JSON-serializable dict.

        Only the script is graded; the title, audience, idea, local summary and ``model`` are
        accepted for the protocol's sake and do not change the result.

        Returns:
            ``decision``, ``quality_score``, ``criteria`` (name -> score, weight, detail),
            ``findings`` (criterion, message, start, end, excerpt, suggestion, rule),
            ``feedback``, ``overall_assessment`` and ``_meta``.
        """
        assessment = assess(script)
        decision = (
            ReviewDecision.PUBLISH
            if assessment.score >= self.publish_threshold
            else ReviewDecision.POLISH
        )
        get_logger(story_id=story_id, version=story_version).debug(
            "offline_review", quality_score=assessment.score, findings=len(assessment.findings)
        )
        return {
            "decision": decision.value,
            "quality_score": assessment.score,
            "criteria": {
                str(c.criterion): {"score": c.score, "weight": c.weight, "detail": c.detail}
                for c in assessment.criteria
            },
            "findings": [finding.to_dict() for finding in assessment.findings],
            "feedback": _feedback(assessment, decision, self.publish_threshold),
            "overall_assessment": {"quality_score": assessment.score},
            "statistics": {
                "words": assessment.word_count,
                "sentences": assessment.sentence_count,
            },
            "story_version": story_version,
            "_meta": _meta(),
        }


def _review_costs(review: Mapping[str, Any]) -> dict[str, float]:
    """Points each criterion costs, from a review's ``criteria`` block ({} when unusable)."""
    criteria = review.get("criteria")
    if not isinstance(criteria, Mapping):
        return {}
    costs: dict[str, float] = {}
    for name, grade in criteria.items():
        score = grade.get("score") if isinstance(grade, Mapping) else None
        weight = grade.get("weight", 1.0) if isinstance(grade, Mapping) else None
        if isinstance(score, int | float) and isinstance(weight, int | float):
            costs[str(name)] = float(weight) * (100.0 - float(score))
    return costs


def _plan(review: Mapping[str, Any], script: str) -> tuple[list[Finding], dict[str, float]]:
    """The findings to work from, and what each criterion costs.

    A review's own findings are used when some of them still fit the script and carry a fix;
    otherwise (another editor's review, or one without findings) they are measured afresh.
    """
    raw = review.get("findings") if isinstance(review, Mapping) else None
    items = raw if isinstance(raw, list) else []
    parsed = [f for f in (Finding.from_mapping(item, script) for item in items) if f is not None]
    if any(f.fixable for f in parsed):
        costs = _review_costs(review)
        if not costs:
            for finding in parsed:
                costs[finding.criterion] = costs.get(finding.criterion, 0.0) + 1.0
        return parsed, costs
    assessment = assess(script)
    costs = {str(c.criterion): c.weight * (100.0 - c.score) for c in assessment.criteria}
    return list(assessment.findings), costs


def _tidy_title(title: str) -> tuple[str, list[dict[str, str]]]:
    tidy = " ".join(title.split())
    if not tidy or tidy == title:
        return title, []
    entry = {
        "criterion": str(Criterion.MECHANICS),
        "action": "fix whitespace/punctuation",
        "before": title,
        "after": tidy,
        "reason": "extra whitespace in the title",
    }
    return tidy, [entry]


class OfflinePolisher:
    """Answers a review's findings with deterministic edits; implements ``StoryPolisher``.

    Each round works on the ``max_criteria_per_round`` criteria that cost the story the most
    points (all of them when None): it applies their suggested replacements, deletes filler,
    fixes spacing and punctuation, splits run-on sentences and turns simple passives active.
    It never deletes a whole sentence and never returns an empty script.

    Args:
        max_criteria_per_round: How many criteria one polish round addresses (None: all).

    Raises:
        InputValidationError: ``max_criteria_per_round`` is not a positive integer or None.
    """

    def __init__(self, *, max_criteria_per_round: int | None = 3) -> None:
        if max_criteria_per_round is not None and (
            isinstance(max_criteria_per_round, bool)
            or not isinstance(max_criteria_per_round, int)
            or max_criteria_per_round < 1
        ):
            raise InputValidationError(
                "max_criteria_per_round must be a positive integer or None, "
                f"got {max_criteria_per_round!r}"
            )
        self.max_criteria_per_round = max_criteria_per_round

    def polish_story(
        self,
        *,
        story_id: str,
        current_title: str,
        current_script: str,
        expert_review_data: Mapping[str, Any],
        iteration_number: int,
        audience_context: Mapping[str, Any],
        original_idea: str,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Polish the story and return the result as a JSON-serializable dict.

        Returns:
            ``polished_title``, ``polished_script``, ``change_log`` (criterion, action,
            before, after, reason per change), ``addressed_criteria``, ``remaining_findings``
            and ``_meta``.

        Raises:
            InputValidationError: The script is empty, so there is nothing to polish.
        """
        if not current_script.strip():
            raise InputValidationError(
                f"story {story_id!r}: the script is empty; there is nothing to polish"
            )
        findings, costs = _plan(expert_review_data, current_script)
        edits: list[Edit] = choose_edits(findings, costs, self.max_criteria_per_round)
        title, title_log = _tidy_title(current_title)
        get_logger(story_id=story_id, iteration=iteration_number).debug(
            "offline_polish", edits=len(edits), findings=len(findings)
        )
        return {
            "polished_title": title,
            "polished_script": apply_edits(current_script, edits),
            "change_log": [edit.to_dict() for edit in edits] + title_log,
            "addressed_criteria": sorted({str(e.finding.criterion) for e in edits}),
            "remaining_findings": len(findings) - len(edits),
            "_meta": _meta(),
        }
