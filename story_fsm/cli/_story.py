"""Reading a story file: UTF-8 text whose first non-empty line is the title.

Checked here, before any database is opened, so a bad file costs nothing and creates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from story_fsm.errors import InputValidationError

__all__ = ["StoryInput", "read_story"]


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
        return path.read_text(encoding="utf-8")
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


def read_story(path: Path, *, title: str | None = None, story_id: str | None = None) -> StoryInput:
    """Read *path* into a :class:`StoryInput`.

    Raises:
        InputValidationError: The file is missing, unreadable, not UTF-8, empty, or has a
            title line and no script.
    """
    text = _read_text(path).lstrip("\ufeff")
    if not text.strip():
        raise InputValidationError(f"story file {str(path)!r} is empty")
    if title is None:
        first, _, rest = text.strip().partition("\n")
        title, script = first.strip(), rest.strip()
        if not script:
            raise InputValidationError(
                f"story file {str(path)!r} has a title line ({title!r}) but no script after it"
            )
    else:
        script = text.strip()
    if not title.strip():
        raise InputValidationError("--title must not be empty")
    return StoryInput(
        story_id=story_id if story_id is not None else path.stem, title=title, script=script
    )
