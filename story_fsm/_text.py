r"""Text that every backend can store as it is (pure functions, no I/O).

PostgreSQL refuses a NUL character in a text column, and no driver can encode an unpaired
surrogate (``"\ud800"``, which Python strings may hold but UTF-8 cannot). Caught before any
write, such text is a clear input or stage error instead of a database error in the middle of
a transition; and it is refused on SQLite as well, so a workflow moves between the backends.
JSON columns need no check: the JSON encoder escapes both.
"""

from __future__ import annotations

__all__ = ["error_text", "storable", "unstorable_reason"]


def unstorable_reason(text: str) -> str | None:
    r"""Return why *text* cannot be stored as it is in a text column, or None if it can.

    >>> print(unstorable_reason("a\x00b"))
    contains a NUL character (\x00) at position 1
    """
    nul = text.find("\x00")
    if nul >= 0:
        return f"contains a NUL character (\\x00) at position {nul}"
    if text.isascii():  # O(1) in CPython (a flag of the string); ASCII has no surrogates
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains an unpaired surrogate ({text[exc.start]!r}) at position {exc.start}"
    return None


def storable(text: str) -> str:
    r"""Return *text* with what no backend can store written as escapes (for diagnostics).

    For text that is ours to shape, like an error message: a NUL becomes ``\x00`` and an
    unpaired surrogate ``\udXXX``; any other text is returned as it is.

    >>> print(storable("a\x00b\ud800"))
    a\x00b\ud800
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def error_text(error: BaseException) -> str:
    """Return ``Type: message`` of *error*, even when its ``__str__`` raises.

    A stage's own error class may be broken; its failure must still be recorded (the text
    stands where the traceback module would print ``<exception str() failed>``).
    """
    try:
        message = str(error)
    except Exception:
        message = "<exception str() failed>"
    return f"{type(error).__name__}: {message}"
