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

import importlib
import importlib.util
from collections.abc import Sequence

from story_fsm.cli._app import app

__all__ = ["BUILTIN_MODULES", "EXTENSION_MODULES", "load_extensions", "main"]

#: Built-in command modules, in the order ``--help`` lists their commands; importing one
#: registers its commands on ``app``.
BUILTIN_MODULES: tuple[str, ...] = (
    "story_fsm.cli._run",
    "story_fsm.cli._inspect",
    "story_fsm.cli._db",
    "story_fsm.cli._workers",
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


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``story-fsm`` command line (the console script's entry point); exits the process.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    app(args=list(argv) if argv is not None else None, prog_name="story-fsm")


for _name in BUILTIN_MODULES:
    importlib.import_module(_name)
load_extensions()
