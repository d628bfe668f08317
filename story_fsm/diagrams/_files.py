"""Writing the workflow's diagram files, and the command that regenerates them.

``python -m story_fsm.diagrams [OUTDIR]`` (default ``diagrams/``) rewrites
``story_workflow.mmd``, ``.dot`` and, where Graphviz's ``dot`` is installed, ``.svg``; a
folder it cannot write is one ``error:`` line on stderr and exit 2, a ``dot`` that fails one
line and exit 1. The files are never edited by hand: a test compares the committed ones with
what the code draws.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from story_fsm._log import get_logger
from story_fsm.diagrams._common import SVG_SKIPPED_HINT
from story_fsm.diagrams._workflow import render_workflow_diagram
from story_fsm.errors import StoryFSMError

__all__ = ["DEFAULT_OUTDIR", "DIAGRAM_NAME", "main", "unwritable", "write_diagrams"]

#: Where the committed diagrams live, relative to the repository's top.
DEFAULT_OUTDIR = Path("diagrams")

#: The files' name without the extension: ``story_workflow.mmd`` / ``.dot`` / ``.svg``.
DIAGRAM_NAME = "story_workflow"

#: The formats in the order they are written (the SVG last: it needs Graphviz).
_ORDER = ("mmd", "dot", "svg")


def _write(path: Path, text: str) -> Path:
    # newline="\n": the same bytes on every platform, or the drift test would flag Windows.
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def write_diagrams(outdir: str | Path = DEFAULT_OUTDIR) -> list[Path]:
    """Write the workflow's diagram into *outdir* and return the files written.

    The ``.mmd`` and ``.dot`` files are always written; the ``.svg`` only when Graphviz's
    ``dot`` program is on PATH (otherwise a warning is logged and the SVG is left as it was).
    """
    folder = Path(outdir)
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        _write(folder / f"{DIAGRAM_NAME}.{fmt}", render_workflow_diagram(fmt)) for fmt in _ORDER[:2]
    ]
    if shutil.which("dot") is None:
        get_logger().warning("diagram_svg_skipped", reason=SVG_SKIPPED_HINT)
    else:
        written.append(_write(folder / f"{DIAGRAM_NAME}.svg", render_workflow_diagram("svg")))
    return written


def unwritable(outdir: str | Path, error: OSError) -> str:
    """Say which path of *outdir* could not be written, why, and what was written before it.

    The files are written one by one, so a failure on the ``.dot`` (a folder of that name, a
    full disk) leaves a new ``.mmd`` behind: the message names it, lest it be taken for the old.
    """
    where = Path(outdir) if error.filename is None else Path(error.filename)
    text = f"cannot write the diagrams to {str(where)!r}: {error.strerror or error}"
    files = [Path(outdir) / f"{DIAGRAM_NAME}.{fmt}" for fmt in _ORDER]
    if where in files and (done := files[: files.index(where)]):
        text += f" ({' and '.join(str(path) for path in done)} written)"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Regenerate the diagram files (``python -m story_fsm.diagrams [OUTDIR]``).

    Returns:
        0 once the files are written; 2, after one line on stderr, when *OUTDIR* or a file in
        it cannot be written (a path under a regular file, no permission, a full disk); 1,
        after one line, when Graphviz's ``dot`` failed to draw the SVG (as ``story-fsm
        diagram`` reports it).
    """
    parser = argparse.ArgumentParser(
        prog="python -m story_fsm.diagrams",
        description="Regenerate the workflow's state diagram (.mmd, .dot, .svg).",
    )
    parser.add_argument(
        "outdir", nargs="?", default=str(DEFAULT_OUTDIR), help="folder (default: diagrams/)"
    )
    outdir = Path(parser.parse_args(argv).outdir)
    try:
        written = write_diagrams(outdir)
    except OSError as exc:
        # As ``story-fsm diagram --output-dir`` reports it: one line and exit 2, naming the
        # path that failed (the folder, or a file in it that a folder's name holds).
        print(f"error: {unwritable(outdir, exc)}", file=sys.stderr)
        return 2
    except StoryFSMError as exc:  # Graphviz's dot failed; the .mmd and .dot went first
        print(
            f"error: {exc}; {outdir / DIAGRAM_NAME}.mmd and .dot were written, the .svg was not",
            file=sys.stderr,
        )
        return 1
    for path in written:
        print(f"wrote {path}")
    if not any(path.suffix == ".svg" for path in written):
        print(f"skipped {outdir / DIAGRAM_NAME}.svg: {SVG_SKIPPED_HINT}", file=sys.stderr)
    return 0
