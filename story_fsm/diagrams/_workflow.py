"""The workflow's own diagram, drawn by ``transitions`` from the engine's machine definition.

``transitions``' ``GraphMachine`` is built from the same :func:`~story_fsm.machine.machine_kwargs`
the engine uses, with only the transition list swapped for the drawable part of the table (the
``edges=`` argument lets a test draw a changed table). Its Mermaid and Graphviz engines do the
rendering; this module adds what they do not draw: the terminal markers and a note naming the
record-only triggers that are left out.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, cast

from transitions.extensions.diagrams import GraphMachine

from story_fsm.diagrams._common import (
    check_format,
    dot_to_svg,
    mermaid_text,
    record_only_triggers,
    tidy,
)
from story_fsm.machine import (
    EDGES,
    TERMINAL_STATES,
    Edge,
    MachineModel,
    machine_kwargs,
    transition_specs,
)
from story_fsm.states import WorkflowState

__all__ = ["TITLE", "drawable_edges", "render_workflow_diagram", "workflow_note"]

#: The diagram's title, in every format.
TITLE = "story_fsm workflow"

_TERMINAL_STYLE = "terminal"


class _Sourced(Protocol):
    """Both engines' graph objects carry their text as ``source``."""

    source: str


class _WorkflowGraphMachine(GraphMachine):
    """A GraphMachine with only the two node looks the diagram uses: plain and terminal."""

    style_attributes: dict[str, Any] = {  # noqa: RUF012 - read-only class data, as upstream
        "node": {
            "default": {
                "style": "rounded,filled",
                "shape": "rectangle",
                "fillcolor": "white",
                "color": "black",
                "peripheries": "1",
            },
            # A double border, as UML draws final states: no stage runs here unless resumed.
            _TERMINAL_STYLE: {"fillcolor": "lightgrey", "color": "black", "peripheries": "2"},
        },
        "edge": {"default": {"color": "black"}},
        "graph": {"default": {"color": "black", "fillcolor": "white", "style": "solid"}},
    }


def drawable_edges(edges: tuple[Edge, ...]) -> tuple[Edge, ...]:
    """Return the edges that change (or re-enter) a state; internal, record-only ones drop out.

    An internal edge (``dest is None``) only writes a row; drawn, it would be a self-loop on
    nearly every state, so the diagram names it in a note instead.
    """
    return tuple(edge for edge in edges if edge.dest is not None)


def workflow_note(edges: tuple[Edge, ...]) -> list[str]:
    """Return the diagram's note, line by line: which record-only triggers are not drawn."""
    hidden = record_only_triggers(edges)
    if not hidden:
        return ["Every transition of the table is drawn."]
    return [
        f"Not drawn: {', '.join(hidden)}",
        "(record-only rows: logged, the state does not change).",
        "resume re-runs a stage whose result was not committed.",
    ]


def _graph(engine: Literal["mermaid", "graphviz"], edges: tuple[Edge, ...], title: str) -> _Sourced:
    kwargs = {**machine_kwargs(), "transitions": transition_specs(drawable_edges(edges))}
    machine = _WorkflowGraphMachine(
        model=MachineModel(),
        initial=WorkflowState.INITIAL,
        show_conditions=True,
        graph_engine=engine,
        title=title,
        **kwargs,
    )
    machine.get_combined_graph(force_new=True)
    # GraphMachine paints the model's current state (INITIAL) as active; a diagram of the
    # whole machine has no current state, so the styles are reset to mark the terminals only.
    styles = machine.model_graphs[id(machine.models[0])]
    styles.reset_styling()
    for state in TERMINAL_STATES:
        styles.set_node_style(state, _TERMINAL_STYLE)
    return cast(_Sourced, machine.get_combined_graph())


def _mermaid(edges: tuple[Edge, ...]) -> str:
    # transitions writes the title as the front matter's only line; given as a YAML key, it
    # becomes Mermaid's diagram title instead of a front matter Mermaid ignores.
    lines = _graph("mermaid", edges, f"title: {TITLE}").source.splitlines()
    lines += [f"  {state.name} --> [*]" for state in TERMINAL_STATES]
    lines.append(f"  note right of {WorkflowState.INITIAL.name}")
    lines += [f"    {mermaid_text(line)}" for line in workflow_note(edges)]
    lines.append("  end note")
    return tidy("\n".join(lines))


def _dot(edges: tuple[Edge, ...]) -> str:
    graph = _graph("graphviz", edges, TITLE)
    digraph = cast(Any, graph)  # a graphviz.Digraph: add the note as a caption under the title
    # graphviz quotes the value but keeps backslash escapes, so "\\n" stays DOT's line break.
    digraph.graph_attr["label"] = "\\n".join([TITLE, *workflow_note(edges)])
    digraph.graph_attr["labelloc"] = "t"
    return tidy(graph.source)


def render_workflow_diagram(fmt: str = "mmd", *, edges: tuple[Edge, ...] = EDGES) -> str:
    """Return the workflow's state diagram as Mermaid (``mmd``), DOT (``dot``) or SVG (``svg``).

    The output depends on the transition table only (no dates, stable order), so the files
    in ``diagrams/`` can be compared with it byte for byte.

    Args:
        fmt: One of ``"mmd"``, ``"dot"``, ``"svg"``.
        edges: The transition table to draw (default: the engine's own, :data:`EDGES`).

    Raises:
        InputValidationError: An unknown *fmt* (also a ``ValueError``).
        StoryFSMError: ``svg`` was asked for and Graphviz's ``dot`` is not installed.
        ModuleNotFoundError: ``dot``/``svg`` need the ``graphviz`` Python package
            (``pip install 'story_fsm[diagrams]'``).

    Example:
        >>> "reviewed [is_publishable]" in render_workflow_diagram("mmd")
        True
    """
    check_format(fmt)
    if fmt == "mmd":
        return _mermaid(edges)
    _require_graphviz_package()
    dot = _dot(edges)
    return dot if fmt == "dot" else dot_to_svg(dot)


def _require_graphviz_package() -> None:
    """Fail clearly: without the package, transitions would quietly draw Mermaid instead."""
    try:
        import graphviz  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "DOT and SVG diagrams need the 'graphviz' Python package: "
            "pip install 'story_fsm[diagrams]' (or pip install graphviz)",
            name="graphviz",
        ) from exc
