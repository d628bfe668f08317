"""One workflow's diagram, from its persisted history: the path it took and where it stands.

Built from plain data rather than a ``GraphMachine``: the machine's edges (the same table the
engine runs, with the same ``trigger [guard]`` labels) are annotated with how often the
history took each one, then written as Mermaid or DOT. The current state is the last row's
``dest``. DOT (and so SVG) draws the edges never taken faint; Mermaid cannot style a single
edge of a state diagram, so it leaves them out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from story_fsm.diagrams._common import (
    check_format,
    dot_quote,
    dot_to_svg,
    guard_label,
    mermaid_text,
    tidy,
)
from story_fsm.errors import InputValidationError
from story_fsm.machine import EDGES, TERMINAL_STATES, Edge
from story_fsm.models import TransitionRecord
from story_fsm.states import Trigger, WorkflowState
from story_fsm.store.sql import WorkflowStateManager

__all__ = ["render_history_diagram", "workflow_diagram"]

_Key = tuple[Trigger, WorkflowState, WorkflowState]

_MERMAID_CLASSES = {
    "current": "fill:darksalmon,stroke:red,stroke-width:3px",
    "visited": "fill:azure,stroke:blue",
    "unvisited": "fill:white,stroke:lightgrey,color:grey",
}
_DOT_NODE = {
    "current": 'color=red fillcolor=darksalmon penwidth=2 style="rounded,filled,bold"',
    "visited": "color=blue fillcolor=azure",
    "unvisited": "color=lightgrey fontcolor=grey",
}
_DOT_TAKEN = "color=blue fontcolor=blue penwidth=2"
_DOT_NOT_TAKEN = "color=lightgrey fontcolor=lightgrey style=dashed"


@dataclass(frozen=True, slots=True)
class _DrawnEdge:
    """One edge from one source, and how many rows of the history took it."""

    trigger: Trigger
    source: WorkflowState
    dest: WorkflowState
    guard: str = ""
    count: int = 0

    @property
    def label(self) -> str:
        """``trigger [guard]``, with ``×n`` when the edge was taken more than once."""
        text = f"{self.trigger.value} [{self.guard}]" if self.guard else self.trigger.value
        return f"{text} ×{self.count}" if self.count > 1 else text


@dataclass(frozen=True, slots=True)
class _View:
    """Everything the two writers need, decided once."""

    title: str
    current: WorkflowState
    visited: frozenset[WorkflowState]
    edges: tuple[_DrawnEdge, ...]
    note: tuple[str, ...]

    def look(self, state: WorkflowState) -> str:
        """Return the node's look: ``current``, ``visited`` or ``unvisited``."""
        if state is self.current:
            return "current"
        return "visited" if state in self.visited else "unvisited"

    def label(self, state: WorkflowState) -> str:
        """Return the node's text; the current state says so in words, not only in colour."""
        return f"{state.name}\n(current)" if state is self.current else state.name


def _drawn_edges(records: Sequence[TransitionRecord], edges: tuple[Edge, ...]) -> list[_DrawnEdge]:
    taken: Counter[_Key] = Counter(
        (rec.trigger, rec.source, rec.dest) for rec in records if rec.is_state_change
    )
    drawn: list[_DrawnEdge] = []
    for edge in edges:
        for source in edge.sources:
            if edge.dest is not None:
                key = (edge.trigger, source, edge.dest)
                drawn.append(_DrawnEdge(*key, guard_label(edge), taken.pop(key, 0)))
    # A row with no edge in the table (written by another version of the engine) is still
    # drawn: the diagram shows what happened, not what the table allows.
    drawn += [_DrawnEdge(*key, count=n) for key, n in taken.items()]
    return drawn


def _note(records: Sequence[TransitionRecord]) -> tuple[str, ...]:
    last = records[-1]
    where = f"seq {last.seq}, iteration {last.iteration}"
    lines = [f"{len(records)} rows; now {last.dest.name} ({where})"]
    hidden = Counter(rec.trigger.value for rec in records if not rec.is_state_change)
    if hidden:
        counts = ", ".join(f"{name} ×{n}" for name, n in hidden.items())
        lines.append(f"Not drawn (record-only rows): {counts}")
    return tuple(lines)


def _view(records: Sequence[TransitionRecord], title: str, edges: tuple[Edge, ...]) -> _View:
    if not records:
        raise InputValidationError("a workflow's diagram needs at least one history record")
    visited = {rec.source for rec in records} | {rec.dest for rec in records}
    return _View(
        title=title,
        current=records[-1].dest,
        visited=frozenset(visited),
        edges=tuple(_drawn_edges(records, edges)),
        note=_note(records),
    )


def _mermaid(view: _View) -> str:
    # The title goes into the note, not Mermaid's front matter: a title is not entity-decoded
    # there and loses anything that looks like an HTML tag, and a story id is free text.
    lines = ["stateDiagram-v2", "  direction LR"]
    lines += [f"  classDef {name} {css}" for name, css in _MERMAID_CLASSES.items()]
    for state in WorkflowState:
        label = mermaid_text(view.label(state))  # the line break becomes a space
        lines += [f'  state "{label}" as {state.name}', f"  class {state.name} {view.look(state)}"]
    lines.append(f"  [*] --> {WorkflowState.INITIAL.name}")
    lines += [
        f"  {e.source.name} --> {e.dest.name}: {mermaid_text(e.label)}"
        for e in view.edges
        if e.count
    ]
    lines += [f"  {state.name} --> [*]" for state in TERMINAL_STATES]
    lines.append(f"  note right of {WorkflowState.INITIAL.name}")
    lines += [f"    {mermaid_text(line)}" for line in (view.title, *view.note)]
    lines.append("  end note")
    return tidy("\n".join(lines))


def _dot(view: _View) -> str:
    caption = "\n".join([view.title, *view.note])
    lines = [
        f"digraph {dot_quote(view.title)} {{",
        f"\tgraph [label={dot_quote(caption)} labelloc=t rankdir=LR]",
        '\tnode [color=black fillcolor=white shape=rectangle style="rounded,filled"]',
    ]
    for state in WorkflowState:
        border = " peripheries=2" if state in TERMINAL_STATES else ""
        attrs = f"label={dot_quote(view.label(state))} {_DOT_NODE[view.look(state)]}{border}"
        lines.append(f"\t{dot_quote(state.name)} [{attrs}]")
    for e in view.edges:
        style = _DOT_TAKEN if e.count else _DOT_NOT_TAKEN
        ends = f"{dot_quote(e.source.name)} -> {dot_quote(e.dest.name)}"
        lines.append(f"\t{ends} [label={dot_quote(e.label)} {style}]")
    lines.append("}")
    return tidy("\n".join(lines))


def render_history_diagram(
    records: Sequence[TransitionRecord],
    fmt: str = "mmd",
    *,
    title: str = "story_fsm workflow",
    edges: tuple[Edge, ...] = EDGES,
) -> str:
    r"""Draw one workflow from its history: the path taken, and its current state highlighted.

    Every state of the machine is drawn; the current one (the last record's ``dest``) is
    highlighted and labelled ``(current)``. Each edge the history took is labelled
    ``trigger [guard]`` plus ``×n`` when taken n > 1 times (the review → polish loop). Edges
    never taken are faint in DOT/SVG and left out of Mermaid. Record-only rows (``submit``,
    ``attempt_failed``) are counted in the note instead of drawn.

    Args:
        records: The story's history, oldest first (:meth:`WorkflowStateManager.history`).
        fmt: One of ``"mmd"``, ``"dot"``, ``"svg"``.
        title: The diagram's title (free text; escaped for each format, its control
            characters shown as escapes such as ``\x1b``).
        edges: The transition table whose edges and guard labels are drawn.

    Raises:
        InputValidationError: An unknown *fmt*, or no records (also a ``ValueError``).
        StoryFSMError: ``svg`` was asked for and Graphviz's ``dot`` is not installed.
    """
    check_format(fmt)
    view = _view(records, title, edges)
    if fmt == "mmd":
        return _mermaid(view)
    dot = _dot(view)
    return dot if fmt == "dot" else dot_to_svg(dot)


def workflow_diagram(store: WorkflowStateManager, story_id: str, fmt: str = "mmd") -> str:
    """Draw *story_id*'s workflow from the history in *store* (see :func:`render_history_diagram`).

    Raises:
        WorkflowNotFoundError: The story has no workflow.
        InputValidationError: An unknown *fmt*.
        StoryFSMError: ``svg`` was asked for and Graphviz's ``dot`` is not installed.
    """
    check_format(fmt)  # before reading the history: a typo should not cost a query
    return render_history_diagram(store.history(story_id), fmt, title=f"story {story_id}")
