"""Where output goes: data on stdout, progress and errors on stderr.

Consoles are built per command (cheap), so they follow whatever ``sys.stdout`` and
``sys.stderr`` are at the time (a pipe, a terminal, a test runner's buffer). Rich emits colour
and cursor movement only to a terminal; for a pipe or a CI log it writes plain text, and tables
are not wrapped to 80 columns since no terminal width applies.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console

__all__ = ["PIPE_WIDTH", "print_json", "shown", "stderr_console", "stdout_console"]

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


def _console(*, stderr: bool) -> Console:
    # markup off: titles, scripts and error texts are printed as they are, never parsed.
    console = Console(stderr=stderr, markup=False, highlight=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


def stdout_console() -> Console:
    """Return a console on the current stdout (the command's data)."""
    return _console(stderr=False)


def stderr_console() -> Console:
    """Return a console on the current stderr (progress, notes)."""
    return _console(stderr=True)


def print_json(data: Any) -> None:
    """Write *data* to stdout as indented JSON, and nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
