"""Exit codes, and the one place where an error becomes a line on stderr and a code.

The commands raise; :func:`report` (called by the app's group, see ``_app.py``) decides what
the user reads and which code the process exits with. The table is ordered most specific
first, because several errors share a base class (``SchemaVersionError`` is a ``StoreError``).
"""

from __future__ import annotations

import shlex
import traceback
from enum import IntEnum

from story_fsm.cli._output import OutputError, StdoutClosed, shown, write_stderr
from story_fsm.errors import (
    ConcurrentAdvanceError,
    DatabaseBusyError,
    InputValidationError,
    InvalidTransitionError,
    SchemaVersionError,
    StageFailedError,
    StoreError,
    StoryFSMError,
    WorkflowExistsError,
    WorkflowLeasedError,
    WorkflowNotFoundError,
)

__all__ = [
    "EXIT_CODES_HELP",
    "ExitCode",
    "FollowedWorkflowDeleted",
    "Interrupted",
    "exit_code_for",
    "message_for",
    "positional",
    "report",
    "shell_quote",
]


class ExitCode(IntEnum):
    """What the ``story-fsm`` process exits with."""

    OK = 0
    WORKFLOW_FAILED = 1
    USAGE = 2
    LOST_RACE = 3
    DATABASE = 4
    OUTPUT = 5
    INTERRUPTED = 130
    STDOUT_CLOSED = 141


class Interrupted(Exception):
    """Ctrl-C stopped a command; a running workflow keeps its last committed row.

    Args:
        story_id: The story the command was advancing, if any.
        stored: Whether that story's workflow exists (False: interrupted before it was
            written, so there is nothing to resume).
    """

    def __init__(self, story_id: str | None = None, *, stored: bool = True) -> None:
        self.story_id = story_id
        if story_id is None:
            message = "interrupted"
        elif not stored:
            message = f"interrupted before story {story_id!r} was stored; nothing was written"
        else:
            message = (
                f"interrupted; story {story_id!r} stopped mid-stage and keeps its committed "
                f"steps; run 'story-fsm resume {positional(story_id)}' to continue"
            )
        super().__init__(message)


class FollowedWorkflowDeleted(StoryFSMError):
    """The workflow ``history --follow`` printed was deleted (delete, prune) meanwhile.

    An unknown story id now (exit 2), but the hint of :class:`WorkflowNotFoundError`, to
    start it or check the database URL, would send the user the wrong way.

    Args:
        story_id: The story followed.
    """

    def __init__(self, story_id: str) -> None:
        self.story_id = story_id
        super().__init__(
            f"story {story_id!r} was deleted while it was followed ('story-fsm delete' or "
            "'prune'); a workflow run under that id since then is a new one"
        )


_CODES: tuple[tuple[type[BaseException], ExitCode], ...] = (
    (Interrupted, ExitCode.INTERRUPTED),
    (StdoutClosed, ExitCode.STDOUT_CLOSED),
    (OutputError, ExitCode.OUTPUT),
    (StageFailedError, ExitCode.WORKFLOW_FAILED),
    (ConcurrentAdvanceError, ExitCode.LOST_RACE),
    (WorkflowLeasedError, ExitCode.LOST_RACE),
    (InputValidationError, ExitCode.USAGE),
    (WorkflowNotFoundError, ExitCode.USAGE),
    (FollowedWorkflowDeleted, ExitCode.USAGE),
    (WorkflowExistsError, ExitCode.USAGE),
    (SchemaVersionError, ExitCode.USAGE),
    (InvalidTransitionError, ExitCode.USAGE),
    (StoreError, ExitCode.DATABASE),
    (StoryFSMError, ExitCode.WORKFLOW_FAILED),
)

#: The exit-code table as the ``--help`` epilog shows it.
EXIT_CODES_HELP = (
    "Exit codes: 0 success; "
    "1 the workflow failed (a stage failed on every attempt; resume it once fixed), or "
    "Graphviz could not draw a diagram; "
    "2 usage or input error (bad option, missing or empty story file, unknown story id, "
    "story id already started, bad database URL, schema version, retry of a workflow that is "
    "not FAILED, --format svg without Graphviz); "
    "3 another process advanced the workflow first (lost race), or runs the workflow that "
    "delete was asked to remove; "
    "4 the database could not be used (unreachable, locked); "
    "5 the output could not be written to stdout (a full disk, an encoding without its "
    "characters); "
    "130 interrupted (resume the story to continue); "
    "141 stdout was closed by its reader (| head), with no message."
)


def exit_code_for(error: BaseException) -> ExitCode:
    """Return the exit code for *error* (``WORKFLOW_FAILED`` for any other story_fsm error)."""
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return ExitCode.WORKFLOW_FAILED


def shell_quote(text: str) -> str:
    r"""Quote *text* as one shell word that a terminal shows as it is.

    ``shlex.quote`` keeps control characters raw: printed, an escape sequence in a story id
    would act on the terminal. Such text is written in bash's ``$'...'`` form instead.

    >>> print(shell_quote("s-42"), shell_quote("it's"), shell_quote("x\x1b[2J"))
    s-42 'it'"'"'s' $'x\x1b[2J'
    """
    if text.isprintable():
        return shlex.quote(text)
    out = []
    for ch in text:
        if ch in "\\'":
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:  # bash's \\xHH is one byte: only ASCII is a character
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "$'" + "".join(out) + "'"


def positional(story_id: str) -> str:
    """*story_id* quoted as a command's argument: after ``--`` when it starts with a dash.

    >>> print(positional("s-42"), positional("-draft"))
    s-42 -- -draft
    """
    quoted = shell_quote(story_id)
    return f"-- {quoted}" if story_id.startswith("-") else quoted


def _story_option(story_id: str) -> str:
    # "--story-id=-x": with a space, a value that starts with a dash is taken for an option.
    quoted = shell_quote(story_id)
    return f"--story-id={quoted}" if story_id.startswith("-") else f"--story-id {quoted}"


def _resume_hint(story_id: str) -> str:
    return f"run 'story-fsm resume {positional(story_id)}'"


def message_for(error: BaseException) -> str:
    """Return the one line the user reads for *error*, with CLI commands as the next step.

    The library's messages name Python calls (``resume('x')``); here they name commands.
    Line breaks inside a message (a server's multi-line answer) are folded into spaces, and
    other control characters shown escaped.
    """
    return shown(" ".join(_message(error).split())) or type(error).__name__


def _message(error: BaseException) -> str:
    if isinstance(error, WorkflowExistsError):
        return (
            f"story {error.story_id!r} already has a workflow; {_resume_hint(error.story_id)} "
            "to continue it, or choose another --story-id"
        )
    if isinstance(error, WorkflowNotFoundError):
        return (
            f"no workflow for story {error.story_id!r}; start one with 'story-fsm run FILE "
            f"{_story_option(error.story_id)}', or check --db / STORY_FSM_DATABASE_URL"
        )
    if isinstance(error, ConcurrentAdvanceError):
        detail = f" ({error.detail})" if error.detail else ""
        return (
            f"story {error.story_id!r} was advanced by another process{detail}; see where it "
            f"stands with 'story-fsm status {positional(error.story_id)}'"
        )
    if isinstance(error, DatabaseBusyError):
        return (
            "the SQLite database stayed locked by another process past the busy timeout; "
            "try again, wait longer (add ?timeout=SECONDS to the database URL), or put many "
            "writers on PostgreSQL"
        )
    if isinstance(error, StageFailedError):
        cause = error.__cause__ or (error.result.error if error.result else None)
        because = f" ({cause})" if cause else ""
        return (
            f"story {error.story_id!r}: {error.stage.value} failed after {error.attempts} "
            f"attempt(s){because}; the workflow is FAILED; fix the cause, then "
            f"{_resume_hint(error.story_id)}"
        )
    return str(error)


def report(error: BaseException, *, debug: bool) -> ExitCode:
    """Print *error* to stderr (its traceback first when *debug*) and return its exit code."""
    if debug:
        write_stderr("".join(traceback.format_exception(error)))
    if not isinstance(error, StdoutClosed):  # the reader wanted no more: nothing went wrong
        write_stderr(f"error: {message_for(error)}\n")
    return exit_code_for(error)
