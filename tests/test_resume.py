"""Resuming from every stored state, over real stores."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import story_fsm
from story_fsm import (
    StageFailedError,
    StoryWorkflowOrchestrator,
    Trigger,
    WorkflowConfig,
    WorkflowNotFoundError,
    WorkflowState,
    WorkflowStateManager,
)
from tests.stages import ScriptedPolisher, ScriptedReviewer, finish_workflow, review


class Crash(BaseException):
    """Stands for the process dying inside a stage: not an Exception, so never retried."""


def start(
    store: WorkflowStateManager, reviewer: Any, polisher: Any, config: WorkflowConfig
) -> None:
    orchestrator = StoryWorkflowOrchestrator(reviewer, polisher, store, config)
    with pytest.raises(Crash):
        orchestrator.run_story_workflow("s-1", "Title", "Script.", {"a": 1}, "idea", {"local": 2})


class TestResumeFromEachState:
    def test_complete_returns_the_stored_result_without_calls(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """Resuming a COMPLETE workflow calls no stage and returns what is stored."""
        first = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store, fast_config
        )
        done = first.run_story_workflow("s-1", "T", "S", {})
        reviewer, polisher = ScriptedReviewer(), ScriptedPolisher()
        again = StoryWorkflowOrchestrator(reviewer, polisher, store, fast_config).resume("s-1")
        assert again == done
        assert reviewer.calls == [] and polisher.calls == []

    def test_reviewing_reruns_only_the_uncommitted_review(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A crash during review 2 re-runs review 2 only; review 1 and polish 1 stay done."""
        start(store, ScriptedReviewer(review(60), Crash()), ScriptedPolisher(), fast_config)
        assert store.load_row("s-1").summary.state is WorkflowState.REVIEWING  # type: ignore[union-attr]
        reviewer, polisher = ScriptedReviewer(review(99, "publish")), ScriptedPolisher()
        events: list[str] = []
        result = StoryWorkflowOrchestrator(reviewer, polisher, store, fast_config).resume(
            "s-1", progress_callback=lambda e, d: events.append(e)
        )
        assert result.decision == "publish"
        assert result.quality_scores == [60.0, 99.0]
        assert [c["story_version"] for c in reviewer.calls] == ["v2"]
        assert reviewer.calls[0]["script"] == "Script.\n[polish 1]"
        assert reviewer.calls[0]["audience_context"] == {"a": 1}
        assert reviewer.calls[0]["local_review_summary"] == {"local": 2}
        assert polisher.calls == []
        assert events[0] == "workflow_resumed"

    def test_polishing_reruns_the_polish_with_the_stored_review(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A crash during polish re-runs the polish with the committed review's data."""
        first_review = {**review(55), "notes": ["pace"]}
        start(store, ScriptedReviewer(first_review), ScriptedPolisher(Crash()), fast_config)
        reviewer, polisher = ScriptedReviewer(review(99, "publish")), ScriptedPolisher()
        result = StoryWorkflowOrchestrator(reviewer, polisher, store, fast_config).resume("s-1")
        assert polisher.calls[0]["expert_review_data"] == first_review
        assert polisher.calls[0]["original_idea"] == "idea"
        assert [c["story_version"] for c in reviewer.calls] == ["v2"]
        assert (result.total_reviews, result.total_polishes) == (2, 1)

    @pytest.mark.parametrize("expired", [False, True], ids=["live-lease", "expired-lease"])
    def test_a_takeover_of_a_live_lease_is_in_the_audit_trail(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig, expired: bool
    ) -> None:
        """The ``resume`` row names the holder whose unexpired lease it took over, and logs it."""
        crashed = StoryWorkflowOrchestrator(
            ScriptedReviewer(Crash()), ScriptedPolisher(), store, fast_config,
            owner="crashed-host:4242", lease_seconds=0.01 if expired else 600,
        )  # fmt: skip
        with pytest.raises(Crash):
            crashed.run_story_workflow("s-1", "T", "S", {})
        if expired:
            time.sleep(0.05)
        operator = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store, fast_config,
            owner="operator",
        )  # fmt: skip
        with capture_logs() as logs:
            assert operator.resume("s-1").decision == "publish"
        resume = next(r for r in store.history("s-1") if r.trigger is Trigger.RESUME)
        taken = [e for e in logs if e["event"] == "lease_taken_over"]
        if expired:
            assert resume.payload == {"owner": "operator"}
            assert taken == []
        else:
            assert resume.payload == {"owner": "operator", "took_over_from": "crashed-host:4242"}
            assert [e["previous_owner"] for e in taken] == ["crashed-host:4242"]

    def test_resume_writes_its_claim_before_the_stage(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """The resume row lands before the re-run stage's result row."""
        start(store, ScriptedReviewer(Crash()), ScriptedPolisher(), fast_config)
        StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store, fast_config
        ).resume("s-1")
        triggers = [r.trigger for r in store.history("s-1")]
        assert triggers == [Trigger.SUBMIT, Trigger.START, Trigger.RESUME, Trigger.REVIEWED]

    def test_failed_retries_the_failed_stage(self, store: WorkflowStateManager) -> None:
        """A FAILED workflow's resume retries the stage that failed, along the retry edge."""
        config = WorkflowConfig(max_stage_retries=1, retry_backoff_seconds=0)
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(40)), ScriptedPolisher(RuntimeError("down")), store, config
        )
        with pytest.raises(StageFailedError):
            orchestrator.run_story_workflow("s-1", "T", "S", {})
        reviewer, polisher = ScriptedReviewer(review(99, "publish")), ScriptedPolisher()
        result = StoryWorkflowOrchestrator(reviewer, polisher, store, config).resume("s-1")
        assert result.state is WorkflowState.COMPLETE and result.error is None
        assert len(polisher.calls) == 1 and len(reviewer.calls) == 1
        retry = next(r for r in store.history("s-1") if r.trigger is Trigger.RETRY)
        assert (retry.source, retry.dest) == (WorkflowState.FAILED, WorkflowState.POLISHING)

    def test_submitted_workflow_starts_on_resume(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A workflow only submitted (INITIAL) starts from the first review on resume."""
        StoryWorkflowOrchestrator(
            ScriptedReviewer(), ScriptedPolisher(), store, fast_config
        ).submit("s-1", "T", "S", {})
        reviewer = ScriptedReviewer(review(99, "publish"))
        result = StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store, fast_config).resume(
            "s-1"
        )
        assert result.decision == "publish" and len(reviewer.calls) == 1

    def test_resume_uses_the_stored_config_when_none_given(
        self, store: WorkflowStateManager
    ) -> None:
        """Without a config, resume keeps the one the workflow started with."""
        config = WorkflowConfig(max_iterations=1, retry_backoff_seconds=0)
        start(store, ScriptedReviewer(Crash()), ScriptedPolisher(), config)
        reviewer, polisher = ScriptedReviewer(review(10)), ScriptedPolisher()
        result = StoryWorkflowOrchestrator(reviewer, polisher, store).resume("s-1")
        assert result.decision == "max_iterations_reached"
        assert (len(reviewer.calls), len(polisher.calls)) == (1, 1)

    def test_a_config_given_on_resume_is_the_one_the_result_reports(
        self, store: WorkflowStateManager
    ) -> None:
        """An orchestrator's own config runs the resume; its first row and the result say so.

        A later resume without a config goes back to the stored one, and says that too.
        """
        started = WorkflowConfig(max_iterations=1, retry_backoff_seconds=0)
        start(store, ScriptedReviewer(Crash()), ScriptedPolisher(), started)
        given = WorkflowConfig(max_iterations=3, retry_backoff_seconds=0, review_model="m-2")
        reviewer = ScriptedReviewer(review(10), Crash())
        with pytest.raises(Crash):
            StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store, given).resume("s-1")
        assert len(reviewer.calls) == 2  # max_iterations=3 let a second round start
        assert reviewer.calls[0]["model"] == "m-2"
        resumed = [r for r in store.history("s-1") if r.trigger is Trigger.RESUME]
        assert resumed[0].payload["config"] == given.to_dict()
        mid_run = store.load_state("s-1")
        assert mid_run is not None and mid_run.metadata["config"] == given.to_dict()

        plain = StoryWorkflowOrchestrator(ScriptedReviewer(review(10)), ScriptedPolisher(), store)
        result = plain.resume("s-1")
        last_resume = [r for r in store.history("s-1") if r.trigger is Trigger.RESUME][-1]
        assert "config" not in last_resume.payload
        assert result.metadata["config"] == started.to_dict()
        assert result.decision == "max_iterations_reached"

    def test_total_duration_spans_resumes(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """total_duration_seconds runs from the first start to completion, across resumes."""
        start(store, ScriptedReviewer(Crash()), ScriptedPolisher(), fast_config)
        result = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish"), delay=0.05),
            ScriptedPolisher(),
            store,
            fast_config,
        ).resume("s-1")
        assert result.completed_at is not None and result.started_at is not None
        assert result.total_duration_seconds == pytest.approx(
            (result.completed_at - result.started_at).total_seconds()
        )
        assert result.total_duration_seconds >= 0.05


class TestStoredConfigPastTheCaps:
    def test_a_config_stored_before_the_caps_still_resumes(
        self, store: WorkflowStateManager
    ) -> None:
        """Counts and times past today's caps, stored earlier, are read at the cap."""
        StoryWorkflowOrchestrator(ScriptedReviewer(), ScriptedPolisher(), store).submit(
            "s-1", "Title", "Script.", {}
        )
        old = {
            **WorkflowConfig(retry_backoff_seconds=0).to_dict(),
            "max_iterations": 2_000_000, "stage_timeout_seconds": 10**6,
        }  # fmt: skip
        inputs = store.schema.inputs
        with store.engine.begin() as conn:
            conn.execute(inputs.update().values(config=json.dumps(old)))
        result = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store
        ).resume("s-1")
        assert result.state is WorkflowState.COMPLETE
        assert result.metadata["config"]["stage_timeout_seconds"] == 604_800
        assert result.metadata["config"]["max_iterations"] == 1_000_000


class TestOneCallResume:
    def test_module_level_resume(self, database_url: str, fast_config: WorkflowConfig) -> None:
        """story_fsm.resume() opens the store, resumes and returns the result."""
        with WorkflowStateManager(database_url) as store:
            start(store, ScriptedReviewer(review(50), Crash()), ScriptedPolisher(), fast_config)
        reviewer = ScriptedReviewer(review(99, "publish"))
        result = story_fsm.resume(
            "s-1",
            reviewer=reviewer,
            polisher=ScriptedPolisher(),
            database_url=database_url,
            config=fast_config,
        )
        assert result.decision == "publish"
        assert [c["story_version"] for c in reviewer.calls] == ["v2"]

    @pytest.mark.parametrize("empty_file", [False, True], ids=["mistyped-path", "empty-file"])
    def test_a_sqlite_file_holding_no_workflow_is_left_as_it_was(
        self, tmp_path: Path, empty_file: bool
    ) -> None:
        """No file at the path, or a 0-byte one: WorkflowNotFoundError, and no new database
        created there (nor the empty file written)."""
        path = tmp_path / "typo.db"
        if empty_file:
            path.touch()
        with pytest.raises(story_fsm.WorkflowNotFoundError, match="story-42"):
            story_fsm.resume(
                "story-42",
                reviewer=ScriptedReviewer(),
                polisher=ScriptedPolisher(),
                database_url=f"sqlite:///{path}",
            )
        assert not empty_file or path.stat().st_size == 0
        # Nothing else either (a journal, a WAL file).
        assert [p.name for p in tmp_path.iterdir()] == (["typo.db"] if empty_file else [])


class TestReadDuringARun:
    def test_a_result_read_while_a_step_commits_is_of_one_step(
        self, database_url: str, fast_config: WorkflowConfig
    ) -> None:
        """load_state reads the summary, then the history; a run that commits in between
        must not give a result whose counts and iterations disagree."""
        with (
            WorkflowStateManager(database_url) as writer,
            WorkflowStateManager(database_url) as reader,
        ):
            start(writer, ScriptedReviewer(review(60), Crash()), ScriptedPolisher(), fast_config)
            at = reader.load_row("s-1")
            assert at is not None and at.summary.state is WorkflowState.REVIEWING
            real_history = reader.history

            def history_after_the_run_went_on(story_id: str) -> Any:
                # The run commits its remaining steps between the reader's two reads.
                StoryWorkflowOrchestrator(
                    ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), writer, fast_config
                ).resume("s-1")
                return real_history(story_id)

            reader.history = history_after_the_run_went_on  # type: ignore[method-assign]
            result = reader.load_state("s-1")
        assert result is not None
        assert result.state is WorkflowState.REVIEWING
        assert len(result.iterations) == result.total_reviews == 1
        assert result.total_polishes == 1 and result.decision is None
        assert result.metadata["history_length"] == at.summary.seq + 1


def delete_at_read(store: WorkflowStateManager, method: str, read: int = 1) -> list[str]:
    """Make *store*'s *method* delete the workflow just before its *read*-th call reads.

    Returns the story ids it was called with, one per call.
    """
    real = getattr(store, method)
    calls: list[str] = []

    def deleting_first(story_id: str) -> Any:
        calls.append(story_id)
        if len(calls) == read:
            store.delete_workflow(story_id)
        return real(story_id)

    setattr(store, method, deleting_first)
    return calls


class TestDeletedMeanwhile:
    """A workflow deleted (delete_workflow, prune_workflows) between two reads of a call."""

    def test_load_state_of_a_workflow_deleted_between_its_reads_is_none(
        self, store: WorkflowStateManager
    ) -> None:
        """load_state reads the summary, then the history: deleted in between, it is None,
        as for a story never stored."""
        finish_workflow(store, "s-1")
        delete_at_read(store, "history")
        assert store.load_state("s-1") is None

    @pytest.mark.parametrize("crashed", [False, True])
    def test_resume_of_a_workflow_deleted_before_its_result_is_read_is_not_found(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig, crashed: bool
    ) -> None:
        """resume reads the result last (at once when COMPLETE, else after the run): a
        workflow deleted just before is WorkflowNotFoundError."""
        if crashed:
            start(store, ScriptedReviewer(review(60), Crash()), ScriptedPolisher(), fast_config)
        else:
            finish_workflow(store, "s-1")
        delete_at_read(store, "load_state")
        resumer = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store, fast_config
        )
        with pytest.raises(WorkflowNotFoundError):
            resumer.resume("s-1")

    def test_requeue_of_a_workflow_deleted_once_requeued_is_not_found(
        self, store: WorkflowStateManager
    ) -> None:
        """requeue reads the summary again after its retry row: deleted in between (it is
        unfinished and unheld then), WorkflowNotFoundError."""
        finish_workflow(store, "s-1", fail=True)
        reads = delete_at_read(store, "load_row", read=2)
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store
        )
        with pytest.raises(WorkflowNotFoundError):
            orchestrator.requeue("s-1")
        assert len(reads) == 2
