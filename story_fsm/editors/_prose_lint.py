"""proselint (0.16) as a source of findings: clichés, redundancy, "very", doubled words, usage.

proselint 0.16 needs no network and writes no cache: its checks are regexes over word lists
shipped in the wheel. We run its registered checks directly instead of through ``LintFile.lint``
with the user's configuration, for two reasons: the shared ``CheckRegistry`` singleton grows
each time someone registers into it, and a ``~/.proselintrc.json`` must not change a score
(reviews are deterministic for a given story).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from importlib.metadata import version
from typing import Any

from proselint.checks import __register__ as _ALL_CHECKS
from proselint.config import DEFAULT
from proselint.tools import LintFile

from story_fsm.editors._prose import match_case
from story_fsm.editors._prose_findings import Criterion, Finding

__all__ = ["PROSELINT_VERSION", "lint_findings"]

PROSELINT_VERSION = version("proselint")

# Left out, with the reason: the check would count something twice or is not a defect here.
_EXCLUDED = (
    "typography.symbols.curly_quotes",  # straight quotes are a house style, not a flaw
    "typography.symbols.sentence_spacing",  # the mechanics rule flags every run of spaces
    "typography.punctuation.spacing",  # same
    "typography.punctuation.hyperbole",  # the mechanics rule flags "!!" in dialogue too
)
_CRITERIA = (
    ("lexical_illusions", Criterion.REPETITION),
    ("cliches", Criterion.FILLER),
    ("hedging", Criterion.FILLER),
    ("weasel_words", Criterion.FILLER),
    ("misc.suddenly", Criterion.FILLER),
    ("typography.punctuation.exclamation", Criterion.STYLE),
    ("typography", Criterion.MECHANICS),
)
# Checks whose findings are fixed by deleting the excerpt.
_DELETE = ("weasel_words.very", "misc.suddenly", "hedging")
# proselint names clichés but offers no replacement; these are plain ones for common clichés.
_CLICHE_REWRITES = {
    "a dark and stormy night": "a stormy night",
    "all hell broke loose": "chaos broke out",
    "as luck would have it": "luckily",
    "at the end of the day": "in the end",
    "bored to tears": "bored",
    "calm before the storm": "lull",
    "crack of dawn": "first light",
    "crystal clear": "clear",
    "dead as a doornail": "dead",
    "easier said than done": "hard",
    "eleventh hour": "last minute",
    "first and foremost": "first",
    "in light of": "given",
    "in the long run": "eventually",
    "in the nick of time": "with seconds to spare",
    "keep an eye on": "watch",
    "last but not least": "finally",
    "moment of truth": "decisive moment",
    "needless to say": "of course",
    "olden days": "old days",
    "on pins and needles": "anxious",
    "quick as lightning": "quick",
    "raining cats and dogs": "pouring",
    "scared stiff": "terrified",
    "scared to death": "terrified",
    "slowly but surely": "steadily",
    "time and time again": "again and again",
    "worst nightmare": "greatest fear",
}
_PLAIN_TEXT = re.compile(r"[\w' ,.-]+")
_REPEATED_UNIT = re.compile(r"(\w+(?:\s+\w+){0,3})(?:\s+\1)+", re.IGNORECASE)


@cache
def _checks() -> tuple[Any, ...]:
    enabled = {path for path, on in DEFAULT["checks"].items() if on}
    return tuple(
        check
        for check in _ALL_CHECKS
        if any(check.matches_partial(path) for path in enabled)
        and not any(check.matches_partial(path) for path in _EXCLUDED)
    )


def _criterion(path: str) -> Criterion:
    for prefix, criterion in _CRITERIA:
        if path == prefix or path.startswith(prefix + "."):
            return criterion
    return Criterion.STYLE


def _suggestion(path: str, excerpt: str, replacement: str | None) -> str | None:
    core = excerpt.strip()
    if path.startswith(_DELETE):
        fix: str | None = ""
    elif path == "lexical_illusions":
        repeated = _REPEATED_UNIT.fullmatch(core)
        fix = repeated[1] if repeated else None
    elif path == "typography.symbols.ellipsis":
        fix = "\u2026"
    elif path.startswith("cliches"):
        fix = _CLICHE_REWRITES.get(core.lower())
    elif replacement and _PLAIN_TEXT.fullmatch(replacement):
        # Consistency checks return a regex as their "replacement"; only plain words are used.
        fix = replacement
    else:
        return None
    if not fix:
        return fix
    lead = excerpt[: len(excerpt) - len(excerpt.lstrip())]
    trail = excerpt[len(excerpt.rstrip()) :]
    return lead + match_case(core, fix) + trail


def _safe_to_delete(text: str, start: int, end: int) -> bool:
    """A phrase can go if it is a trailing aside (", so to speak") or modifies a next word.

    "Very." on its own is a sentence, and "was, to a certain degree, true" would keep both
    commas: those stay for a human.
    """
    return text[start] == "," or re.match(r"\s[A-Za-z]", text[end : end + 2]) is not None


def lint_findings(text: str) -> list[Finding]:
    """Run the selected proselint checks over *text*, skipping dialogue as proselint does."""
    if not text.strip():
        return []
    prepared = LintFile("<story>", text)
    found: list[Finding] = []
    for check in _checks():
        for result in check.check_with_flags(prepared.content):
            if not check.flags.allow_quotes and prepared.is_quoted_pos(result.span[0]):
                continue
            # LintFile pads the text with a newline at each end; undo that offset.
            start = max(result.span[0] - 1, 0)
            end = min(result.span[1] - 1, len(text))
            excerpt = text[start:end]
            if not excerpt.strip():
                continue
            if end < len(text) and unicodedata.combining(text[end]):
                # "cafe" + U+0301 is "café" already (decomposed): the match is half a letter.
                continue
            suggestion = _suggestion(result.check_path, excerpt, result.replacements)
            if suggestion == "" and not _safe_to_delete(text, start, end):
                suggestion = None
            found.append(
                Finding(
                    criterion=_criterion(result.check_path),
                    message=result.message,
                    start=start,
                    end=end,
                    excerpt=excerpt,
                    suggestion=suggestion,
                    rule=f"proselint:{result.check_path}",
                )
            )
    return found
