"""The workflow's state machine: the transition table as data, and its named guards.

This is the only module that builds a ``transitions`` machine for the engine, so the engine, the
diagrams and the docs all read one definition. The table is plain data (:data:`EDGES`); the
guards are pure functions of data (:func:`is_publishable`, :func:`under_iteration_cap`) wrapped
by :class:`MachineModel`'s methods, whose *names* are what ``transitions`` (and the diagrams)
show on the edges.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from transitions import EventData, Machine, MachineError

from story_fsm._executor import RunAbandoned
from story_fsm.errors import InvalidTransitionError
from story_fsm.states import ReviewDecision, Stage, Trigger, WorkflowState

__all__ = [
    "EDGES",
    "ON_ENTER",
    "RECORD_CALLBACK",
    "Edge",
    "MachineModel",
    "bound_machine",
    "is_publishable",
    "under_iteration_cap",
]

S = WorkflowState
T = Trigger

#: Name of the model method that ``transitions`` calls before every edge's state change.
#: The engine persists the row there, so a failed write leaves the machine where it was.
RECORD_CALLBACK = "record"


@dataclass(frozen=True, slots=True)
class Edge:
    """One row of the transition table.

    Attributes:
        trigger: The event that fires the edge.
        sources: States the edge leaves from.
        dest: The state it enters; equal to the source for a record that does not move
            (``dest is None`` means *internal*: recorded, no exit/enter callbacks).
        conditions: Guard names that must all be true.
        unless: Guard names that must all be false.
    """

    trigger: Trigger
    sources: tuple[WorkflowState, ...]
    dest: WorkflowState | None
    conditions: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()


#: The whole loop. Order matters where one trigger has several edges from a state: the first
#: edge whose guards pass wins.
EDGES: tuple[Edge, ...] = (
    Edge(T.SUBMIT, (S.INITIAL,), None),
    Edge(T.START, (S.INITIAL,), S.REVIEWING),
    Edge(T.REVIEWED, (S.REVIEWING,), S.COMPLETE, conditions=("is_publishable",)),
    Edge(T.REVIEWED, (S.REVIEWING,), S.POLISHING, unless=("is_publishable",)),
    Edge(T.POLISHED, (S.POLISHING,), S.REVIEWING, conditions=("under_iteration_cap",)),
    Edge(T.POLISHED, (S.POLISHING,), S.COMPLETE, unless=("under_iteration_cap",)),
    Edge(T.ATTEMPT_FAILED, (S.REVIEWING, S.POLISHING), None),
    Edge(T.FAIL, (S.REVIEWING, S.POLISHING), S.FAILED),
    Edge(T.RETRY, (S.FAILED,), S.REVIEWING, conditions=("failed_in_review",)),
    Edge(T.RETRY, (S.FAILED,), S.POLISHING, conditions=("failed_in_polish",)),
    # Reflexive: re-entering the state re-runs its stage (its result was never committed).
    Edge(T.RESUME, (S.REVIEWING,), S.REVIEWING),
    Edge(T.RESUME, (S.POLISHING,), S.POLISHING),
)

TERMINAL_STATES: tuple[WorkflowState, ...] = (S.COMPLETE, S.FAILED)

#: The on-enter callback of each state that runs a stage, by model method name. Declared here,
#: with the table, rather than discovered on the model, so one machine serves every run.
ON_ENTER: dict[WorkflowState, str] = {
    S.REVIEWING: "on_enter_REVIEWING",
    S.POLISHING: "on_enter_POLISHING",
}


def is_publishable(decision: ReviewDecision, quality_score: float, threshold: float) -> bool:
    """Return True when a review lets the story go out: its decision, or a high enough score.

    >>> is_publishable(ReviewDecision.POLISH, 96, 95)
    True
    """
    return decision is ReviewDecision.PUBLISH or quality_score >= threshold


def under_iteration_cap(iteration: int, max_iterations: int) -> bool:
    """Return True while another review → polish round is allowed after *iteration*."""
    return iteration < max_iterations


class ReviewLike(Protocol):
    """What the publishable guard reads from a review outcome."""

    @property
    def decision(self) -> ReviewDecision: ...

    @property
    def quality_score(self) -> float: ...


class MachineModel:
    """The guards, as methods named in :data:`EDGES`, reading the model's own fields.

    Subclasses (the engine's run) supply the callbacks ``record`` and ``on_enter_<STATE>``
    (:data:`ON_ENTER`). A model is bound to a machine by :func:`bound_machine` and moved only
    through :meth:`fire`.
    """

    state: WorkflowState
    machine: Machine | None = None
    iteration: int = 1
    max_iterations: int = 1
    quality_threshold: float = 100.0
    failed_stage: Stage | None = None

    def is_publishable(self, event: EventData) -> bool:
        """Guard of ``reviewed``: the review passed as ``outcome=`` allows publishing."""
        outcome: ReviewLike = event.kwargs["outcome"]
        return is_publishable(outcome.decision, outcome.quality_score, self.quality_threshold)

    def under_iteration_cap(self, event: EventData) -> bool:
        """Guard of ``polished``: another round is allowed after this iteration."""
        return under_iteration_cap(self.iteration, self.max_iterations)

    def failed_in_review(self, event: EventData) -> bool:
        """Guard of ``retry``: the failed stage was the review."""
        return self.failed_stage is Stage.REVIEW

    def failed_in_polish(self, event: EventData) -> bool:
        """Guard of ``retry``: the failed stage was the polish."""
        return self.failed_stage is Stage.POLISH

    def record(self, event: EventData) -> None:
        """Persist the edge about to be taken; the engine overrides this."""

    def on_enter_REVIEWING(self, event: EventData) -> None:
        """Run the review stage on entering REVIEWING; the engine overrides this."""

    def on_enter_POLISHING(self, event: EventData) -> None:
        """Run the polish stage on entering POLISHING; the engine overrides this."""

    def fire(self, trigger: Trigger, **kwargs: Any) -> None:
        """Fire *trigger* on the bound machine, translating ``MachineError`` into ours."""
        if self.machine is None:
            raise RuntimeError("the model is not bound to a machine")  # a programming error
        try:
            # ``_value_``: a plain attribute; ``.value`` is a descriptor call (once per edge).
            self.machine.events[trigger._value_].trigger(self, **kwargs)
        except MachineError as exc:
            raise InvalidTransitionError(
                f"can't {trigger.value} when in {self.state.name}: {exc.value}"
            ) from exc


def transition_specs(edges: tuple[Edge, ...] = EDGES) -> list[dict[str, Any]]:
    """Return the table in the dict form ``transitions`` takes (used by the diagrams too)."""
    specs: list[dict[str, Any]] = []
    for edge in edges:
        spec: dict[str, Any] = {
            "trigger": edge.trigger.value,
            "source": list(edge.sources),
            "dest": edge.dest,
        }
        if edge.conditions:
            spec["conditions"] = list(edge.conditions)
        if edge.unless:
            spec["unless"] = list(edge.unless)
        specs.append(spec)
    return specs


def machine_kwargs() -> dict[str, Any]:
    """Return the options every machine of the workflow is built with.

    ``queued=True`` so a callback that fires the next trigger returns before it runs (no
    recursion through review → polish → review); ``auto_transitions=False`` so no
    ``to_<state>()`` shortcut can bypass the guards and the persisted log.
    """
    return {
        "states": [
            {"name": state, "on_enter": [ON_ENTER[state]]} if state in ON_ENTER else state
            for state in WorkflowState
        ],
        "transitions": [dict(spec) for spec in _SPECS],
        "auto_transitions": False,
        "queued": True,
        "send_event": True,
        "before_state_change": RECORD_CALLBACK,
        "ignore_invalid_triggers": False,
    }


#: The table in ``transitions``' form, converted once (every run builds a machine from it).
_SPECS = tuple(transition_specs())


def new_machine() -> Machine:
    """Return a machine of the workflow with no model attached.

    Models are not added to it (``add_model`` would bind a method per trigger and state on
    every run): a bound model is moved with ``machine.events[trigger].trigger(model)``, which
    needs only the model's ``state`` attribute and the callbacks named in the definition.
    """
    return Machine(model=None, initial=WorkflowState.INITIAL, **machine_kwargs())


class _Idle(threading.local):
    """Each thread's machines not in use.

    A machine's event queue is not thread-safe, and a run nested in another's callback (same
    thread) must not share its queue: so a run takes a free machine of its own thread, or
    builds one.
    """

    def __init__(self) -> None:
        self.machines: list[Machine] = []


_idle = _Idle()


@contextmanager
def bound_machine(model: MachineModel, initial: WorkflowState) -> Iterator[Machine]:
    """Bind *model* at *initial* to a machine reused by this thread's runs, for one run.

    Building a ``transitions`` machine costs more than a whole transition's bookkeeping, and
    the definition never changes: runs of one thread take turns on the same machines.
    """
    idle = _idle.machines
    machine = idle.pop() if idle else new_machine()
    model.state, model.machine = initial, machine
    abandoned = False
    try:
        yield machine
    except RunAbandoned:
        # A timed-out attempt's thread: the model is bound to another thread's machine now.
        abandoned = True
        raise
    finally:
        if not abandoned:
            model.machine = None
        # The queue is empty after a trigger returns or raises (transitions clears it on an
        # exception), so the machine is as new for the next run.
        idle.append(machine)
