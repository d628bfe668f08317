"""Text primitives the offline editor measures with: words, sentences, dialogue, syllables.

Everything here is a pure function of the text and returns character offsets into it, so a
finding built on top can point at exactly what it complains about. Syllables come from
pyphen's bundled hyphenation dictionary: no download, no cache, nothing written anywhere.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache, lru_cache

import pyphen

__all__ = [
    "Sentence",
    "Word",
    "capitalize_first",
    "flesch_reading_ease",
    "in_spans",
    "is_sentence_start",
    "match_case",
    "quoted_spans",
    "sentences",
    "syllables",
    "words",
]

# Latin letters, accented ones included ("Bär", "mañana" are one word each; × and ÷ are no
# letters). Other scripts are not words to these English rules: a story in Cyrillic or CJK
# has none, and the review says so.
_LETTERS = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_WORD_RE = re.compile(rf"[{_LETTERS}]+(?:['\u2019][{_LETTERS}]+)*")
# A sentence ends at . ! ? or an ellipsis, plus any closing quotes or brackets after it.
_END_RE = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*")
# Dialogue. A double quote runs to its closing one, or to the end of its line (a quotation
# that goes on into the next paragraph opens again there); a straight " right after a digit
# is an inch mark (the 6" board). A single quote opens before a letter and closes after a
# letter or punctuation with no letter next, so an apostrophe (it's, the dogs' bowls) is
# neither; it must close on its line.
_QUOTED_RE = re.compile(
    r"(?<!\d)\"[^\"\n]*(?:\"|$)"
    r"|\u201c[^\u201d\n]*(?:\u201d|$)"
    r"|(?<![\w'\u2019])['\u2018](?=[A-Za-z])[^\n]*?(?<=[\w.,!?;\u2026-])['\u2019](?![A-Za-z])",
    re.MULTILINE,
)
_OPENERS = "\"'\u201c\u2018(["
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "mt", "vs", "etc"})
_SENTENCE_START_RE = re.compile(
    r"(?:\A|\n|[.!?\u2026][\"'\u201d\u2019)\]]*[ \t]+)[ \t]*[\"\u201c\u2018(]?\Z"
)
#: How far back :func:`is_sentence_start` looks: the end of the sentence before, its closing
#: quotes and the spaces after them fit well within it.
_LOOKBACK = 80


@dataclass(frozen=True, slots=True)
class Word:
    """One word of the text.

    Attributes:
        start: Offset of its first character.
        end: Offset just past its last character.
        text: The word as written.
    """

    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of the text, without the whitespace around it.

    Attributes:
        start: Offset of its first character.
        end: Offset just past its closing punctuation (or the end of its line).
        text: The sentence as written.
        words: Its words, in order.
        has_dialogue: True when it contains a quotation mark, so rewrites leave it alone.
    """

    start: int
    end: int
    text: str
    words: tuple[Word, ...]
    has_dialogue: bool


def words(text: str, start: int = 0, end: int | None = None) -> list[Word]:
    """Return the words of ``text[start:end]`` with offsets into *text*."""
    stop = len(text) if end is None else end
    return [Word(m.start(), m.end(), m.group()) for m in _WORD_RE.finditer(text, start, stop)]


def _is_boundary(text: str, match: re.Match[str], line_end: int) -> bool:
    """Tell a sentence end from an abbreviation, a decimal point or a dialogue tag."""
    after = match.end()
    if after >= line_end:
        return True
    if not text[after].isspace():
        return False
    following = text[after:line_end].lstrip()
    if not following:
        return True
    # '"Run!" she said.' goes on after the quote: a lowercase word continues the sentence.
    if not (following[0].isupper() or following[0].isdigit() or following[0] in _OPENERS):
        return False
    before = re.search(r"([A-Za-z]+)\.$", text[max(0, match.start() - 12) : match.start() + 1])
    return before is None or before.group(1).lower() not in _ABBREVIATIONS


def _make_sentence(
    text: str, start: int, end: int, dialogue: list[tuple[int, int]]
) -> Sentence | None:
    chunk = text[start:end]
    stripped = chunk.strip()
    if not stripped:
        return None
    first = start + len(chunk) - len(chunk.lstrip())
    last = first + len(stripped)
    return Sentence(
        start=first,
        end=last,
        text=stripped,
        words=tuple(words(text, first, last)),
        # A quotation mark of its own, or a sentence inside a longer quotation.
        has_dialogue=any(mark in stripped for mark in '"\u201c\u201d')
        or _overlaps(first, last, dialogue),
    )


def _overlaps(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    index = bisect_right(spans, end - 1, key=lambda span: span[0]) - 1
    return index >= 0 and spans[index][1] > start


def sentences(text: str) -> list[Sentence]:
    """Split *text* into sentences; a line break always ends one (paragraphs, headings)."""
    dialogue = quoted_spans(text)
    found: list[Sentence] = []
    for line in re.finditer(r"[^\n]+", text):
        start = line.start()
        for match in _END_RE.finditer(text, line.start(), line.end()):
            if _is_boundary(text, match, line.end()):
                sentence = _make_sentence(text, start, match.end(), dialogue)
                if sentence is not None:
                    found.append(sentence)
                start = match.end()
        tail = _make_sentence(text, start, line.end(), dialogue)
        if tail is not None:
            found.append(tail)
    return found


def quoted_spans(text: str) -> list[tuple[int, int]]:
    """Return the (start, end) offsets of every quotation, quotes included, in order."""
    return [(m.start(), m.end()) for m in _QUOTED_RE.finditer(text)]


def in_spans(position: int, spans: list[tuple[int, int]]) -> bool:
    """Tell whether *position* falls inside one of the sorted, disjoint *spans*."""
    index = bisect_right(spans, position, key=lambda span: span[0]) - 1
    return index >= 0 and spans[index][0] <= position < spans[index][1]


@cache
def _dictionary() -> pyphen.Pyphen:
    # left=1/right=1 lets pyphen split "a-gain" and "hap-py", which its defaults keep whole.
    return pyphen.Pyphen(lang="en_US", left=1, right=1)


@lru_cache(maxsize=8192)
def syllables(word: str) -> int:
    """Count the syllables of *word* as its hyphenation points plus one (at least one)."""
    return len(_dictionary().positions(word.lower())) + 1


def flesch_reading_ease(word_list: list[str], sentence_count: int) -> float:
    """Flesch reading ease: about 90-100 for a children's book, 60-70 for plain prose.

    Returns 0.0 for a text without words, the worst grade, so an empty script never passes.
    """
    if not word_list or sentence_count <= 0:
        return 0.0
    total = sum(syllables(word) for word in word_list)
    return 206.835 - 1.015 * (len(word_list) / sentence_count) - 84.6 * (total / len(word_list))


def match_case(original: str, replacement: str) -> str:
    """Give *replacement* the capitalization of *original* (sentence case or all caps)."""
    if not original or not replacement:
        return replacement
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[0].isupper():
        return capitalize_first(replacement)
    return replacement


def capitalize_first(text: str) -> str:
    """Uppercase the first letter of *text*, leaving the rest as written.

    A word with a capital inside it (iPhone, eBay) is a name written that way: it is left be.
    """
    for index, char in enumerate(text):
        if char.isalpha():
            word = _WORD_RE.match(text, index)
            if word is not None and any(c.isupper() for c in word.group()[1:]):
                return text
            return text[:index] + char.upper() + text[index + 1 :]
    return text


def is_sentence_start(text: str, position: int) -> bool:
    """Tell whether a sentence starts at *position* of *text*.

    Only the few characters before *position* are looked at, so a call costs the same
    anywhere in a long script.
    """
    found = _SENTENCE_START_RE.search(text, max(0, position - _LOOKBACK), position)
    return found is not None
