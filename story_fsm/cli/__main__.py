"""``python -m story_fsm.cli``: the same as the ``story-fsm`` console script."""

from __future__ import annotations

from story_fsm.cli import main

main()
