"""The machine's graph and its guards, with no database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from transitions import Machine

from story_fsm import InvalidTransitionError, ReviewDecision, Stage, Trigger, WorkflowState
from story_fsm.machine import (
    EDGES,
    MachineModel,
    bound_machine,
    is_publishable,
    under_iteration_cap,
)

S = WorkflowState

#: Binds a model to a machine the way the engine does (``bound_machine``), for one test.
Binder = Callable[[MachineModel, WorkflowState], Machine]


@pytest.fixture
def bind() -> Iterator[Binder]:
    with ExitStack() as stack:
        yield lambda model, state: stack.enter_context(bound_machine(model, state))


class Recorder(MachineModel):
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str | None]] = []
        self.entered: list[str] = []

    def record(self, event: Any) -> None:
        self.rows.append((event.event.name, event.transition.source, event.transition.dest))

    def on_enter_REVIEWING(self, event: Any) -> None:
        self.entered.append("REVIEWING")


class Review:
    def __init__(self, decision: ReviewDecision, score: float) -> None:
        self.decision = decision
        self.quality_score = score


class TestGuards:
    @pytest.mark.parametrize(
        ("decision", "score", "threshold", "expected"),
        [
            (ReviewDecision.PUBLISH, 10, 95, True),
            (ReviewDecision.POLISH, 95, 95, True),
            (ReviewDecision.POLISH, 94.9, 95, False),
            (ReviewDecision.POLISH, 0, 0, True),
        ],
    )
    def test_is_publishable(
        self, decision: ReviewDecision, score: float, threshold: float, expected: bool
    ) -> None:
        """Publishable means a PUBLISH decision or a score at/above the threshold."""
        assert is_publishable(decision, score, threshold) is expected

    @pytest.mark.parametrize(
        ("iteration", "cap", "expected"), [(1, 3, True), (3, 3, False), (1, 1, False)]
    )
    def test_under_iteration_cap(self, iteration: int, cap: int, expected: bool) -> None:
        """Another round is allowed only while the iteration is below the cap."""
        assert under_iteration_cap(iteration, cap) is expected


class TestGraph:
    def test_every_state_is_reachable_from_initial(self) -> None:
        """Following the table's edges from INITIAL reaches every state."""
        seen, frontier = {S.INITIAL}, [S.INITIAL]
        while frontier:
            state = frontier.pop()
            for edge in EDGES:
                if state in edge.sources and edge.dest and edge.dest not in seen:
                    seen.add(edge.dest)
                    frontier.append(edge.dest)
        assert seen == set(S)

    def test_complete_has_no_outgoing_edge(self) -> None:
        """COMPLETE is final: no edge leaves it."""
        assert not [e for e in EDGES if S.COMPLETE in e.sources]

    def test_review_edges_split_on_publishable(self, bind: Binder) -> None:
        """A publishable review goes to COMPLETE, any other to POLISHING."""
        model = Recorder()
        model.quality_threshold = 90
        bind(model, S.REVIEWING)
        model.fire(Trigger.REVIEWED, outcome=Review(ReviewDecision.POLISH, 91))
        assert model.state is S.COMPLETE
        model = Recorder()
        model.quality_threshold = 90
        bind(model, S.REVIEWING)
        model.fire(Trigger.REVIEWED, outcome=Review(ReviewDecision.POLISH, 50))
        assert model.state is S.POLISHING

    @pytest.mark.parametrize(("iteration", "dest"), [(1, S.REVIEWING), (2, S.COMPLETE)])
    def test_polish_edges_split_on_iteration_cap(
        self, bind: Binder, iteration: int, dest: WorkflowState
    ) -> None:
        """After a polish the loop reviews again below the cap, and completes at it."""
        model = Recorder()
        model.max_iterations, model.iteration = 2, iteration
        bind(model, S.POLISHING)
        model.fire(Trigger.POLISHED)
        assert model.state is dest

    @pytest.mark.parametrize(
        ("stage", "dest"), [(Stage.REVIEW, S.REVIEWING), (Stage.POLISH, S.POLISHING)]
    )
    def test_retry_returns_to_the_failed_stage(
        self, bind: Binder, stage: Stage, dest: WorkflowState
    ) -> None:
        """Retrying a FAILED workflow re-enters the stage that failed."""
        model = Recorder()
        model.failed_stage = stage
        bind(model, S.FAILED)
        model.fire(Trigger.RETRY)
        assert model.state is dest

    def test_record_runs_before_the_state_changes(self, bind: Binder) -> None:
        """The record callback sees the old state: a failing write leaves the machine put."""

        class Failing(Recorder):
            def record(self, event: Any) -> None:
                raise RuntimeError("disk full")

        model = Failing()
        bind(model, S.INITIAL)
        with pytest.raises(RuntimeError):
            model.fire(Trigger.START)
        assert model.state is S.INITIAL
        assert model.entered == []

    def test_attempt_failed_is_recorded_without_moving(self, bind: Binder) -> None:
        """attempt_failed is an internal edge: recorded, no exit or enter."""
        model = Recorder()
        bind(model, S.REVIEWING)
        model.fire(Trigger.ATTEMPT_FAILED)
        assert model.state is S.REVIEWING
        assert model.rows == [("attempt_failed", "REVIEWING", None)]
        assert model.entered == []

    def test_resume_re_enters_the_state(self, bind: Binder) -> None:
        """resume is reflexive: it re-runs the state's on-enter (the uncommitted stage)."""
        model = Recorder()
        bind(model, S.REVIEWING)
        model.fire(Trigger.RESUME)
        assert model.entered == ["REVIEWING"]

    def test_invalid_trigger_names_event_and_state(self, bind: Binder) -> None:
        """A trigger the state doesn't accept raises our error naming both."""
        model = Recorder()
        bind(model, S.COMPLETE)
        with pytest.raises(InvalidTransitionError, match="can't start when in COMPLETE"):
            model.fire(Trigger.START)

    def test_no_auto_transitions(self, bind: Binder) -> None:
        """No to_<state>() shortcut exists to bypass the guards and the log."""
        model = Recorder()
        machine = bind(model, S.INITIAL)
        assert not [name for name in machine.events if name.startswith("to_")]
        assert set(machine.events) == {trigger.value for trigger in Trigger}

    def test_queued_callbacks_do_not_recurse(self, bind: Binder) -> None:
        """A trigger fired inside on-enter runs after the callback returns (queued)."""
        order: list[str] = []

        class Chain(Recorder):
            def on_enter_REVIEWING(self, event: Any) -> None:
                order.append("enter-start")
                self.fire(Trigger.REVIEWED, outcome=Review(ReviewDecision.PUBLISH, 99))
                order.append("enter-end")

            def record(self, event: Any) -> None:
                order.append(f"record-{event.event.name}")

        model = Chain()
        bind(model, S.INITIAL)
        model.fire(Trigger.START)
        assert order == ["record-start", "enter-start", "enter-end", "record-reviewed"]
        assert model.state is S.COMPLETE
