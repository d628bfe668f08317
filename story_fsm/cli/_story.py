"""Reading a story file: UTF-8 text whose first non-empty line is the title.

Checked here, before any database is opened, so a bad file (or story id) costs nothing and
creates nothing: the file itself, then the same checks the library makes before it writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from story_fsm.errors import InputValidationError
from story_fsm.validation import validate_story_id, validate_text

__all__ = ["MAX_STORY_BYTES", "StoryInput", "read_story"]

#: The largest story file read. A story script is a few kilobytes; a file of megabytes is a
#: mistake (a book, a log), and every stage call would pay for it, likely up to its timeout.
MAX_STORY_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class StoryInput:
    """A story as the ``run`` command submits it.

    Attributes:
        story_id: ``--story-id``, else the file's stem.
        title: ``--title``, else the file's first non-empty line.
        script: The rest of the file (the whole file when ``--title`` is given).
    """

    story_id: str
    title: str
    script: str


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_STORY_BYTES:
            raise InputValidationError(
                f"story file {str(path)!r} is {size:,} bytes; a story file may be at most "
                f"{MAX_STORY_BYTES:,}"
            )
        # Read no more than the limit allows, whatever stat() said: a pipe, a FIFO or a
        # device (/dev/zero) has no size to check first.
        with path.open("rb") as stream:
            data = stream.read(MAX_STORY_BYTES + 1)
        if len(data) > MAX_STORY_BYTES:
            raise InputValidationError(
                f"story file {str(path)!r} is larger than {MAX_STORY_BYTES:,} bytes, the most "
                "a story file may be"
            )
        # As text mode reads a file: line ends \r\n and \r become \n.
        return data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except FileNotFoundError:
        raise InputValidationError(f"story file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise InputValidationError(f"story file {str(path)!r} is a directory") from None
    except UnicodeDecodeError as exc:
        raise InputValidationError(
            f"story file {str(path)!r} is not UTF-8 text (byte {exc.start})"
        ) from None
    except OSError as exc:
        raise InputValidationError(
            f"cannot read story file {str(path)!r}: {exc.strerror}"
        ) from None


#: How much of a refused title line an error message quotes: a story written as one
#: paragraph is all title line, and the message would print the whole story.
_QUOTED_TITLE_CHARS = 60


def _quoted(title: str) -> str:
    """*title* as an error message quotes it: its repr, cut short when long."""
    if len(title) <= _QUOTED_TITLE_CHARS:
        return repr(title)
    return f"{title[:_QUOTED_TITLE_CHARS]!r}… ({len(title):,} characters)"


def _id_from_name(path: Path) -> str:
    """The file's name without its suffix, if the library takes it as a story id."""
    try:
        return validate_story_id(path.stem)
    except InputValidationError as exc:
        # The user gave no id: say where this one came from, and how to give another.
        raise InputValidationError(
            f"the story file's name gives no usable story id ({exc}); give one with --story-id"
        ) from None


def read_story(path: Path, *, title: str | None = None, story_id: str | None = None) -> StoryInput:
    """Read *path* into a :class:`StoryInput`.

    Raises:
        InputValidationError: The file is missing, unreadable, too large, not UTF-8, empty, or
            has a title line and no script; *title* has a line break; or the story id, title
            or script would be refused by the library (e.g. an empty id, a NUL character).
    """
    text = _read_text(path).lstrip("\ufeff")
    if not text.strip():
        raise InputValidationError(f"story file {str(path)!r} is empty")
    if title is None:
        first, _, rest = text.strip().partition("\n")
        title, script = first.strip(), rest.strip()
        if not script:
            raise InputValidationError(
                f"story file {str(path)!r} has a title line ({_quoted(title)}) but no script "
                "after it; to run the whole file as the script, give the title with --title"
            )
    else:
        script = text.strip()
    if not title.strip():
        raise InputValidationError("--title must not be empty")
    if "\n" in title or "\r" in title:
        # A story file's title is its first line: 'show' would print the rest as the script.
        raise InputValidationError(f"--title must be one line, got {_quoted(title)}")
    story = StoryInput(
        story_id=validate_story_id(story_id) if story_id is not None else _id_from_name(path),
        title=title,
        script=script,
    )
    validate_text("title", title)
    validate_text("script", script)
    return story
