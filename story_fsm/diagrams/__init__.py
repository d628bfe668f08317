"""State diagrams drawn from the one machine definition in :mod:`story_fsm.machine`.

Extract, then render, as python-statemachine's ``contrib/diagram`` does:

* :func:`render_workflow_diagram`: the whole machine (``transitions``' ``GraphMachine`` with
  its Mermaid and Graphviz engines), guards on the edges, terminal states double-bordered;
* :func:`render_history_diagram` / :func:`workflow_diagram`: one story's workflow from its
  persisted history, the path taken with counts and the current state highlighted;
* :func:`write_diagrams` / ``python -m story_fsm.diagrams [OUTDIR]``: regenerate the committed
  ``diagrams/story_workflow.{mmd,dot,svg}``.

Formats are ``"mmd"`` (Mermaid), ``"dot"`` (Graphviz DOT) and ``"svg"`` (needs Graphviz's
``dot`` program). Record-only rows (``submit``, ``attempt_failed``) change no state and are
named in a note instead of drawn as self-loops.
"""

from __future__ import annotations

from story_fsm.diagrams._common import FORMATS
from story_fsm.diagrams._files import DEFAULT_OUTDIR, DIAGRAM_NAME, main, write_diagrams
from story_fsm.diagrams._history import render_history_diagram, workflow_diagram
from story_fsm.diagrams._workflow import render_workflow_diagram

__all__ = [
    "DEFAULT_OUTDIR",
    "DIAGRAM_NAME",
    "FORMATS",
    "main",
    "render_history_diagram",
    "render_workflow_diagram",
    "workflow_diagram",
    "write_diagrams",
]
