"""The offline editor's own word- and character-level checks.

proselint covers clichés, redundancies, "very", doubled words and usage; these rules cover what
it does not: whitespace and punctuation mechanics, filler adverbs and near repetition of the
same word. The word lists are small and hand-written because no maintained library that works
offline ships them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from story_fsm.editors._prose import Sentence, in_spans, is_sentence_start, quoted_spans
from story_fsm.editors._prose_findings import Criterion, Finding

__all__ = ["filler_findings", "mechanics_findings", "repetition_findings"]

# (pattern, message, replacement for the whole match, or a function of the match)
_Mechanic = tuple[re.Pattern[str], str, str | Callable[[re.Match[str]], str]]
_MECHANICS: tuple[_Mechanic, ...] = (
    (re.compile(r"(?<=\S)[ \t]{2,}(?=\S)"), "several spaces in a row", " "),
    # A dot with a word right after it starts a token (".22", ".env"), not a sentence's end.
    (re.compile(r"(?<=\w)[ \t]+(?=[,;:!?]|\.(?![.\w]))"), "a space before punctuation", ""),
    (re.compile(r"(?<=[a-z])[,;](?=[A-Za-z])"), "no space after punctuation", lambda m: m[0] + " "),
    (re.compile(r"([!?])[!?]+"), "repeated ! or ? (shouting)", lambda m: m[1]),
    (re.compile(r"([,;:])\1+"), "doubled punctuation", lambda m: m[1]),
    (re.compile(r"\.{4,}|\.(?: \.){2,}"), "a malformed ellipsis", "\u2026"),
    (re.compile(r"(?<=\w)\.\.(?![.\w])"), "a doubled full stop", "."),
    (re.compile(r"[ \t]+(?=\n|\Z)"), "whitespace at the end of a line", ""),
    (re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+"), "more than one blank line", "\n\n"),
)

# Adverbs that pad a sentence without changing what happens in it.
_FILLERS = frozenset(
    {
        "really",
        "just",
        "basically",
        "actually",
        "literally",
        "totally",
        "simply",
        "quite",
        "somewhat",
        "definitely",
        "truly",
    }
)
_FILLER_RE = re.compile(r"\b(" + "|".join(sorted(_FILLERS)) + r")\b(,?)", re.IGNORECASE)
# "a just king", "not really": where dropping the word would change the meaning.
_NOT_FILLER_BEFORE = re.compile(r"\b(?:a|an|the|not)\s+$", re.IGNORECASE)
# A filler word that says something in these places: "quite a few" is many, not a few;
# "had just arrived" tells when.
_NOT_FILLER_IN = {
    "quite": re.compile(r"quite\s+an?\s+(?:few|bit|lot|while|number)\b", re.IGNORECASE),
    "just": re.compile(
        r"(?:\b(?:had|has|have|having)|['\u2019]d|['\u2019]ve)\s+just\b", re.IGNORECASE
    ),
}

# fmt: off
_STOPWORDS = frozenset(
    {
        "about", "above", "after", "again", "against", "all", "also", "along", "among",
        "another", "around", "away", "back", "because", "been", "before", "behind", "being",
        "below", "beside", "between", "both", "came", "come", "could", "did", "does", "doing",
        "down", "during", "each", "even", "ever", "every", "from", "further", "gave", "give",
        "going", "gone", "good", "great", "have", "having", "here", "herself", "himself",
        "into", "itself", "just", "know", "knew", "like", "little", "long", "made", "make",
        "many", "might", "more", "most", "much", "must", "myself", "never", "next", "nothing",
        "once", "only", "other", "ours", "over", "own", "said", "same", "says", "seemed",
        "should", "since", "some", "still", "such", "than", "that", "their", "theirs", "them",
        "then", "there", "these", "they", "thing", "think", "this", "those", "though",
        "through", "till", "time", "together", "told", "took", "toward", "under", "until",
        "upon", "very", "want", "well", "went", "were", "what", "when", "where", "which",
        "while", "whom", "whose", "will", "with", "within", "without", "would", "your", "yours",
        "yourself"
    }
)
# fmt: on
_REPEAT_WINDOW = 8


def _in_address(text: str, position: int) -> bool:
    """Tell whether *position* is inside a URL, a path or an e-mail address (``a/b,c``).

    Their punctuation is not prose: "www.example.com/a,b" needs no space after its comma.
    """
    start = max(text.rfind(" ", 0, position), text.rfind("\n", 0, position)) + 1
    ends = [i for i in (text.find(" ", position), text.find("\n", position)) if i != -1]
    token = text[start : min(ends, default=len(text))]
    return "/" in token or "@" in token or token.lower().startswith("www.")


def mechanics_findings(text: str) -> list[Finding]:
    """Whitespace and punctuation slips: double spaces, " ,", "!!", "....", ",,", and so on."""
    found: list[Finding] = []
    for pattern, message, replacement in _MECHANICS:
        for match in pattern.finditer(text):
            if _in_address(text, match.start()):
                continue
            fix = replacement if isinstance(replacement, str) else replacement(match)
            found.append(
                Finding(
                    criterion=Criterion.MECHANICS,
                    message=message,
                    start=match.start(),
                    end=match.end(),
                    excerpt=match.group(),
                    suggestion=fix,
                    rule="offline:mechanics",
                )
            )
    return found


def filler_findings(text: str) -> list[Finding]:
    """Filler adverbs in the narration; dialogue keeps its voice, so quotes are skipped."""
    dialogue = quoted_spans(text)
    found: list[Finding] = []
    for match in _FILLER_RE.finditer(text):
        # "Basically, she..." loses its comma too; mid-sentence only a filler that modifies the
        # next word can go without breaking the sentence.
        opens = match[1][0].isupper() and is_sentence_start(text, match.start())
        end = match.end() if opens else match.end(1)
        if in_spans(match.start(), dialogue) or not re.match(r"\s[A-Za-z]", text[end : end + 2]):
            continue
        if _NOT_FILLER_BEFORE.search(text[max(0, match.start() - 8) : match.start()]):
            continue
        meaningful = _NOT_FILLER_IN.get(match[1].lower())
        if meaningful is not None and any(
            m.start() <= match.start() < m.end()
            for m in meaningful.finditer(text, max(0, match.start() - 8), match.end() + 16)
        ):
            continue
        found.append(
            Finding(
                criterion=Criterion.FILLER,
                message=f"'{match[1]}' is filler; the sentence reads stronger without it",
                start=match.start(),
                end=end,
                excerpt=text[match.start() : end],
                suggestion="",
                rule="offline:filler",
            )
        )
    return found


def repetition_findings(sentence_list: list[Sentence]) -> list[Finding]:
    """The same content word again within a few words (names and function words excepted)."""
    # A name is a word capitalized mid-sentence; "Biscuit" opening a sentence is one too.
    names = {w.text.lower() for s in sentence_list for w in s.words[1:] if w.text[0].isupper()}
    found: list[Finding] = []
    recent: list[tuple[int, str]] = []
    position = 0
    for sentence in sentence_list:
        for word in sentence.words:
            position += 1
            key = word.text.lower()
            if len(key) < 4 or key in _STOPWORDS or key in names:
                continue
            recent = [(pos, w) for pos, w in recent if position - pos <= _REPEAT_WINDOW]
            if any(w == key for _, w in recent):
                found.append(_repeat_finding(word.start, word.end, word.text))
            recent.append((position, key))
    return found


def _repeat_finding(start: int, end: int, excerpt: str) -> Finding:
    return Finding(
        criterion=Criterion.REPETITION,
        message=f"'{excerpt}' repeats a word used just before; vary it or recast the sentence",
        start=start,
        end=end,
        excerpt=excerpt,
        suggestion=None,
        rule="offline:near_repeat",
    )
