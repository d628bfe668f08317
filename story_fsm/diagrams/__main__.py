"""``python -m story_fsm.diagrams [OUTDIR]``: regenerate the workflow's diagram files."""

from __future__ import annotations

from story_fsm.diagrams._files import main

if __name__ == "__main__":
    raise SystemExit(main())
