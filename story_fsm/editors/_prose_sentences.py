"""Sentence-level checks: passive voice and run-on sentences, with safe rewrites where possible.

Both rewrite whole sentences, so both stay conservative: a passive becomes active only when the
sentence is the plain "The X was <verb>ed by Y." shape, and a run-on is split only at a "; " or
before a new subject (", and she ..."), never inside dialogue. Anything else is reported with
no suggestion and left for a human.
"""

from __future__ import annotations

import re

from story_fsm.editors._prose import Sentence, capitalize_first
from story_fsm.editors._prose_findings import Criterion, Finding

__all__ = [
    "LONG_SENTENCE_WORDS",
    "active_rewrite",
    "passive_findings",
    "run_on_findings",
    "split_run_on",
]

LONG_SENTENCE_WORDS = 28
_MIN_PART_WORDS = 6

# Irregular past participles and their simple past (no offline library conjugates verbs).
_IRREGULAR = {
    "beaten": "beat", "begun": "began", "bitten": "bit", "blown": "blew", "broken": "broke",
    "brought": "brought", "built": "built", "bought": "bought", "caught": "caught",
    "chosen": "chose", "done": "did", "drawn": "drew", "driven": "drove", "eaten": "ate",
    "fed": "fed", "felt": "felt", "forgotten": "forgot", "found": "found", "frozen": "froze",
    "given": "gave", "grown": "grew", "heard": "heard", "held": "held", "hidden": "hid",
    "hit": "hit", "hung": "hung", "kept": "kept", "known": "knew", "laid": "laid", "led": "led",
    "left": "left", "lit": "lit", "lost": "lost", "made": "made", "met": "met", "paid": "paid",
    "read": "read", "ridden": "rode", "rung": "rang", "seen": "saw", "sent": "sent",
    "set": "set", "shaken": "shook", "shut": "shut", "sold": "sold", "spoken": "spoke",
    "spent": "spent", "stolen": "stole", "struck": "struck", "sung": "sang", "swept": "swept",
    "taken": "took", "taught": "taught", "thrown": "threw", "told": "told", "torn": "tore",
    "understood": "understood", "woken": "woke", "won": "won", "worn": "wore", "written": "wrote",
}  # fmt: skip
# "-ed" words after "was" that describe a state of mind rather than an action done to someone.
# fmt: off
_ADJECTIVAL = frozenset(
    {
        "tired", "excited", "interested", "bored", "scared", "worried", "surprised", "pleased",
        "married", "used", "supposed", "determined", "annoyed", "amazed", "ashamed",
        "frightened", "terrified", "exhausted", "relieved", "disappointed", "embarrassed",
        "confused", "satisfied", "delighted", "crowded", "red", "bed", "shed", "need", "seed",
        "speed", "hundred", "sacred", "naked", "wicked", "beloved", "rugged", "ragged",
        "crooked", "jagged", "wretched"
    }
)
# fmt: on
_PARTICIPLE = r"[a-z]{2,}ed|" + "|".join(sorted(_IRREGULAR))
_PASSIVE_RE = re.compile(
    rf"\b(?:am|is|are|was|were|be|been|being)\s+(?:[a-z]+ly\s+)?(?P<verb>{_PARTICIPLE})\b",
    re.IGNORECASE,
)
_DETERMINER_WORDS = frozenset(
    {"the", "a", "an", "his", "her", "its", "their", "our", "my", "this", "that"}
)
# The same words in a pattern, lower case or capitalized ("The", "the"); longest first, so
# that "an" is not matched as "a".
_DETERMINERS = (
    "(?:"
    + "|".join(
        f"[{w[0].upper()}{w[0]}]{w[1:]}"
        for w in sorted(_DETERMINER_WORDS, key=lambda w: (-len(w), w))
    )
    + ")"
)
_SIMPLE_PASSIVE_RE = re.compile(
    rf"^(?P<patient>{_DETERMINERS}\s+[a-z][\w'\u2019-]*(?:\s+[a-z][\w'\u2019-]*){{0,2}}"
    r"|[A-Z][a-z]+)\s+(?:was|were)\s+(?P<verb>[a-z]+)\s+by\s+"
    rf"(?P<agent>{_DETERMINERS}\s+[a-z][\w'\u2019-]*|[A-Z][a-z]+|him|her|them|me|us)"
    # Only a tail that tells when: "from Paris", "in the red coat" or "that lived next door"
    # may belong to the agent, and moved with the patient it would change the meaning.
    r"(?P<tail>\s+(?:after|before|during|again|last|this|yesterday|today|tonight)"
    r"\b[^\"\u201c\u201d;]*?)?(?P<stop>[.!?])$"
)
# After "by", a time or a place is not who did it: "finished by Friday", "parked by the house".
# fmt: off
_NOT_AGENTS = frozenset(
    {
        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
        "january", "february", "march", "april", "may", "june", "july", "august",
        "september", "october", "november", "december", "christmas", "easter", "spring",
        "summer", "autumn", "winter", "noon", "midnight", "dawn", "dusk", "sunrise", "sunset",
        "morning", "afternoon", "evening", "night", "day", "week", "month", "year", "hour",
        "minute", "time", "end", "then", "now", "today", "tomorrow", "tonight", "yesterday",
        "house", "home", "door", "window", "gate", "wall", "fence", "hedge", "garden", "road",
        "roadside", "path", "street", "river", "stream", "lake", "sea", "shore", "beach", "bank",
        "dock", "pier", "harbour", "harbor", "bridge", "well", "fire", "fireplace", "table",
        "bed", "tree", "station", "side", "church", "school", "mill", "barn", "field", "hill",
    }
)
# fmt: on
_SUBJECT_PRONOUNS = {"him": "he", "her": "she", "them": "they", "me": "I", "us": "we"}
_OBJECT_PRONOUNS = {v.lower(): k for k, v in _SUBJECT_PRONOUNS.items()} | {"it": "it"}
# Words that can open an independent clause after ", and ": a split there leaves two sentences.
# fmt: off
_SUBJECT_WORDS = frozenset(
    {
        "he", "she", "they", "i", "we", "it", "you", "the", "a", "an", "his", "her", "their",
        "my", "our", "its", "this", "that", "there", "nobody"
    }
)
# fmt: on
_SPLIT_RE = re.compile(r"(?P<cut>;\s+|,\s+(?P<conj>and|but|so)\s+)(?P<next>[A-Za-z]+)")


def _past_tense(participle: str) -> str | None:
    if participle in _IRREGULAR:
        return _IRREGULAR[participle]
    return participle if participle.endswith("ed") and participle not in _ADJECTIVAL else None


def active_rewrite(sentence: str) -> str | None:
    """Rewrite "The door was slammed by the wind." as "The wind slammed the door."."""
    match = _SIMPLE_PASSIVE_RE.match(sentence)
    if match is None:
        return None
    verb = _past_tense(match["verb"])
    if verb is None:
        return None
    patient, agent = match["patient"], match["agent"]
    if agent.split()[-1].lower() in _NOT_AGENTS:
        return None
    patient = _OBJECT_PRONOUNS.get(patient.lower(), patient)
    if re.match(_DETERMINERS + r"\s", patient):
        patient = patient[0].lower() + patient[1:]
    agent = capitalize_first(_SUBJECT_PRONOUNS.get(agent, agent))
    return f"{agent} {verb} {patient}{match['tail'] or ''}{match['stop']}"


def passive_findings(sentence_list: list[Sentence]) -> list[Finding]:
    """Passive constructions in the narration, one finding per sentence that has one."""
    found: list[Finding] = []
    for sentence in sentence_list:
        if sentence.has_dialogue:
            continue
        match = next(
            (m for m in _PASSIVE_RE.finditer(sentence.text) if _past_tense(m["verb"].lower())),
            None,
        )
        if match is None:
            continue
        rewrite = active_rewrite(sentence.text)
        start, end = (0, len(sentence.text)) if rewrite else match.span()
        found.append(
            Finding(
                criterion=Criterion.PASSIVE,
                message=f"passive voice ('{match.group()}'); say who does what",
                start=sentence.start + start,
                end=sentence.start + end,
                excerpt=sentence.text[start:end],
                suggestion=rewrite,
                rule="offline:passive",
            )
        )
    return found


def _ends_a_list(head: str, following: str) -> bool:
    """Tell whether ", and *following*" closes a list that *head* ends in ("A, B, and C").

    A series: two commas or more before the joint, the last two items opening like the one
    after "and" does (a determiner: "the lamps, the maps, and the compass") or being a word
    or two. Split there, the last item would be a sentence without a verb.
    """
    items = [item.split() for item in head.split(",")[1:][-2:]]
    if len(items) < 2 or following.lower() not in _DETERMINER_WORDS:
        return False
    return all(
        words and (words[0].lower() in _DETERMINER_WORDS or len(words) <= 2) for words in items
    )


def split_run_on(sentence: str) -> str | None:
    """Split a long sentence once, at the safe joint nearest its middle; None when none is."""
    total = len(sentence.split())
    best: tuple[int, str] | None = None
    for match in _SPLIT_RE.finditer(sentence):
        conj, following = match["conj"], match["next"]
        if conj and following.lower() not in _SUBJECT_WORDS and not following[0].isupper():
            continue
        head, rest = sentence[: match.start()], sentence[match.start("next") :]
        if min(len(head.split()), len(rest.split())) < _MIN_PART_WORDS:
            continue
        if conj == "and" and _ends_a_list(head, following):
            # "the bags, the lamps, the maps, and the compass": the last item of a list,
            # which split off would be a sentence without a verb.
            continue
        # "and" goes with the comma; "but" and "so" carry meaning, so they open the new sentence.
        opener = f"{conj.capitalize()} " if conj in ("but", "so") else ""
        candidate = f"{head}. {opener}{rest if opener else capitalize_first(rest)}"
        distance = abs(len(head.split()) - total // 2)
        if best is None or distance < best[0]:
            best = (distance, candidate)
    return None if best is None else best[1]


def run_on_findings(sentence_list: list[Sentence]) -> list[Finding]:
    """Sentences longer than :data:`LONG_SENTENCE_WORDS` words, with a split when one is safe."""
    found: list[Finding] = []
    for sentence in sentence_list:
        count = len(sentence.words)
        if count <= LONG_SENTENCE_WORDS:
            continue
        split = None if sentence.has_dialogue else split_run_on(sentence.text)
        found.append(
            Finding(
                criterion=Criterion.SENTENCE_LENGTH,
                message=f"a {count}-word sentence; split it so the reader can breathe",
                start=sentence.start,
                end=sentence.end,
                excerpt=sentence.text,
                suggestion=split,
                rule="offline:run_on",
            )
        )
    return found
