"""Where output goes: data on stdout, progress and errors on stderr.

Consoles are built per command (cheap), so they follow whatever ``sys.stdout`` and
``sys.stderr`` are at the time (a pipe, a terminal, a test runner's buffer). Rich emits colour
and cursor movement only to a terminal; for a pipe or a CI log it writes plain text, and tables
are not wrapped to 80 columns since no terminal width applies.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
from typing import IO, Any, cast

from rich.console import Console

__all__ = [
    "PIPE_WIDTH",
    "OutputError",
    "StdoutClosed",
    "check_stdout_reader",
    "json_text",
    "print_json",
    "shown",
    "stderr_console",
    "stderr_lost",
    "stdout_console",
    "write_stderr",
    "write_stdout",
]

#: Line width for tables written to a pipe or a file (no terminal to fit); COLUMNS overrides.
PIPE_WIDTH = 200


#: The C0 and C1 control characters but tab and newline, each as its ``\xHH`` escape.
_CONTROLS = {
    code: f"\\x{code:02x}"
    for code in (*range(0x20), *range(0x7F, 0xA0))
    if code not in (0x09, 0x0A)
}


def shown(text: str) -> str:
    r"""*text* safe to print to a terminal: control characters shown as ``\xHH``.

    Titles come from a model and error texts from a server: an escape sequence in one
    (``\x1b[2J``) would act on the operator's terminal if printed raw. Story ids are refused
    such characters when stored; these texts are kept as they are and escaped on the way out.

    >>> shown("Evil \x1b[31mRED")
    'Evil \\x1b[31mRED'
    """
    return text.translate(_CONTROLS)


class OutputError(Exception):
    """stdout refused the command's data (a full disk, an encoding without its characters)."""


class StdoutClosed(OutputError):
    """The reader of stdout went away (``story-fsm history s | head``): ends quietly."""


def _to_devnull(stream: Any) -> None:
    # Python flushes stdout and stderr again at exit and would fail on the same error (an
    # "Exception ignored" note, exit code 120): what is left goes to /dev/null instead
    # (Python's documented remedy).
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


def _refused(exc: OSError) -> OutputError:
    _to_devnull(sys.stdout)
    if isinstance(exc, BrokenPipeError):
        return StdoutClosed("stdout was closed by its reader")
    return OutputError(f"cannot write the output to stdout ({exc.strerror or exc})")


def _unencodable(exc: UnicodeEncodeError) -> OutputError:
    # Nothing of the refused text was buffered (it is encoded before), so unlike a refused
    # write there is nothing for the exit flush to fail on.
    return OutputError(
        f"stdout's encoding ({exc.encoding}) cannot write {exc.object[exc.start : exc.end]!r}; "
        "set PYTHONIOENCODING=utf-8 (or a UTF-8 locale) to print it"
    )


class _GuardedStdout:
    """``sys.stdout`` whose write errors are :class:`OutputError`.

    Rich would end a closed pipe itself, with exit code 1, which the command line gives to a
    failed workflow; the error boundary gives it 141 instead, as a shell does a tool that
    SIGPIPE ended. A stdout whose encoding lacks a character of the text (ASCII, a legacy
    locale's code page) is an :class:`OutputError` too, not a traceback.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise _refused(exc) from exc
        except UnicodeEncodeError as exc:
            raise _unencodable(exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise _refused(exc) from exc

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding ...: the stream's own
        return getattr(self._stream, name)


def check_stdout_reader() -> None:
    """Raise :class:`StdoutClosed` if stdout is a pipe whose reader went away.

    A write finds that out by itself; a command that waits between its writes (``history
    --follow``) looks while it waits, as ``tail -f`` does, so ``| head -1`` does not keep it
    waiting for a next record that may be hours away. A file never counts as gone, nor does
    anything on a platform without ``poll``; a terminal only once it hung up.
    """
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # an error or a hang-up is reported unasked
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):  # no poll, no file descriptor, closed
        return
    if any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events):
        raise _refused(BrokenPipeError())


def stderr_lost(stream: Any) -> None:
    """*stream* (stderr) refused a write: send what follows on its file to /dev/null.

    stderr carries diagnostics (progress, logs, the error line), never the command's data: a
    stderr that cannot take them (``2>>log`` on a full disk) must not fail a paid run or turn
    an error line into a traceback. The command goes on and exits as it would have; its exit
    code still says how it ended.
    """
    _to_devnull(stream)


class _ForgivingStderr:
    """``sys.stderr`` (as it was when the console was built) whose write errors are dropped."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            stderr_lost(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            stderr_lost(self._stream)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding ...: the stream's own
        return getattr(self._stream, name)


def write_stderr(text: str) -> None:
    """Write *text* to the current stderr and flush it; a refused write is dropped."""
    err = _ForgivingStderr(sys.stderr)
    err.write(text)
    err.flush()


def _console(*, stderr: bool) -> Console:
    # markup off: titles, scripts and error texts are printed as they are, never parsed.
    # A proxy rather than an io class: it passes every other attribute to the stream as it is.
    file = cast(IO[str], _ForgivingStderr(sys.stderr) if stderr else _GuardedStdout(sys.stdout))
    console = Console(file=file, stderr=stderr, markup=False, highlight=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def stdout_console() -> Console:
    """Return a console on the current stdout (the command's data)."""
    return _console(stderr=False)


def stderr_console() -> Console:
    """Return a console on the current stderr (progress, notes)."""
    return _console(stderr=True)


def json_text(data: Any) -> str:
    """*data* as the command line prints JSON: indented, non-ASCII kept, a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def print_json(data: Any) -> None:
    """Write *data* to stdout as indented JSON, and nothing else."""
    write_stdout(json_text(data))


def write_stdout(text: str) -> None:
    """Write *text* to stdout as it is and flush it (:class:`OutputError` if refused)."""
    out = _GuardedStdout(sys.stdout)
    out.write(text)
    out.flush()
