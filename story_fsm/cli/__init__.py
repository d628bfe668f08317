"""The ``story-fsm`` command line: a thin shell over story_fsm's library API.

``app`` is the typer application (``story_fsm.cli.app``); ``main()`` runs it. Commands are
registered by importing their modules (``_run``, ``_inspect``, ``_db``, and any listed in
``_main.EXTENSION_MODULES``); see ``_main.py`` for how another module adds commands.
"""

from __future__ import annotations

from story_fsm.cli._app import app
from story_fsm.cli._errors import ExitCode
from story_fsm.cli._main import EXTENSION_MODULES, load_extensions, main

__all__ = ["EXTENSION_MODULES", "ExitCode", "app", "load_extensions", "main"]
