"""Assembling the command line: the built-in commands, optional extension modules, ``main()``.

Registering more commands from another module::

    # story_fsm/cli/_workers.py
    from story_fsm.cli._app import app

    @app.command()
    def worker(...) -> None:
        \"\"\"Claim and run submitted workflows.\"\"\"

then add the module's name to :data:`BUILTIN_MODULES` (or :data:`EXTENSION_MODULES`). A
listed module that does not exist is skipped; one that fails to import fails loudly. Errors
raised by any command go through the same exit-code mapping (``_errors.py``).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import importlib.util
import io
import logging
import os
import sys
from collections.abc import Sequence

from story_fsm._executor import default_executor
from story_fsm.cli._app import app

__all__ = ["BUILTIN_MODULES", "EXTENSION_MODULES", "load_extensions", "main"]

#: Built-in command modules, in the order ``--help`` lists their commands; importing one
#: registers its commands on ``app``.
BUILTIN_MODULES: tuple[str, ...] = (
    "story_fsm.cli._run",
    "story_fsm.cli._inspect",
    "story_fsm.cli._db",
    "story_fsm.cli._workers",
    "story_fsm.cli._cleanup",
)

#: Modules that add commands when they exist (``submit``, ``worker``, ``retry``, ...).
EXTENSION_MODULES: tuple[str, ...] = ()


def load_extensions(names: Sequence[str] = EXTENSION_MODULES) -> list[str]:
    """Import each module of *names* that exists; return the names imported."""
    loaded = []
    for name in names:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
            loaded.append(name)
    return loaded


class _ClosedStdout(io.TextIOBase):
    """Stands in for a stdout closed at launch: every write is refused, as by a closed file."""

    def write(self, text: str) -> int:
        """Refuse *text* (``EBADF``): the command line reports it as an unwritable stdout."""
        raise OSError(errno.EBADF, "stdout is closed")

    def flush(self) -> None:
        """Nothing is held back, so nothing fails at exit."""


def _stand_in_for_closed_streams() -> None:
    """Give Python's streams that a closed descriptor left None (``>&-``, ``2>&-``) a stand-in.

    A stderr closed at launch takes nothing, as one that refuses writes: the diagnostics go to
    /dev/null, never the run. A stdout closed at launch refuses the command's data as any
    unwritable stdout does (one error line, exit 5), after the work is done. A stdin closed at
    launch is an empty one, which is no terminal to confirm on.
    """
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - the process's own
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - the process's own
    if sys.stdout is None:
        sys.stdout = _ClosedStdout()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``story-fsm`` command line (the console script's entry point); exits the process.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    _stand_in_for_closed_streams()
    try:
        app(args=list(argv) if argv is not None else None, prog_name="story-fsm")
    except SystemExit as done:
        code = done.code
    else:  # pragma: no cover - click's standalone mode always exits
        code = 0
    if default_executor().busy():
        _exit_now(code)
    raise SystemExit(code)


def _exit_now(code: object) -> None:
    """End the process at once, with *code*, after flushing what it wrote.

    A stage thread still in a call (left by Ctrl-C or a timeout) is a daemon, but the
    interpreter's shutdown stops daemon threads where they are: one caught in native code
    (the offline reviewer's regex engine, a TLS read) can abort the process then
    ("terminate called without an active exception", exit 134 instead of 130). Nothing is
    left to write: every committed step is in the database already.
    """
    if isinstance(code, str):  # as SystemExit prints it
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(code if isinstance(code, int) else 0)


for _name in BUILTIN_MODULES:
    importlib.import_module(_name)
load_extensions()
