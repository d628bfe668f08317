"""`story-fsm submit`, `worker` and `retry`, in-process and as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from story_fsm import (
    StageFailedError,
    StoryWorkflowOrchestrator,
    WorkflowConfig,
    WorkflowState,
    WorkflowStateManager,
)
from story_fsm.cli import app
from story_fsm.cli._workers import parse_rate_limits
from story_fsm.errors import InputValidationError
from tests.cli_runner import cli_runner
from tests.stages import ScriptedPolisher, ScriptedReviewer, review

ROOT = Path(__file__).resolve().parent.parent
STORIES = sorted((ROOT / "examples" / "stories").glob("*.txt"))


def invoke(*args: str) -> object:
    return cli_runner().invoke(app, list(args))


class TestSubmitAndWorker:
    def test_submit_then_worker_completes_every_story(self, database_url: str) -> None:
        """Submitted stories wait in INITIAL; a worker with --stop-when-idle finishes them all."""
        for story in STORIES:
            result = invoke("submit", str(story), "--db", database_url, "--json")
            assert result.exit_code == 0, result.output
            assert json.loads(result.stdout)["state"] == "initial"
        listed = invoke("list", "--db", database_url, "--state", "initial", "--json")
        assert len(json.loads(listed.stdout)) == len(STORIES)
        done = invoke("worker", "--db", database_url, "--stop-when-idle", "--concurrency", "2")
        assert done.exit_code == 0, done.output
        with WorkflowStateManager(database_url) as store:
            assert {s.state for s in store.list_workflows()} == {WorkflowState.COMPLETE}

    def test_a_worker_keeps_each_story_s_threshold_as_run_does(self, sqlite_url: str) -> None:
        """Submitted with --threshold 99, a story the default (95) would publish goes on, to
        the same scores and decision as ``run`` with --threshold 99 gives it."""
        story = ROOT / "examples" / "stories" / "lighthouse_cat.txt"
        options = ["--threshold", "99", "--max-iterations", "5", "--db", sqlite_url]
        ran = invoke("run", str(story), "--story-id", "by-run", *options, "--json", "-q")
        assert ran.exit_code == 0, ran.output
        assert invoke("submit", str(story), "--story-id", "by-worker", *options).exit_code == 0
        done = invoke("worker", "--db", sqlite_url, "--stop-when-idle")
        assert done.exit_code == 0, done.output
        with WorkflowStateManager(sqlite_url) as store:
            by_run, by_worker = store.load_state("by-run"), store.load_state("by-worker")
        assert by_run is not None and by_worker is not None
        assert by_worker.quality_scores == by_run.quality_scores
        assert by_worker.decision == by_run.decision
        assert any(95 <= score < 99 for score in by_run.quality_scores[:-1])  # the case at hand

    @pytest.mark.parametrize("lease", ["inf", "1e12", "nan"])
    def test_absurd_lease_is_a_usage_error(self, tmp_path: Path, lease: str) -> None:
        """A lease no clock can add is refused (exit 2) before any database is made."""
        url = f"sqlite:///{tmp_path}/w.db"
        result = invoke("worker", "--db", url, "--lease-seconds", lease, "--stop-when-idle")
        assert result.exit_code == 2, result.output
        assert "lease" in result.stderr
        assert not (tmp_path / "w.db").exists()

    def test_a_bad_worker_id_is_refused_before_any_database_is_made(self, tmp_path: Path) -> None:
        """A --worker-id with a control character exits 2 and leaves no new database."""
        url = f"sqlite:///{tmp_path}/w.db"
        result = invoke("worker", "--db", url, "--worker-id", "a\tb", "--stop-when-idle")
        assert result.exit_code == 2, result.output
        assert "worker-id" in result.stderr
        assert not (tmp_path / "w.db").exists()

    def test_openai_worker_without_key_creates_no_database(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The editor is set up before the store: a missing API key leaves nothing behind."""
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name, raising=False)
        url = f"sqlite:///{tmp_path}/w.db"
        result = invoke("worker", "--db", url, "--editor", "openai", "--stop-when-idle")
        assert result.exit_code == 2 and "OPENAI_API_KEY" in result.stderr
        assert not (tmp_path / "w.db").exists()

    def test_submit_twice_is_a_usage_error(self, sqlite_url: str) -> None:
        """Submitting a story id that exists exits 2 with the resume hint."""
        assert invoke("submit", str(STORIES[0]), "--db", sqlite_url).exit_code == 0
        again = invoke("submit", str(STORIES[0]), "--db", sqlite_url)
        assert again.exit_code == 2 and "story-fsm resume" in again.stderr

    def test_retry_requeues_a_failed_workflow(self, database_url: str) -> None:
        """retry puts a FAILED workflow back in its failed stage, unheld; others exit 2."""
        with WorkflowStateManager(database_url) as store:
            config = WorkflowConfig(max_stage_retries=1, retry_backoff_seconds=0)
            orchestrator = StoryWorkflowOrchestrator(
                ScriptedReviewer(RuntimeError("x")), ScriptedPolisher(), store, config
            )
            with pytest.raises(StageFailedError):
                orchestrator.run_story_workflow("f", "T", "S", {})
            StoryWorkflowOrchestrator(
                ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store
            ).run_story_workflow("ok", "T", "S", {})
        result = invoke("retry", "f", "--db", database_url, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert (data["state"], data["lease_owner"]) == ("reviewing", None)
        refused = invoke("retry", "ok", "--db", database_url)
        assert refused.exit_code == 2 and "only a FAILED workflow" in refused.stderr

    def test_list_shows_the_lease_holder(self, sqlite_url: str) -> None:
        """list prints who holds a workflow's lease."""
        from story_fsm._records import Lease

        invoke("submit", str(STORIES[0]), "--db", sqlite_url)
        with WorkflowStateManager(sqlite_url) as store:
            store.claim_next(Lease("box-7:123", "t", 60))
        out = invoke("list", "--db", sqlite_url).stdout
        assert "box-7:123" in out and "until" in out


class TestRateLimitOption:
    def test_parses_stage_limits(self) -> None:
        """review=60 and polish=10 become per-stage limits."""
        assert parse_rate_limits(["review=60", "polish=10"]) == {"review": 60, "polish": 10}

    @pytest.mark.parametrize("bad", ["review", "review=0", "review=x", "edit=5", "=3"])
    def test_bad_values_are_refused(self, bad: str) -> None:
        """Anything but STAGE=N (N >= 1, known stage) is an input error."""
        with pytest.raises(InputValidationError, match="--rate-limit"):
            parse_rate_limits([bad])


@pytest.mark.slow
class TestWorkerProcess:
    def test_sigterm_drains_and_exits_zero(self, sqlite_url: str) -> None:
        """A running worker process exits 0 on SIGTERM."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "story_fsm.cli", "worker", "--db", sqlite_url],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        # Its first line comes once the handlers are installed; a SIGTERM before that would
        # test the interpreter's start-up (exit -15), not the drain.
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "SIGTERM drains" in first, first
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, first + err
        assert "claimed 0" in err and "database busy 0" in err

    def test_unreachable_database_exits_nonzero_with_one_line(self) -> None:
        """A worker pointed at a database that does not answer exits 4 with a clear line."""
        proc = subprocess.run(
            [sys.executable, "-m", "story_fsm.cli", "worker", "--db", "postgresql://postgres@127.0.0.1:9/none"],
            check=False, cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PGCONNECT_TIMEOUT": "2"},
        )  # fmt: skip
        assert proc.returncode == 4
        assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr
