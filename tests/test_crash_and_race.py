"""Real processes: SIGKILL in the middle of a stage, then resume; several resumers racing."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from story_fsm import (
    ConcurrentAdvanceError,
    StoryWorkflowOrchestrator,
    Trigger,
    WorkflowConfig,
    WorkflowState,
    WorkflowStateManager,
)
from tests.stages import ScriptedPolisher, ScriptedReviewer, review

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def spawn(
    mode: str, url: str, calls: Path, story: str, hang_at: str = "-", **env: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.proc_entry", mode, url, str(calls), story, hang_at],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def call_counts(calls: Path) -> Counter[tuple[str, int]]:
    counts: Counter[tuple[str, int]] = Counter()
    for line in calls.read_text().splitlines():
        _story, stage, iteration = line.split()
        counts[(stage, int(iteration))] += 1
    return counts


def wait_for_line(calls: Path, line: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if calls.exists() and line in calls.read_text().splitlines():
            return
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError(f"child never reached {line!r}")


class TestSigkillMidStage:
    @pytest.mark.parametrize("hang_at", ["review:2", "polish:2"])
    def test_killed_process_resumes_without_repeating_committed_stages(
        self, database_url: str, tmp_path: Path, hang_at: str
    ) -> None:
        """SIGKILL inside a stage; another process resumes; only the in-flight stage repeats."""
        calls = tmp_path / "calls.txt"
        stage, iteration = hang_at.split(":")
        victim = spawn("run", database_url, calls, "story-k", hang_at)
        wait_for_line(calls, f"story-k {stage} {iteration}", victim)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
        with WorkflowStateManager(database_url) as store:
            stored = store.load_row("story-k")
            assert stored is not None
            assert stored.summary.state is (
                WorkflowState.REVIEWING if stage == "review" else WorkflowState.POLISHING
            )
        resumer = spawn("resume", database_url, calls, "story-k")
        out, err = resumer.communicate(timeout=60)
        assert resumer.returncode == 0, err
        assert "DONE complete publish" in out
        counts = call_counts(calls)
        # Committed before the kill: exactly once. In flight at the kill: twice (at-least-once).
        for key, n in counts.items():
            assert n == (2 if key == (stage, int(iteration)) else 1), counts
        assert counts[("review", 3)] == 1
        with WorkflowStateManager(database_url) as store:
            records = store.history("story-k")
        assert [r.seq for r in records] == list(range(len(records)))
        assert sum(r.trigger is Trigger.RESUME for r in records) == 1


class TestConcurrentResumers:
    def test_threads_race_one_wins_each_transition(self, database_url: str, tmp_path: Path) -> None:
        """Eight resumers (own stores) race on one story: one linear history, losers told so."""
        config = WorkflowConfig(retry_backoff_seconds=0)

        class Crash(BaseException):
            pass

        with WorkflowStateManager(database_url) as store:
            orchestrator = StoryWorkflowOrchestrator(
                ScriptedReviewer(review(50), Crash()), ScriptedPolisher(), store, config
            )
            with pytest.raises(Crash):
                orchestrator.run_story_workflow("race", "T", "S", {})
        reviewer = ScriptedReviewer(review(99, "publish"), delay=0.2)
        barrier = threading.Barrier(8)
        outcomes: list[Any] = []
        announced: list[str] = []

        def resumer() -> None:
            with WorkflowStateManager(database_url) as own:
                barrier.wait()
                try:
                    outcomes.append(
                        StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), own, config).resume(
                            "race", progress_callback=lambda e, d: announced.append(e)
                        )
                    )
                except ConcurrentAdvanceError as exc:
                    outcomes.append(exc)

        threads = [threading.Thread(target=resumer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        winners = [o for o in outcomes if not isinstance(o, ConcurrentAdvanceError)]
        assert len(outcomes) == 8 and len(winners) >= 1
        assert all(w.state is WorkflowState.COMPLETE for w in winners)
        with WorkflowStateManager(database_url) as store:
            records = store.history("race")
        assert [r.seq for r in records] == list(range(len(records)))
        assert all(
            a.dest == b.source
            for a, b in itertools.pairwise(records)
            if b.trigger is not Trigger.RESUME
        )
        claims = sum(r.trigger is Trigger.RESUME for r in records)
        # No stage call without a committed claim: losers lost before spending a paid call.
        assert len(reviewer.calls) == claims
        # Only a resumer whose claim was committed said it resumed.
        assert announced.count("workflow_resumed") == claims
        assert sum(r.trigger is Trigger.REVIEWED and r.iteration == 2 for r in records) == 1
        assert records[-1].dest is WorkflowState.COMPLETE

    def test_a_resumer_overtaken_before_its_claim_announces_nothing(
        self, database_url: str
    ) -> None:
        """Another resume lands between a resumer's read and its claim: that resumer fails
        with ConcurrentAdvanceError, calls no stage, and sends no workflow_resumed."""
        config = WorkflowConfig(retry_backoff_seconds=0)

        class Crash(BaseException):
            pass

        class Overtaken(WorkflowStateManager):
            """A real store; after its first read, a rival resumes the story to the end."""

            rival: Any = None

            def load_row(self, story_id: str) -> Any:
                row = super().load_row(story_id)
                rival, self.rival = self.rival, None
                if rival is not None:
                    rival()
                return row

        with WorkflowStateManager(database_url) as store:
            orchestrator = StoryWorkflowOrchestrator(
                ScriptedReviewer(review(50), Crash()), ScriptedPolisher(), store, config
            )
            with pytest.raises(Crash):
                orchestrator.run_story_workflow("late", "T", "S", {})
            rival_events: list[str] = []
            rival = StoryWorkflowOrchestrator(
                ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store, config
            )
            with Overtaken(database_url) as own:
                own.rival = lambda: rival.resume(
                    "late", progress_callback=lambda e, d: rival_events.append(e)
                )
                reviewer, events = ScriptedReviewer(review(99, "publish")), []
                with pytest.raises(ConcurrentAdvanceError):
                    StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), own, config).resume(
                        "late", progress_callback=lambda e, d: events.append(e)
                    )
            assert rival_events[0] == "workflow_resumed" and "workflow_complete" in rival_events
            assert (events, reviewer.calls) == ([], [])
            assert store.load_row("late").summary.state is WorkflowState.COMPLETE  # type: ignore[union-attr]

    def test_processes_race_without_raw_database_errors(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """Four resumer processes: each completes or reports a lost race, never a raw DB error."""
        calls = tmp_path / "calls.txt"
        victim = spawn("run", database_url, calls, "p-race", "review:1")
        wait_for_line(calls, "p-race review 1", victim)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
        procs = [
            spawn("resume", database_url, calls, "p-race", STAGE_DELAY="0.2") for _ in range(4)
        ]
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        for code, _out, err in results:
            assert code in (0, 3), err
            assert "OperationalError" not in err and "Traceback" not in err
        assert any(code == 0 for code, _, _ in results)
        with WorkflowStateManager(database_url) as store:
            records = store.history("p-race")
            assert store.load_row("p-race").summary.state is WorkflowState.COMPLETE  # type: ignore[union-attr]
        assert [r.seq for r in records] == list(range(len(records)))
        # Every stage call follows a committed row that entered the stage (start, an edge,
        # or a resume claim): a resumer that lost its claim never called a stage.
        entries = [
            r
            for r in records
            if r.dest in (WorkflowState.REVIEWING, WorkflowState.POLISHING)
            and r.trigger is not Trigger.ATTEMPT_FAILED
        ]
        assert sum(call_counts(calls).values()) == len(entries)
        results_per_step = Counter(
            (r.trigger, r.iteration)
            for r in records
            if r.trigger in (Trigger.REVIEWED, Trigger.POLISHED)
        )
        assert set(results_per_step.values()) == {1}


class _ByVersion:
    """Publishes at the third version; any thread, any story."""

    def review_story(self, **kwargs: Any) -> dict[str, Any]:
        done = kwargs["story_version"] == "v3"
        return {"decision": "publish" if done else "polish", "quality_score": 50}

    def polish_story(self, **kwargs: Any) -> dict[str, Any]:
        return {"polished_script": kwargs["current_script"] + "!", "change_log": ["x"]}


class TestSharedInMemoryStore:
    def test_threads_reading_and_writing_one_in_memory_database_lose_nothing(self) -> None:
        """sqlite:///:memory: is one shared connection: a read must not cut a write in half."""
        store = WorkflowStateManager("sqlite:///:memory:")
        stages = _ByVersion()
        orchestrator = StoryWorkflowOrchestrator(
            stages, stages, store, WorkflowConfig(max_iterations=3)
        )
        errors: list[BaseException] = []

        def submit_then_resume(thread: int) -> None:
            for i in range(25):
                try:
                    orchestrator.submit(f"m-{thread}-{i}", "T", "S", {})
                    orchestrator.resume(f"m-{thread}-{i}")  # a read, then the writes
                    store.list_workflows()
                except BaseException as exc:  # collected for the assertion below
                    errors.append(exc)

        threads = [threading.Thread(target=submit_then_resume, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        try:
            assert errors == []
            summaries = store.list_workflows()
            assert len(summaries) == 100
            assert {s.state for s in summaries} == {WorkflowState.COMPLETE}
            for summary in summaries:
                seqs = [r.seq for r in store.history(summary.story_id)]
                assert seqs == list(range(summary.seq + 1))
        finally:
            store.close()
