"""The orchestrator over real stores (a SQLite file and a PostgreSQL schema)."""

from __future__ import annotations

import _thread
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from story_fsm import (
    Event,
    InputValidationError,
    InvalidStageOutputError,
    StageFailedError,
    StageTimeoutError,
    StoryWorkflowOrchestrator,
    Trigger,
    WorkflowConfig,
    WorkflowExistsError,
    WorkflowNotFoundError,
    WorkflowResult,
    WorkflowState,
    WorkflowStateManager,
    stage_time_left,
)
from story_fsm._executor import StageExecutor
from tests.stages import ScriptedPolisher, ScriptedReviewer, review

AUDIENCE = {"age_range": "8-12", "tone": "warm"}


def run(
    store: WorkflowStateManager,
    reviewer: Any,
    polisher: Any,
    config: WorkflowConfig,
    story_id: str = "s-1",
    **kwargs: Any,
) -> WorkflowResult:
    orchestrator = StoryWorkflowOrchestrator(reviewer, polisher, store, config)
    return orchestrator.run_story_workflow(
        story_id, "The Lighthouse", "Once upon a time.", AUDIENCE, "an idea", **kwargs
    )


class TestDesignScenarios:
    def test_publishable_first_draft(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A first review that says publish completes at once, with no polish."""
        reviewer, polisher = ScriptedReviewer(review(97, "publish")), ScriptedPolisher()
        result = run(store, reviewer, polisher, fast_config)
        assert result.state is WorkflowState.COMPLETE and result.succeeded
        assert result.decision == "publish"
        assert (result.total_reviews, result.total_polishes) == (1, 0)
        assert result.quality_scores == [97.0]
        assert result.final_script == result.initial_script == "Once upon a time."
        assert polisher.calls == []

    def test_improves_then_publishes(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """Review 70 → polish → review 85 → polish → review 96 (above threshold) → publish."""
        reviewer = ScriptedReviewer(review(70), review(85), review(96))
        polisher = ScriptedPolisher()
        result = run(store, reviewer, polisher, fast_config)
        assert result.decision == "publish"
        assert result.quality_scores == [70.0, 85.0, 96.0]
        assert (result.initial_quality_score, result.final_quality_score) == (70.0, 96.0)
        assert result.quality_improvement == 26.0
        assert (result.total_reviews, result.total_polishes) == (3, 2)
        assert result.final_title == "The Lighthouse (v2) (v3)"
        assert result.final_script.endswith("[polish 1]\n[polish 2]")
        assert [c["story_version"] for c in reviewer.calls] == ["v1", "v2", "v3"]
        assert reviewer.calls[1]["script"] == "Once upon a time.\n[polish 1]"
        assert [it.iteration_number for it in result.iterations] == [1, 2, 3]
        assert result.iterations[0].polished_title == "The Lighthouse (v2)"
        assert result.iterations[2].polish_data is None
        assert result == store.load_state("s-1")

    def test_the_improvement_is_rounded_like_the_cost(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """62.0 → 88.2 is an improvement of 26.2, not binary floating point's 26.200000000000003."""
        reviewer = ScriptedReviewer(review(62.0), review(88.2, "publish"))
        result = run(store, reviewer, ScriptedPolisher(), fast_config)
        assert 88.2 - 62.0 != 26.2  # the float difference itself is off
        assert result.quality_improvement == 26.2
        assert store.load_state("s-1").quality_improvement == 26.2  # type: ignore[union-attr]

    def test_max_iterations_reached(self, store: WorkflowStateManager) -> None:
        """max_iterations=2 with a reviewer that never publishes: 2 reviews, 2 polishes."""
        config = WorkflowConfig(max_iterations=2, retry_backoff_seconds=0)
        reviewer, polisher = ScriptedReviewer(review(50), review(60)), ScriptedPolisher()
        result = run(store, reviewer, polisher, config)
        assert result.decision == "max_iterations_reached"
        assert (result.total_reviews, result.total_polishes) == (2, 2)
        assert len(reviewer.calls) == 2 and len(polisher.calls) == 2
        assert result.final_script.endswith("[polish 2]")
        assert result == store.load_state("s-1")


class TestStageCalls:
    def test_reviewer_gets_the_pipeline_keywords(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """The reviewer is called with exactly the pipeline's keyword arguments."""
        reviewer = ScriptedReviewer(review(99, "publish"))
        run(store, reviewer, ScriptedPolisher(), fast_config, local_review_summary={"ok": 1})
        assert reviewer.calls == [
            {
                "title": "The Lighthouse",
                "script": "Once upon a time.",
                "audience_context": AUDIENCE,
                "original_idea": "an idea",
                "story_id": "s-1",
                "story_version": "v1",
                "local_review_summary": {"ok": 1},
            }
        ]

    def test_polisher_gets_the_review_as_dict(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """The polisher receives the review dict and the iteration number."""
        first = {**review(40), "notes": ["too long"]}
        polisher = ScriptedPolisher()
        run(store, ScriptedReviewer(first, review(99, "publish")), polisher, fast_config)
        call = polisher.calls[0]
        assert call["expert_review_data"] == first
        assert call["iteration_number"] == 1
        assert set(call) == {
            "story_id",
            "current_title",
            "current_script",
            "expert_review_data",
            "iteration_number",
            "audience_context",
            "original_idea",
        }

    def test_models_are_passed_only_when_set(self, store: WorkflowStateManager) -> None:
        """review_model/polish_model reach the stages as model=; unset, no model is passed."""
        config = WorkflowConfig(review_model="judge-1", polish_model="writer-2", max_iterations=1)
        reviewer, polisher = ScriptedReviewer(review(10)), ScriptedPolisher()
        run(store, reviewer, polisher, config)
        assert reviewer.calls[0]["model"] == "judge-1"
        assert polisher.calls[0]["model"] == "writer-2"
        plain = ScriptedReviewer(review(99, "publish"))
        run(store, plain, ScriptedPolisher(), WorkflowConfig(), story_id="s-2")
        assert "model" not in plain.calls[0]

    def test_costs_and_durations_are_recorded(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """total_cost sums every stage's cost; each stage row carries its duration."""
        reviewer = ScriptedReviewer(
            review(50, cost=0.25), review(99, "publish", cost=0.5), delay=0.01
        )
        result = run(store, reviewer, ScriptedPolisher(), fast_config)
        assert result.total_cost == pytest.approx(0.25 + 0.5 + 0.5)
        stage_rows = [r for r in store.history("s-1") if r.stage is not None]
        assert [r.trigger for r in stage_rows] == [
            Trigger.REVIEWED,
            Trigger.POLISHED,
            Trigger.REVIEWED,
        ]
        assert all(r.duration_seconds is not None and r.duration_seconds > 0 for r in stage_rows)
        assert stage_rows[0].duration_seconds >= 0.01
        assert result.total_duration_seconds >= 0.02

    def test_a_stage_reads_the_time_its_attempt_has_left(self, store: WorkflowStateManager) -> None:
        """stage_time_left() inside a stage call is the attempt's share of stage_timeout_seconds
        (each attempt's own, a retry's too); outside a stage call it is None."""
        seen: list[tuple[str, float | None]] = []

        def failing() -> Any:
            seen.append(("review", stage_time_left()))
            time.sleep(0.2)
            raise ConnectionError("flaky")

        def reviewing() -> Any:
            seen.append(("review", stage_time_left()))
            return review(99, "publish")

        config = WorkflowConfig(stage_timeout_seconds=30, retry_backoff_seconds=0)
        assert stage_time_left() is None
        run(store, ScriptedReviewer(failing, reviewing), ScriptedPolisher(), config)
        assert stage_time_left() is None
        assert [stage for stage, _ in seen] == ["review", "review"]
        lefts = [left for _, left in seen]
        assert all(left is not None and 20 < left <= 30 for left in lefts), lefts
        # The retry's clock started afresh, after the first attempt's 0.2 s were spent.
        assert lefts[1] is not None and lefts[0] is not None and lefts[1] > lefts[0] - 0.2


class TestHistory:
    def test_one_row_per_transition_in_order(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """The history is one linear chain: seq 0..n, each row's source is the last dest."""
        run(
            store,
            ScriptedReviewer(review(50), review(99, "publish")),
            ScriptedPolisher(),
            fast_config,
        )
        records = store.history("s-1")
        assert [r.seq for r in records] == list(range(len(records)))
        assert [(r.trigger, r.source, r.dest) for r in records] == [
            (Trigger.SUBMIT, WorkflowState.INITIAL, WorkflowState.INITIAL),
            (Trigger.START, WorkflowState.INITIAL, WorkflowState.REVIEWING),
            (Trigger.REVIEWED, WorkflowState.REVIEWING, WorkflowState.POLISHING),
            (Trigger.POLISHED, WorkflowState.POLISHING, WorkflowState.REVIEWING),
            (Trigger.REVIEWED, WorkflowState.REVIEWING, WorkflowState.COMPLETE),
        ]
        assert all(a.dest == b.source for a, b in itertools.pairwise(records))
        assert records[2].payload["review"]["quality_score"] == 50

    def test_unchanged_script_is_not_stored_again(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A polish that returns the same script does not store a second copy."""
        same = {"polished_title": "T", "polished_script": "Once upon a time.", "change_log": []}
        run(
            store,
            ScriptedReviewer(review(50), review(99, "publish")),
            ScriptedPolisher(same),
            fast_config,
        )
        polish_row = next(r for r in store.history("s-1") if r.trigger is Trigger.POLISHED)
        assert polish_row.payload["script_unchanged"] is True
        assert "polished_script" not in polish_row.payload["polish"]

    def test_result_round_trips_through_json(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """to_dict() is JSON-serializable and from_dict() rebuilds an equal result."""
        result = run(
            store,
            ScriptedReviewer(review(50), review(99, "publish")),
            ScriptedPolisher(),
            fast_config,
        )
        assert WorkflowResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
        assert store.load_state("s-1") == result

    def test_list_workflows_filters_by_state(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """list_workflows returns summaries, optionally of one state."""
        run(
            store,
            ScriptedReviewer(review(99, "publish")),
            ScriptedPolisher(),
            fast_config,
            story_id="a",
        )
        with pytest.raises(StageFailedError):
            run(
                store,
                ScriptedReviewer(RuntimeError("x")),
                ScriptedPolisher(),
                fast_config,
                story_id="b",
            )
        assert [(s.story_id, s.state) for s in store.list_workflows()] == [
            ("a", WorkflowState.COMPLETE),
            ("b", WorkflowState.FAILED),
        ]
        assert [s.story_id for s in store.list_workflows(WorkflowState.FAILED)] == ["b"]
        assert [s.story_id for s in store.list_workflows("complete")] == ["a"]


class BadObject:
    def to_dict(self) -> str:
        return "not a dict"


class Opaque:
    """An object JSON cannot hold, printed as ``<opaque>``."""

    def __str__(self) -> str:
        return "<opaque>"


class Unprintable:
    """An object whose str() fails; its repr is ``<unprintable>``."""

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        return "<unprintable>"


FAILURES = [
    pytest.param(RuntimeError("API down"), "RuntimeError: API down", id="exception"),
    pytest.param({"decision": "maybe", "quality_score": 50}, "decision", id="unknown-decision"),
    pytest.param({"decision": "polish", "quality_score": 150}, "0-100", id="score-out-of-range"),
    pytest.param({"decision": "polish", "quality_score": float("nan")}, "0-100", id="nan-score"),
    pytest.param(
        {"decision": "polish", "quality_score": "high"}, "not a number", id="score-not-number"
    ),
    pytest.param(None, "returned None", id="none"),
    pytest.param(BadObject(), "did not return a dict", id="bad-to-dict"),
]


class TestFailures:
    @pytest.mark.parametrize(("answer", "error"), FAILURES)
    def test_every_failure_kind_retries_then_fails(
        self, store: WorkflowStateManager, answer: Any, error: str
    ) -> None:
        """Each failure kind is retried max_stage_retries times, recorded, then FAILED."""
        config = WorkflowConfig(max_stage_retries=3, retry_backoff_seconds=0)
        reviewer = ScriptedReviewer(answer)
        events: list[tuple[str, dict[str, Any]]] = []
        with pytest.raises(StageFailedError) as caught:
            run(
                store,
                reviewer,
                ScriptedPolisher(),
                config,
                progress_callback=lambda e, d: events.append((e, d)),
            )
        exc = caught.value
        assert exc.result == store.load_state("s-1")  # what the run knew is what was stored
        assert (exc.stage.value, exc.attempts) == ("review", 3)
        assert exc.result is not None and exc.result.state is WorkflowState.FAILED
        assert not exc.result.succeeded
        assert error in (exc.result.error or "")
        assert exc.__cause__ is not None
        assert len(reviewer.calls) == 3
        records = store.history("s-1")
        failed = [r for r in records if r.trigger is Trigger.ATTEMPT_FAILED]
        assert [(r.attempt, r.source, r.dest) for r in failed] == [
            (1, WorkflowState.REVIEWING, WorkflowState.REVIEWING),
            (2, WorkflowState.REVIEWING, WorkflowState.REVIEWING),
        ]
        assert all(error in (r.error or "") and r.duration_seconds is not None for r in failed)
        last = records[-1]
        assert (last.trigger, last.dest, last.attempt) == (Trigger.FAIL, WorkflowState.FAILED, 3)
        names = [e for e, _ in events]
        assert names.count("stage_retry") == 2 and names[-1] == "workflow_failed"

    def test_polish_without_script_fails_the_polish(self, store: WorkflowStateManager) -> None:
        """A polish missing polished_script fails the POLISH stage after its retries."""
        config = WorkflowConfig(max_stage_retries=2, retry_backoff_seconds=0)
        with pytest.raises(StageFailedError) as caught:
            run(
                store,
                ScriptedReviewer(review(40)),
                ScriptedPolisher({"polished_title": "x"}),
                config,
            )
        assert caught.value.stage.value == "polish"
        assert store.history("s-1")[-1].source is WorkflowState.POLISHING

    @pytest.mark.parametrize(
        "script", ["new\x00script", "new\ud800script"], ids=["nul", "surrogate"]
    )
    def test_an_unstorable_polish_is_a_failed_attempt(
        self, store: WorkflowStateManager, script: str
    ) -> None:
        """A script no database can store fails its attempt; the run ends FAILED, stored.

        Before it was checked, PostgreSQL refused the NUL (StoreError) and the driver could not
        encode the surrogate, in the middle of the transition: no attempt was recorded and
        the story stayed mid-stage, to be paid for again by each resume.
        """
        config = WorkflowConfig(max_stage_retries=2, retry_backoff_seconds=0)
        polisher = ScriptedPolisher(*[{"polished_script": script}] * 2)
        with pytest.raises(StageFailedError) as caught:
            run(store, ScriptedReviewer(review(40)), polisher, config)
        assert caught.value.stage.value == "polish" and caught.value.attempts == 2
        records = store.history("s-1")
        assert [r.trigger for r in records][-2:] == [Trigger.ATTEMPT_FAILED, Trigger.FAIL]
        assert "polished_script contains" in (records[-1].error or "")
        state = store.load_state("s-1")
        assert state is not None and state.state is WorkflowState.FAILED

    def test_an_error_text_no_database_stores_is_escaped(self, store: WorkflowStateManager) -> None:
        """A stage error whose message holds a NUL or a lone surrogate is stored escaped."""
        config = WorkflowConfig(max_stage_retries=1, retry_backoff_seconds=0)
        reviewer = ScriptedReviewer(RuntimeError("bad\x00byte \ud800 here"))
        with pytest.raises(StageFailedError):
            run(store, reviewer, ScriptedPolisher(), config)
        last = store.history("s-1")[-1]
        assert last.trigger is Trigger.FAIL
        assert last.error == "RuntimeError: bad\\x00byte \\ud800 here"

    def test_a_later_attempt_can_succeed(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """Two failures then a good answer: the workflow goes on, failures stay in history."""
        reviewer = ScriptedReviewer(
            RuntimeError("1"), InvalidStageOutputError("2"), review(99, "publish")
        )
        result = run(store, reviewer, ScriptedPolisher(), fast_config)
        assert result.decision == "publish"
        assert result.metadata["failed_attempts"] == 2
        reviewed = next(r for r in store.history("s-1") if r.trigger is Trigger.REVIEWED)
        assert reviewed.attempt == 3

    def test_a_failed_attempt_s_paid_cost_is_counted(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """An unusable but paid answer: its cost is on its row and in the total."""
        reviewer = ScriptedReviewer(
            InvalidStageOutputError("bad", cost=0.125), review(99, "publish")
        )
        result = run(store, reviewer, ScriptedPolisher(), fast_config)
        failed = next(r for r in store.history("s-1") if r.trigger is Trigger.ATTEMPT_FAILED)
        assert failed.cost == 0.125
        assert result.total_cost == pytest.approx(0.125 + 0.25)

    def test_a_paid_answer_the_engine_refuses_keeps_its_cost(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A review scored 150 and a polish with no script, both paid: on their rows and in the total."""
        reviewer = ScriptedReviewer(
            {"decision": "polish", "quality_score": 150, "_meta": {"cost_estimate": 0.5}},
            review(50),
            review(99, "publish"),
        )
        polisher = ScriptedPolisher(
            {"polished_script": "  ", "cost": 0.125},
            {"polished_script": "Better.", "_meta": {"cost_estimate": 0.0625}},
        )
        result = run(store, reviewer, polisher, fast_config)
        assert result.state is WorkflowState.COMPLETE
        failed = [r for r in store.history("s-1") if r.trigger is Trigger.ATTEMPT_FAILED]
        assert [(r.payload["stage"], r.cost) for r in failed] == [
            ("review", 0.5),
            ("polish", 0.125),
        ]
        assert [r.payload["rejected_answer"] for r in failed] == [
            {"decision": "polish", "quality_score": 150, "_meta": {"cost_estimate": 0.5}},
            {"polished_script": "  ", "cost": 0.125},
        ]
        assert result.total_cost == pytest.approx(0.5 + 0.25 + 0.25 + 0.125 + 0.0625)
        assert store.load_row("s-1").summary.total_cost == pytest.approx(result.total_cost)  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("answer", "kept"),
        [
            pytest.param(
                {"decision": "maybe", "quality_score": 50, "notes": ("a", 1)},
                {"decision": "maybe", "quality_score": 50, "notes": ["a", 1]},
                id="mapping-as-stored",
            ),
            pytest.param(
                {"decision": "polish", "quality_score": float("nan")},
                "{'decision': 'polish', 'quality_score': nan}",
                id="no-json-form-so-its-repr",
            ),
            pytest.param("Looks good to me!", "Looks good to me!", id="text"),
            pytest.param(None, None, id="none"),
            pytest.param(BadObject(), None, id="bad-to-dict"),
            pytest.param(RuntimeError("API down"), None, id="an-error-not-an-answer"),
        ],
    )
    def test_a_refused_answer_is_kept_on_its_failed_row(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig, answer: Any, kept: Any
    ) -> None:
        """The audit trail shows what a refused attempt answered, as the read returns it."""
        reviewer = ScriptedReviewer(answer, review(99, "publish"))
        run(store, reviewer, ScriptedPolisher(), fast_config)
        failed = next(r for r in store.history("s-1") if r.trigger is Trigger.ATTEMPT_FAILED)
        assert failed.payload.get("rejected_answer") == kept
        assert ("rejected_answer" in failed.payload) is (kept is not None)

    @pytest.mark.parametrize(
        ("answer", "kept"),
        [
            pytest.param(
                {"notes": ("a", 1), 2: "b"}, {"notes": ["a", 1], "2": "b"}, id="as-stored"
            ),
            pytest.param(Opaque(), "<opaque>", id="an-object-as-its-str"),
            pytest.param([Unprintable()], "[<unprintable>]", id="no-str-so-its-repr"),
            pytest.param({"score": float("nan")}, "{'score': nan}", id="no-json-form-so-its-repr"),
        ],
    )
    def test_a_stage_s_own_refused_answer_is_kept_as_stored(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig, answer: Any, kept: Any
    ) -> None:
        """A stage's InvalidStageOutputError(answer=...) is kept as the row can store it, and
        the run goes on (an answer JSON cannot hold used to fail the failed attempt's write)."""
        reviewer = ScriptedReviewer(
            InvalidStageOutputError("bad", answer=answer), review(99, "publish")
        )
        result = run(store, reviewer, ScriptedPolisher(), fast_config)
        assert result.state is WorkflowState.COMPLETE
        failed = next(r for r in store.history("s-1") if r.trigger is Trigger.ATTEMPT_FAILED)
        assert failed.payload["rejected_answer"] == kept

    @pytest.mark.parametrize(
        "cost",
        [
            float("nan"),
            float("inf"),
            -5.0,
            1e12,
            "abc",
            True,
            pytest.param(10**5000, id="an-int-too-long-for-text"),
        ],
    )
    def test_an_unreadable_cost_of_a_failed_attempt_counts_as_zero(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig, cost: Any
    ) -> None:
        """A bad cost on a failed attempt is logged, stored as none, and the run goes on."""
        reviewer = ScriptedReviewer(
            InvalidStageOutputError("bad", cost=cost), review(99, "publish")
        )
        with capture_logs() as logs:
            result = run(store, reviewer, ScriptedPolisher(), fast_config)
        assert result.state is WorkflowState.COMPLETE
        assert result.total_cost == 0.25
        assert store.load_row("s-1").summary.total_cost == 0.25  # type: ignore[union-attr]
        failed = next(r for r in store.history("s-1") if r.trigger is Trigger.ATTEMPT_FAILED)
        assert failed.cost is None
        assert "stage_cost_unreadable" in [e["event"] for e in logs]
        json.dumps(result.to_dict(), allow_nan=False)

    def test_an_error_whose_str_fails_is_a_failed_attempt(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A stage's exception that cannot be printed is recorded and retried like any other."""

        class Unprintable(Exception):
            def __str__(self) -> str:
                raise ValueError("no text")

        reviewer = ScriptedReviewer(Unprintable(), review(99, "publish"))
        result = run(store, reviewer, ScriptedPolisher(), fast_config)
        assert result.state is WorkflowState.COMPLETE
        failed = next(r for r in store.history("s-1") if r.trigger is Trigger.ATTEMPT_FAILED)
        assert failed.error == "Unprintable: <exception str() failed>"

    def test_an_error_whose_retry_attributes_fail_is_a_failed_attempt(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A stage's exception whose retryable and retry_after_seconds raise when read is
        recorded and retried by the policy alone, on the first attempt and on a later one."""

        class Lazy(Exception):
            @property
            def retryable(self) -> bool:
                raise KeyError("retryable")

            @property
            def retry_after_seconds(self) -> float:
                raise KeyError("retry_after_seconds")

        reviewer = ScriptedReviewer(Lazy("1"), Lazy("2"), review(99, "publish"))
        result = run(store, reviewer, ScriptedPolisher(), fast_config)
        assert result.state is WorkflowState.COMPLETE
        failed = [r for r in store.history("s-1") if r.trigger is Trigger.ATTEMPT_FAILED]
        assert [(r.attempt, r.error) for r in failed] == [(1, "Lazy: 1"), (2, "Lazy: 2")]

    def test_backoff_doubles_between_attempts(self, store: WorkflowStateManager) -> None:
        """The wait before attempt n+1 is backoff × 2^(n-1)."""
        config = WorkflowConfig(max_stage_retries=3, retry_backoff_seconds=0.05)
        reviewer = ScriptedReviewer(RuntimeError("a"), RuntimeError("b"), review(99, "publish"))
        run(store, reviewer, ScriptedPolisher(), config)
        waits = [
            r.payload["next_wait_seconds"]
            for r in store.history("s-1")
            if r.trigger is Trigger.ATTEMPT_FAILED
        ]
        assert waits == [pytest.approx(0.05), pytest.approx(0.10)]

    def test_timeout_discards_a_late_answer(self, store: WorkflowStateManager) -> None:
        """A stage slower than stage_timeout_seconds is a failed attempt; its answer is dropped."""
        config = WorkflowConfig(
            stage_timeout_seconds=0.2, max_stage_retries=2, retry_backoff_seconds=0
        )
        release, answered = threading.Event(), threading.Event()

        def slow() -> dict[str, Any]:
            release.wait(5)
            answered.set()
            return review(99, "publish")

        reviewer = ScriptedReviewer(slow, review(60), review(99, "publish"))
        started = time.monotonic()
        result = run(store, reviewer, ScriptedPolisher(), config)
        assert time.monotonic() - started < 4
        failed = [r for r in store.history("s-1") if r.trigger is Trigger.ATTEMPT_FAILED]
        assert len(failed) == 1 and StageTimeoutError.__name__ in (failed[0].error or "")
        assert result.quality_scores == [60.0, 99.0]
        # The abandoned call answers after the run went on and ended: nothing more is written.
        rows = store.history("s-1")
        release.set()
        assert answered.wait(5)
        time.sleep(0.1)
        assert store.history("s-1") == rows
        assert store.load_state("s-1") == result

    def test_a_timed_out_stage_goes_on_to_complete_on_another_thread(
        self, store: WorkflowStateManager
    ) -> None:
        """After a timeout the rest of the loop (polish, reviews, events) runs to the end."""
        config = WorkflowConfig(
            stage_timeout_seconds=0.2, max_stage_retries=2, retry_backoff_seconds=0
        )
        release = threading.Event()

        def slow_polish() -> dict[str, Any]:
            release.wait(5)
            return {"polished_title": "Late", "polished_script": "late", "change_log": []}

        better = {"polished_title": "Better", "polished_script": "Tighter.", "change_log": ["cut"]}
        polisher = ScriptedPolisher(slow_polish, better)
        events: list[str] = []
        result = run(
            store,
            ScriptedReviewer(review(60), review(99, "publish")),
            polisher,
            config,
            progress_callback=lambda event, data: events.append(event),
        )
        release.set()
        assert result.decision == "publish" and result.quality_scores == [60.0, 99.0]
        assert (result.final_title, result.final_script) == ("Better", "Tighter.")
        assert events.count("stage_retry") == 1 and events[-1] == "workflow_complete"
        triggers = [r.trigger for r in store.history("s-1")]
        assert triggers.count(Trigger.ATTEMPT_FAILED) == 1
        assert triggers[-1] is Trigger.REVIEWED

    @staticmethod
    def _interrupted_run(
        store: WorkflowStateManager, release: threading.Event
    ) -> tuple[StageExecutor, ScriptedPolisher, threading.Event]:
        """Run a story whose first review interrupts the caller (Ctrl-C), then waits."""
        returned = threading.Event()

        def review_then_wait() -> dict[str, Any]:
            try:
                _thread.interrupt_main()  # as a Ctrl-C: KeyboardInterrupt in the caller
                release.wait(10)
                return review(60)
            finally:
                returned.set()

        executor, polisher = StageExecutor(), ScriptedPolisher()
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(review_then_wait), polisher, store, WorkflowConfig(),
            executor=executor,
        )  # fmt: skip
        with pytest.raises(KeyboardInterrupt):
            orchestrator.run_story_workflow("s-1", "T", "Once upon a time.", {})
        return executor, polisher, returned

    def test_an_interrupted_caller_stops_the_run_and_frees_its_lease_at_once(
        self, store: WorkflowStateManager
    ) -> None:
        """Ctrl-C while a stage runs: the lease is free when the caller gets the interrupt,
        the stage's late answer is dropped (as after a timeout), no further stage is called."""
        release = threading.Event()
        try:
            executor, polisher, returned = self._interrupted_run(store, release)
            row = store.load_row("s-1")
            assert row is not None and row.summary.lease_owner is None
            assert row.summary.lease_expires_at is None
        finally:
            release.set()
        assert returned.wait(10)
        deadline = time.monotonic() + 10
        while executor.busy():  # the carrier is past the stage call: let it end
            assert time.monotonic() < deadline, "the carrier did not end"
            time.sleep(0.01)
        row = store.load_row("s-1")
        assert row is not None and row.summary.state is WorkflowState.REVIEWING
        assert row.summary.lease_owner is None
        assert [r.trigger for r in store.history("s-1")] == [Trigger.SUBMIT, Trigger.START]
        assert polisher.calls == []

    def test_an_interrupted_story_can_be_deleted_at_once(self, store: WorkflowStateManager) -> None:
        """Right after Ctrl-C, the story is nobody's: delete does not wait for a lease."""
        release = threading.Event()
        try:
            self._interrupted_run(store, release)
            store.delete_workflow("s-1")
            assert store.load_row("s-1") is None
        finally:
            release.set()

    def test_callback_errors_are_logged_and_ignored(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A progress callback that raises does not fail the workflow; it is logged."""

        def broken(event: str, data: dict[str, Any]) -> None:
            raise ValueError("display crashed")

        with capture_logs() as logs:
            result = run(
                store,
                ScriptedReviewer(review(99, "publish")),
                ScriptedPolisher(),
                fast_config,
                progress_callback=broken,
            )
        assert result.decision == "publish"
        failures = [e for e in logs if e["event"] == "progress_callback_failed"]
        assert failures and all(e["story_id"] == "s-1" for e in failures)

    def test_a_log_sink_that_fails_as_well_does_not_fail_the_workflow(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """The display and the log on one stderr that a full disk refuses: the callback's
        error, then the note of it, both raise; the workflow still completes."""

        def broken(event: str, data: dict[str, Any]) -> None:
            raise OSError(28, "No space left on device")

        refused: list[str] = []

        class RefusingLogger:
            def msg(self, message: str) -> None:
                refused.append(message)
                raise OSError(28, "No space left on device")

            debug = info = warning = error = critical = exception = msg

        structlog.configure(  # the autouse fixture resets it after the test
            processors=[structlog.processors.KeyValueRenderer()],
            logger_factory=lambda *_: RefusingLogger(),
            wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
            cache_logger_on_first_use=False,
        )
        result = run(
            store,
            ScriptedReviewer(review(99, "publish")),
            ScriptedPolisher(),
            fast_config,
            progress_callback=broken,
        )
        assert result.decision == "publish" and result.state is WorkflowState.COMPLETE
        assert refused and all("progress_callback_failed" in line for line in refused)


class TestEvents:
    def test_event_sequence_and_data(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """Events arrive in order with their documented keys, each carrying story_id."""
        events: list[tuple[str, dict[str, Any]]] = []
        run(
            store,
            ScriptedReviewer(review(50), review(99, "publish")),
            ScriptedPolisher(),
            fast_config,
            progress_callback=lambda e, d: events.append((e, d)),
        )
        assert [e for e, _ in events] == [
            "workflow_started",
            "iteration_started",
            "stage_started",
            "review_complete",
            "stage_started",
            "polish_complete",
            "iteration_started",
            "stage_started",
            "review_complete",
            "workflow_complete",
        ]
        assert all(type(e) is Event for e, _ in events)  # the members, as documented
        assert all(d["story_id"] == "s-1" for _, d in events)
        reviews = [d for e, d in events if e == "review_complete"]
        assert [
            (d["iteration"], d["quality_score"], d["decision"], d["attempt"]) for d in reviews
        ] == [
            (1, 50.0, "polish", 1),
            (2, 99.0, "publish", 1),
        ]
        polish = next(d for e, d in events if e == "polish_complete")
        assert (polish["iteration"], polish["changes_count"], polish["attempt"]) == (1, 1, 1)

    def test_logs_bind_story_id(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """Every log line of a run carries the story id; retries carry iteration and stage."""
        with capture_logs() as logs:
            run(
                store,
                ScriptedReviewer(RuntimeError("x"), review(99, "publish")),
                ScriptedPolisher(),
                fast_config,
            )
        assert logs and all(e.get("story_id") == "s-1" for e in logs)
        retry = next(e for e in logs if e["event"] == "stage_retry")
        assert (retry["iteration"], retry["stage"]) == (1, "review")

    @pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
    def test_an_unconfigured_host_gets_lines_through_stdlib_logging(
        self,
        store: WorkflowStateManager,
        fast_config: WorkflowConfig,
        level: int,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """With structlog never configured, a run's lines reach the ``story_fsm`` stdlib
        logger, rendered with their story id, and only at the levels the host lets through."""
        assert not structlog.is_configured()
        caplog.set_level(level, logger="story_fsm")
        run(
            store,
            ScriptedReviewer(RuntimeError("x"), review(99, "publish")),
            ScriptedPolisher(),
            fast_config,
        )
        lines = [r for r in caplog.records if r.name == "story_fsm"]
        events = {r.getMessage().split("event='")[1].split("'")[0] for r in lines}
        assert all("story_id='s-1'" in r.getMessage() for r in lines)
        assert "stage_retry" in events  # a warning: let through at both levels
        assert ("workflow_started" in events) is (level == logging.INFO)
        assert ("workflow_complete" in events) is (level == logging.INFO)


def _read_deep(read: Callable[[], Any], frames: int = 800) -> Any:
    """What *read* returns when called with *frames* frames already in use on the stack."""
    if frames:
        return _read_deep(read, frames - 1)
    return read()


class TestAnswerDepth:
    """A stage's answer is kept only as deep as an input may be (100 levels), so that the
    history stays readable from a deep stack."""

    def test_an_answer_101_levels_deep_is_refused_and_kept_as_text(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """Refused as an invalid answer (retried, then FAILED); the failed attempts keep its
        repr, and the whole history reads back with 800 frames in use."""
        deep = {"decision": "publish", "quality_score": 99, "notes": _deep(99)}  # 101 levels
        with pytest.raises(StageFailedError):
            run(store, ScriptedReviewer(deep, deep, deep), ScriptedPolisher(), fast_config)
        history = _read_deep(lambda: store.history("s-1"))
        failed = [r for r in history if r.trigger in (Trigger.ATTEMPT_FAILED, Trigger.FAIL)]
        assert failed and all("100 levels" in (r.error or "") for r in failed)
        assert all(isinstance(r.payload["rejected_answer"], str) for r in failed)
        assert failed[0].payload["rejected_answer"].startswith("{'decision': 'publish'")

    def test_an_answer_100_levels_deep_is_kept_and_read_back_from_a_deep_stack(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """At the limit, the answer is the review's, stored as given and read back whole."""
        notes = _deep(98)  # with the answer's own mapping: 100 levels
        answer = {"decision": "publish", "quality_score": 99, "notes": notes}
        run(store, ScriptedReviewer(answer), ScriptedPolisher(), fast_config)
        result = _read_deep(lambda: store.load_state("s-1"))
        assert result.iterations[0].review_data["notes"] == notes


def _circular() -> dict[str, Any]:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    return loop


def _deep(levels: int) -> list[Any]:
    nested: list[Any] = []
    for _ in range(levels):
        nested = [nested]
    return nested


def _deep_mapping(levels: int) -> dict[str, Any]:
    """A mapping *levels* deep, itself included: {"k": {"k": ... {}}}."""
    nested: dict[str, Any] = {}
    for _ in range(levels - 1):
        nested = {"k": nested}
    return nested


BAD_INPUT = [
    pytest.param({"story_id": ""}, "story_id", id="empty-id"),
    pytest.param({"story_id": "   "}, "story_id", id="blank-id"),
    pytest.param({"story_id": "x" * 201}, "200", id="long-id"),
    pytest.param({"story_id": "a\nb"}, "control", id="control-char"),
    pytest.param({"story_id": 42}, "story_id", id="id-not-string"),
    pytest.param({"title": ""}, "title", id="empty-title"),
    pytest.param({"title": None}, "title", id="title-none"),
    pytest.param({"script": "  \n"}, "script", id="blank-script"),
    pytest.param({"script": b"bytes"}, "script", id="script-bytes"),
    pytest.param(
        {"audience_context": ["not", "a", "mapping"]}, "audience_context", id="audience-list"
    ),
    pytest.param({"audience_context": {"when": object()}}, "JSON", id="audience-not-json"),
    pytest.param({"audience_context": {"x": float("nan")}}, "JSON", id="audience-nan"),
    pytest.param({"original_idea": None}, "original_idea", id="idea-none"),
    pytest.param({"audience_context": _circular()}, "itself", id="audience-circular"),
    pytest.param({"local_review_summary": _deep(100_000)}, "deeply", id="summary-too-deep"),
    pytest.param({"audience_context": _deep_mapping(101)}, "100 levels", id="audience-101-deep"),
    pytest.param({"local_review_summary": _deep(101)}, "100 levels", id="summary-101-deep"),
    # Keys JSON writes as the same string: one value would be lost without a word.
    pytest.param({"audience_context": {1: "a", "1": "b"}}, "'1'", id="audience-keys-collide"),
    pytest.param({"local_review_summary": {"n": {None: 1, "null": 2}}}, "'null'", id="keys-null"),
    # Text no backend can store: PostgreSQL refuses NUL, no driver encodes a lone surrogate.
    pytest.param({"title": "T\x00"}, "title contains a NUL", id="title-nul"),
    pytest.param({"script": "S\x00S"}, "script contains a NUL", id="script-nul"),
    pytest.param({"script": "S\ud800"}, "script contains an unpaired surrogate", id="script-surr"),
    pytest.param({"original_idea": "\udfff"}, "original_idea", id="idea-surrogate"),
    pytest.param({"story_id": "s-\ud800"}, "surrogate", id="id-surrogate"),
    pytest.param({"story_id": "s-\x00"}, "control", id="id-nul"),
    # An int of more digits than int() turns into text (4,300 by default): json.dumps refuses it.
    pytest.param({"audience_context": {"n": 10**5000}}, "JSON", id="audience-huge-int"),
    pytest.param({"local_review_summary": 10**5000}, "JSON", id="summary-huge-int"),
]


class TestInputValidation:
    @pytest.mark.parametrize(("override", "message"), BAD_INPUT)
    def test_bad_input_is_refused_and_nothing_written(
        self,
        store: WorkflowStateManager,
        fast_config: WorkflowConfig,
        override: dict[str, Any],
        message: str,
    ) -> None:
        """Bad input raises InputValidationError (a ValueError); the database is unchanged."""
        args = {
            "story_id": "s-1",
            "title": "T",
            "script": "S",
            "audience_context": {},
            "original_idea": "",
        }
        args.update(override)
        reviewer = ScriptedReviewer()
        orchestrator = StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store, fast_config)
        with pytest.raises(InputValidationError, match=message) as caught:
            orchestrator.run_story_workflow(**args)
        assert isinstance(caught.value, ValueError)
        assert store.list_workflows() == []
        assert reviewer.calls == []

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            pytest.param({"reviewer": object()}, "review_story", id="reviewer-no-method"),
            pytest.param({"polisher": "polish"}, "polish_story", id="polisher-a-string"),
            pytest.param({"config": {"max_iterations": 2}}, "WorkflowConfig", id="config-dict"),
            pytest.param({"owner": "w" * 201}, "owner", id="owner-too-long"),
            pytest.param({"owner": "worker\x001"}, "owner", id="owner-nul"),
            pytest.param({"owner": "   "}, "owner", id="owner-blank"),
            pytest.param({"rate_limits": "review"}, "mapping", id="rate-limits-a-string"),
        ],
    )
    def test_bad_orchestrator_arguments_are_refused_when_built(
        self, store: WorkflowStateManager, kwargs: dict[str, Any], message: str
    ) -> None:
        """Not a stage, not a config, an owner no backend stores: refused at once, typed."""
        args: dict[str, Any] = {
            "reviewer": ScriptedReviewer(), "polisher": ScriptedPolisher(),
            "state_manager": store, **kwargs,
        }  # fmt: skip
        with pytest.raises(InputValidationError, match=message):
            StoryWorkflowOrchestrator(**args)

    def test_an_empty_owner_is_the_default_one(self, store: WorkflowStateManager) -> None:
        """owner="" (an unset environment variable, say) means host:pid, as None does."""
        from story_fsm.engine import default_owner

        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(), ScriptedPolisher(), store, owner=""
        )
        assert orchestrator.owner == default_owner()

    def test_a_stage_whose_lookup_raises_is_refused_typed(
        self, store: WorkflowStateManager
    ) -> None:
        """A proxy whose __getattr__ raises KeyError: InputValidationError, not a KeyError."""

        class Proxy:
            def __getattr__(self, name: str) -> Any:
                raise KeyError(name)

        with pytest.raises(InputValidationError, match="review_story"):
            StoryWorkflowOrchestrator(Proxy(), ScriptedPolisher(), store)  # type: ignore[arg-type]

    def test_an_orchestrator_without_stages_submits_but_does_not_run(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """None as the stages: submit works; a run or resume is refused before any write."""
        orchestrator = StoryWorkflowOrchestrator(None, None, store, fast_config)  # type: ignore[arg-type]
        orchestrator.submit("queued", "T", "S", {})
        with pytest.raises(InputValidationError, match="no reviewer"):
            orchestrator.run_story_workflow("s-1", "T", "S", {})
        with pytest.raises(InputValidationError, match="no reviewer"):
            orchestrator.resume("queued")
        assert [s.story_id for s in store.list_workflows()] == ["queued"]
        assert [r.seq for r in store.history("queued")] == [0]

    def test_inputs_are_stored_as_json_reads_them_back(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """Tuples become lists and keys strings, before the run: what is kept is what is read."""
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store, fast_config
        )
        result = orchestrator.run_story_workflow(
            "s-1", "T", "S", {"ages": (8, 12), 3: "three"}, "", {"notes": ("a", 1.5)}
        )
        assert result.decision == "publish"
        row = store.load_row("s-1")
        assert row is not None
        assert row.audience_context == {"ages": [8, 12], "3": "three"}
        assert row.local_review_summary == {"notes": ["a", 1.5]}

    def test_input_too_deep_to_read_back_is_refused_from_a_shallow_stack(
        self, store: WorkflowStateManager
    ) -> None:
        """900 levels, submitted from a fresh thread's stack, are refused: no reader could load them."""
        orchestrator = StoryWorkflowOrchestrator(None, None, store)
        caught: list[BaseException] = []

        def submit() -> None:
            try:
                orchestrator.submit("s-1", "T", "S", _deep_mapping(900))
            except BaseException as exc:  # handed to the test's thread
                caught.append(exc)

        thread = threading.Thread(target=submit)
        thread.start()
        thread.join()
        assert len(caught) == 1 and isinstance(caught[0], InputValidationError)
        assert "100 levels" in str(caught[0])
        assert store.list_workflows() == []

    def test_inputs_100_levels_deep_are_kept_and_read_back_from_a_deep_stack(
        self, store: WorkflowStateManager
    ) -> None:
        """An input nested 100 levels is stored, and read back even with 800 frames in use."""
        orchestrator = StoryWorkflowOrchestrator(None, None, store)
        context, summary = _deep_mapping(100), _deep(99)
        orchestrator.submit("s-1", "T", "S", context, "", summary)
        row = _read_deep(lambda: store.load_row("s-1"))
        assert row.audience_context == context
        assert row.local_review_summary == summary

    def test_existing_story_is_refused_with_a_hint(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A second run of the same story raises WorkflowExistsError naming resume; nothing changes."""
        run(store, ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), fast_config)
        before = store.history("s-1")
        reviewer = ScriptedReviewer()
        with pytest.raises(WorkflowExistsError, match=r"call resume\('s-1'\)"):
            run(store, reviewer, ScriptedPolisher(), fast_config)
        assert store.history("s-1") == before and reviewer.calls == []

    def test_unknown_story(self, store: WorkflowStateManager, fast_config: WorkflowConfig) -> None:
        """resume and history of an unknown story raise WorkflowNotFoundError."""
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(), ScriptedPolisher(), store, fast_config
        )
        with pytest.raises(WorkflowNotFoundError):
            orchestrator.resume("nope")
        with pytest.raises(WorkflowNotFoundError):
            store.history("nope")
        assert store.load_state("nope") is None
