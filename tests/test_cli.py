"""The ``story-fsm`` command line, in process (typer's CliRunner), over real stores.

Subprocess tests (the console script, ``python -m story_fsm.cli``, SIGKILL/SIGINT, the OpenAI
editor against a real HTTP server) live in ``test_cli_subprocess.py``.
"""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import openai
import pytest
import sqlalchemy as sa
from rich.console import Console
from typer.testing import Result

from story_fsm import (
    ConcurrentAdvanceError,
    DatabaseBusyError,
    InputValidationError,
    InvalidTransitionError,
    SchemaVersionError,
    Stage,
    StageFailedError,
    StoreError,
    StoryFSMError,
    StoryWorkflowOrchestrator,
    WorkflowConfig,
    WorkflowExistsError,
    WorkflowNotFoundError,
    WorkflowState,
    WorkflowStateManager,
)
from story_fsm._records import Lease
from story_fsm.cli import EXTENSION_MODULES, ExitCode, app, load_extensions
from story_fsm.cli._errors import Interrupted, exit_code_for, message_for
from story_fsm.cli._inspect import DiagramFormat
from story_fsm.cli._progress import ProgressView, score_bar
from story_fsm.diagrams import FORMATS, workflow_diagram
from story_fsm.store.migrate import head_revision
from story_fsm.store.schema import build_schema
from tests.cli_runner import cli_runner
from tests.fake_llm_server import FakeLLMServer
from tests.hermetic import HOST_SETTINGS
from tests.stages import ScriptedPolisher, ScriptedReviewer, finish_workflow, review

STORY = (
    "The Keeper's Cat\n"
    "It was a dark and stormy night.  Elsie really noticed that the cat was missing. "
    "She had basically just finished winding the great lamp , and the the wind howled "
    "around the tower. The door was opened by the wind.\n"
)

_HERMETIC_ENV = (*HOST_SETTINGS, "COLUMNS")


class Crash(BaseException):
    """Stands for the process dying inside a stage (not an Exception, so never retried)."""


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The developer's database/model/OpenAI settings must not steer these runs; the default
    # database (sqlite:///story_fsm.db) lands in the test's own folder.
    for name in _HERMETIC_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def story_file(tmp_path: Path) -> Path:
    path = tmp_path / "keepers_cat.txt"
    path.write_text(STORY, encoding="utf-8")
    return path


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return cli_runner().invoke(app, list(args), env=env)


def one_error_line(result: Result) -> str:
    """The stderr of a failed command: exactly one line, starting with 'error: '."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def roundtrip(data: Any) -> Any:
    return json.loads(json.dumps(data))


def failing_then_passing(store: WorkflowStateManager, story_id: str = "s-1") -> None:
    """A workflow whose first polish attempt fails, then everything succeeds."""
    config = WorkflowConfig(max_iterations=3, retry_backoff_seconds=0)
    polisher = ScriptedPolisher(RuntimeError("flaky network"), None)
    reviewer = ScriptedReviewer(review(60), review(97, "publish"))
    StoryWorkflowOrchestrator(reviewer, polisher, store, config).run_story_workflow(
        story_id, "Title", "Script.", {}
    )


def failed_workflow(store: WorkflowStateManager, story_id: str = "bad") -> None:
    """A workflow left FAILED at its polish (one attempt allowed, no backoff)."""
    config = WorkflowConfig(max_stage_retries=1, retry_backoff_seconds=0)
    orchestrator = StoryWorkflowOrchestrator(
        ScriptedReviewer(review(40)), ScriptedPolisher(RuntimeError("polisher down")), store, config
    )
    with pytest.raises(StageFailedError):
        orchestrator.run_story_workflow(story_id, "T", "S", {})


def interrupted_workflow(store: WorkflowStateManager, story_id: str = "s-1") -> None:
    """A workflow that 'crashed' during its second review (stored in REVIEWING)."""
    config = WorkflowConfig(max_iterations=3, retry_backoff_seconds=0)
    orchestrator = StoryWorkflowOrchestrator(
        ScriptedReviewer(review(60), Crash()), ScriptedPolisher(), store, config
    )
    with pytest.raises(Crash):
        orchestrator.run_story_workflow(story_id, "The Keeper's Cat", STORY, {})


def _held_by_host_b(database_url: str, story_id: str) -> int:
    """Leave *story_id* held by a live-looking 'host-b:42' (its run crashed in the first
    review, the lease not expired); return how many history rows it has."""
    with WorkflowStateManager(database_url) as store:
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(Crash()), ScriptedPolisher(), store, owner="host-b:42"
        )
        with pytest.raises(Crash):
            orchestrator.run_story_workflow(story_id, "T", "S", {})
        return len(store.history(story_id))


class TestRun:
    def test_json_output_is_the_stored_result(self, database_url: str, story_file: Path) -> None:
        """`run --json` prints WorkflowResult.to_dict() of what was stored, and only that."""
        result = invoke("run", str(story_file), "--db", database_url, "--json")
        assert result.exit_code == 0, result.stderr
        printed = json.loads(result.stdout)
        with WorkflowStateManager(database_url) as store:
            stored = store.load_state("keepers_cat")
        assert stored is not None and stored.state is WorkflowState.COMPLETE
        assert printed == roundtrip(stored.to_dict())

    def test_progress_goes_to_stderr_and_never_to_stdout(
        self, sqlite_url: str, story_file: Path
    ) -> None:
        """The live view reports each review's score on stderr; stdout holds only the JSON."""
        result = invoke("run", str(story_file), "--db", sqlite_url, "--json")
        scores = json.loads(result.stdout)["quality_scores"]
        assert "v1 review" in result.stderr and f"{scores[0]:5.1f}" in result.stderr
        assert "v1 review" not in result.stdout and result.stdout.lstrip().startswith("{")

    def test_summary_table_shows_each_score_and_the_decision(
        self, sqlite_url: str, story_file: Path
    ) -> None:
        """Without --json, stdout is a summary: every iteration's score, decision, cost, time."""
        result = invoke("run", str(story_file), "--db", sqlite_url)
        assert result.exit_code == 0, result.stderr
        with WorkflowStateManager(sqlite_url) as store:
            stored = store.load_state("keepers_cat")
        assert stored is not None and len(stored.quality_scores) >= 2
        for score in stored.quality_scores:
            assert f"{score:.1f}" in result.stdout
        assert f"{stored.decision} (complete)" in result.stdout
        assert "cost" in result.stdout and "duration" in result.stdout
        assert "\x1b[" not in result.stdout + result.stderr  # not a terminal: no escapes

    def test_control_characters_in_a_title_are_printed_escaped(
        self, sqlite_url: str, tmp_path: Path
    ) -> None:
        """A title with an escape sequence (a model's, a file's) cannot act on the terminal.

        Progress, the summary, ``status`` and ``list`` show it as ``\\x1b``; the stored title
        keeps it as it was.
        """
        story = tmp_path / "evil.txt"
        story.write_text("Evil \x1b[2J title\nThe cat sat on the mat. It was warm.\n")
        ran = invoke("run", str(story), "--db", sqlite_url)
        assert ran.exit_code == 0, ran.stderr
        status = invoke("status", "evil", "--db", sqlite_url)
        listed = invoke("list", "--db", sqlite_url)
        for output in (ran.stdout, ran.stderr, status.stdout, listed.stdout):
            assert "\x1b" not in output
            assert "Evil \\x1b[2J title" in output
        with WorkflowStateManager(sqlite_url) as store:
            summary = store.load_row("evil")
        assert summary is not None and summary.summary.title.startswith("Evil \x1b[2J")

    def test_quiet_shows_no_progress(self, sqlite_url: str, story_file: Path) -> None:
        """--quiet leaves stderr empty on success."""
        result = invoke("run", str(story_file), "--db", sqlite_url, "--quiet", "--json")
        assert result.exit_code == 0 and result.stderr == ""

    def test_title_option_makes_the_whole_file_the_script(
        self, sqlite_url: str, story_file: Path
    ) -> None:
        """--title sets the title, --story-id the id; the file's first line stays in the script."""
        result = invoke(
            "run", str(story_file), "--db", sqlite_url, "--title", "Other",
            "--story-id", "s-9", "--json", "--max-iterations", "1",
        )  # fmt: skip
        data = json.loads(result.stdout)
        assert data["story_id"] == "s-9" and data["initial_title"] == "Other"
        assert data["initial_script"] == STORY.strip()

    def test_options_reach_the_stored_config_and_the_offline_reviewer(
        self, sqlite_url: str, story_file: Path
    ) -> None:
        """--max-iterations/--threshold are stored; the offline reviewer publishes at the threshold."""
        result = invoke(
            "run", str(story_file), "--db", sqlite_url, "--json",
            "--max-iterations", "2", "--threshold", "10",
        )  # fmt: skip
        data = json.loads(result.stdout)
        config = data["metadata"]["config"]
        assert (config["max_iterations"], config["quality_threshold"]) == (2, 10)
        assert data["iterations"][0]["decision"] == "publish"  # the reviewer's own decision
        assert data["total_reviews"] == 1

    def test_existing_story_id_exits_2_with_a_resume_hint(
        self, database_url: str, story_file: Path
    ) -> None:
        """Running a story id that already has a workflow exits 2 and names 'story-fsm resume'."""
        assert invoke("run", str(story_file), "--db", database_url, "-q").exit_code == 0
        again = invoke("run", str(story_file), "--db", database_url, "-q")
        assert again.exit_code == ExitCode.USAGE
        line = one_error_line(again)
        assert "run 'story-fsm resume keepers_cat'" in line and "resume('" not in line

    @pytest.mark.parametrize(
        ("option", "value"), [("--max-iterations", "0"), ("--threshold", "101")]
    )
    def test_out_of_range_options_exit_2(self, story_file: Path, option: str, value: str) -> None:
        """Option values the config would reject are usage errors, before anything is written."""
        result = invoke("run", str(story_file), option, value)
        assert result.exit_code == ExitCode.USAGE
        assert not Path("story_fsm.db").exists()

    def test_verbose_logs_go_to_stderr(self, sqlite_url: str, story_file: Path) -> None:
        """-v logs the library's INFO events on stderr; stdout stays JSON."""
        result = invoke("-v", "run", str(story_file), "--db", sqlite_url, "--json", "-q")
        assert "workflow_complete" in result.stderr
        assert json.loads(result.stdout)["state"] == "complete"

    @pytest.mark.parametrize("debug", [False, True], ids=["default", "debug"])
    def test_logged_errors_show_no_local_variables(
        self, capsys: pytest.CaptureFixture[str], debug: bool
    ) -> None:
        """A logged exception is one line by default, a traceback with --debug; never locals.

        The frames of a failed connection hold its parameters, the password among them.
        """
        import logging

        from story_fsm._log import get_logger
        from story_fsm.cli._logging import configure_logging

        configure_logging(logging.DEBUG if debug else logging.WARNING)

        def connect(password: str) -> None:  # a driver's message runs over lines
            raise ConnectionError("server closed the connection\n\tIs the server running?")

        secret = "".join(["S3", "CRET", "PW"])  # not in the source lines a traceback quotes
        try:
            connect(password=secret)
        except ConnectionError:
            get_logger().exception("heartbeat_failed")
        err = capsys.readouterr().err
        assert "ConnectionError: server closed the connection" in err
        if not debug:
            assert "connection Is the server running?" in err
        assert "S3CRETPW" not in err
        assert ("Traceback" in err) is debug
        if not debug:
            assert len(err.strip().splitlines()) == 2  # the event, then the error's line

    def test_other_libraries_warnings_are_one_line_too(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A warning logged through ``logging`` (SQLAlchemy's pool) is rendered like ours.

        Python's last-resort handler used to print it raw, with its traceback.
        """
        import logging

        from story_fsm.cli._logging import configure_logging

        configure_logging(logging.WARNING)
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            logging.getLogger("sqlalchemy.pool.impl").error(
                "Exception closing connection", exc_info=True
            )
        logging.getLogger("alembic.runtime.migration").info("Running upgrade")  # below WARNING
        err = capsys.readouterr().err
        assert "Exception closing connection" in err and "KeyboardInterrupt" in err
        assert "Traceback" not in err and "Running upgrade" not in err
        assert len(err.strip().splitlines()) == 2  # the event, then the error's line

    def test_openai_requests_end_with_the_attempt(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The command line's OpenAI stages wait no longer than the engine's attempt has left
        (not the SDK's default ten minutes, nor one fixed timeout for every workflow)."""
        from story_fsm.cli._editors import Editor, editor_stages
        from story_fsm.stages import attempt_deadline

        with FakeLLMServer() as server:
            monkeypatch.setenv("OPENAI_BASE_URL", server.url)
            server.enqueue_completion({"decision": "publish", "quality_score": 99}, delay=5.0)
            with editor_stages(Editor.OPENAI, threshold=95, model="m") as stages:
                token = attempt_deadline.set(time.monotonic() + 0.3)
                try:
                    started = time.monotonic()
                    with pytest.raises(openai.APITimeoutError):
                        stages.reviewer.review_story(
                            title="T",
                            script="S.",
                            audience_context={},
                            original_idea="",
                            story_id="s",
                            story_version="v1",
                            local_review_summary=None,
                        )
                    assert time.monotonic() - started < 4  # the server answers at 5 s
                finally:
                    attempt_deadline.reset(token)

    def test_openai_editor_without_key_or_url_exits_2(self, story_file: Path) -> None:
        """--editor openai with neither OPENAI_API_KEY nor OPENAI_BASE_URL fails fast with 2."""
        result = invoke("run", str(story_file), "--editor", "openai")
        assert result.exit_code == ExitCode.USAGE
        assert "OPENAI_API_KEY" in one_error_line(result)
        assert not Path("story_fsm.db").exists()


class TestStoryFileErrors:
    @pytest.mark.parametrize(
        ("content", "expected"),
        [
            (None, "does not exist"),
            (b"", "is empty"),
            (b"  \n\n \t\n", "is empty"),
            (b"Only a title\n\n", "no script"),
            (b"\xff\xfe not utf-8 \x81", "not UTF-8"),
            (b"Title\n\nA script with a NUL \x00 byte.", "script contains a NUL"),
            (b"Title\n" + b"word " * 200_001, "at most 1,000,000"),
        ],
        ids=["missing", "empty", "blank", "title-only", "not-utf8", "nul", "too-large"],
    )
    def test_bad_story_file_exits_2_with_one_line(
        self, tmp_path: Path, content: bytes | None, expected: str
    ) -> None:
        """A missing, empty, title-only or non-UTF-8 file exits 2, one line, no database made."""
        path = tmp_path / "story.txt"
        if content is not None:
            path.write_bytes(content)
        result = invoke("run", str(path))
        assert result.exit_code == ExitCode.USAGE
        assert expected in one_error_line(result)
        assert result.stdout == ""
        assert not (tmp_path / "story_fsm.db").exists()

    @pytest.mark.parametrize("command", ["run", "submit"])
    def test_bad_story_id_creates_no_database(self, tmp_path: Path, command: str) -> None:
        """A story id the library would refuse is refused before the database is opened."""
        path = tmp_path / "story.txt"
        path.write_text("Title\n\nScript.", encoding="utf-8")
        result = invoke(command, str(path), "--story-id", "")
        assert result.exit_code == ExitCode.USAGE
        assert "story_id must not be empty" in one_error_line(result)
        assert not (tmp_path / "story_fsm.db").exists()

    @pytest.mark.parametrize("command", ["run", "submit"])
    @pytest.mark.parametrize("title", ["Two\nLines", "Two\r\nLines", "Two\rLines"])
    def test_title_option_with_a_line_break_is_refused(
        self, tmp_path: Path, command: str, title: str
    ) -> None:
        """A --title with a line break exits 2: 'show' would print it as a title and a script."""
        path = tmp_path / "story.txt"
        path.write_text("The whole script.", encoding="utf-8")
        result = invoke(command, str(path), "--title", title)
        assert result.exit_code == ExitCode.USAGE
        assert "--title must be one line" in one_error_line(result)
        assert not (tmp_path / "story_fsm.db").exists()

    @pytest.mark.parametrize(
        ("name", "reason"),
        [
            (" .txt", "must not be empty"),
            ("e\x1bx.txt", "control characters"),
            ("a" * 201 + ".txt", "at most 200"),
        ],
        ids=["blank", "escape", "too-long"],
    )
    def test_story_id_from_a_file_name_that_is_refused_names_the_file(
        self, tmp_path: Path, name: str, reason: str
    ) -> None:
        """An id taken from the file's name that the library refuses points to --story-id."""
        path = tmp_path / name
        path.write_text("Title\n\nScript.", encoding="utf-8")
        result = invoke("run", str(path))
        assert result.exit_code == ExitCode.USAGE
        line = one_error_line(result)
        assert "file's name gives no usable story id" in line and reason in line
        assert "give one with --story-id" in line
        assert not (tmp_path / "story_fsm.db").exists()

    def test_one_paragraph_file_is_refused_in_a_short_line_naming_title(
        self, tmp_path: Path
    ) -> None:
        """A file of one long line (no title) exits 2 naming --title, not echoing the story."""
        path = tmp_path / "story.txt"
        path.write_text("The keeper lit the lamp. " * 400, encoding="utf-8")
        result = invoke("run", str(path))
        assert result.exit_code == ExitCode.USAGE
        line = one_error_line(result)
        assert "no script after it" in line and "--title" in line
        assert "'The keeper lit the lamp." in line
        assert len(line) < 300
        assert not (tmp_path / "story_fsm.db").exists()

    def test_a_stream_past_the_limit_is_refused_without_reading_it_all(
        self, tmp_path: Path
    ) -> None:
        """A file with no size to check (a device, a pipe) is cut at the limit: exit 2."""
        result = invoke("run", "/dev/zero", "--story-id", "zeros", "--title", "Zeros")
        assert result.exit_code == ExitCode.USAGE
        assert "larger than 1,000,000 bytes" in one_error_line(result)
        assert not (tmp_path / "story_fsm.db").exists()

    def test_line_ends_are_read_as_text_mode_reads_them(
        self, sqlite_url: str, tmp_path: Path
    ) -> None:
        """CRLF and CR line ends become LF in the stored script."""
        path = tmp_path / "crlf.txt"
        path.write_bytes(b"Title\r\n\r\nOne line.\r\nTwo\rThree.")
        result = invoke("submit", str(path), "--db", sqlite_url, "--json")
        assert result.exit_code == 0, result.stderr
        with WorkflowStateManager(sqlite_url) as store:
            row = store.load_row("crlf")
        assert row is not None and row.initial_script == "One line.\nTwo\nThree."

    def test_directory_is_refused(self, tmp_path: Path) -> None:
        """A directory given as the story file exits 2."""
        result = invoke("run", str(tmp_path))
        assert result.exit_code == ExitCode.USAGE and "directory" in one_error_line(result)


class TestResume:
    def test_interrupted_workflow_completes(self, database_url: str) -> None:
        """`resume` continues a workflow stopped mid-review and completes it as stored."""
        with WorkflowStateManager(database_url) as store:
            interrupted_workflow(store)
        result = invoke("resume", "s-1", "--db", database_url, "--json")
        assert result.exit_code == 0, result.stderr
        with WorkflowStateManager(database_url) as store:
            stored = store.load_state("s-1")
        assert stored is not None and stored.state is WorkflowState.COMPLETE
        assert json.loads(result.stdout) == roundtrip(stored.to_dict())
        assert stored.quality_scores[0] == 60.0 and len(stored.quality_scores) >= 2
        assert "resuming from reviewing" in result.stderr

    def test_complete_workflow_is_shown_as_stored(self, sqlite_url: str, story_file: Path) -> None:
        """Resuming a COMPLETE workflow exits 0 with its stored result and runs nothing."""
        first = invoke("run", str(story_file), "--db", sqlite_url, "--json", "-q")
        again = invoke("resume", "keepers_cat", "--db", sqlite_url, "--json")
        assert again.exit_code == 0 and json.loads(again.stdout) == json.loads(first.stdout)
        assert "v1 review" not in again.stderr

    def test_failing_stage_exits_1_and_prints_the_failed_result(
        self, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A stage failing again on resume exits 1; --json still prints the FAILED result."""
        with WorkflowStateManager(database_url) as store:
            failed_workflow(store)
        with FakeLLMServer() as server:
            server.enqueue_error(500, "model overloaded")
            monkeypatch.setenv("OPENAI_BASE_URL", server.url)
            monkeypatch.setenv("OPENAI_API_KEY", "test-key")
            result = invoke(
                "resume", "bad", "--db", database_url, "--editor", "openai", "--json", "-q"
            )
        assert result.exit_code == ExitCode.WORKFLOW_FAILED
        line = one_error_line(result)
        assert "polish failed after 1 attempt(s)" in line and "model overloaded" in line
        assert "run 'story-fsm resume bad'" in line
        assert json.loads(result.stdout)["state"] == "failed"

    def test_unknown_story_exits_2(self, store: WorkflowStateManager, database_url: str) -> None:
        """Resuming a story id with no workflow exits 2 with a one-line message."""
        result = invoke("resume", "ghost", "--db", database_url)
        assert result.exit_code == ExitCode.USAGE
        assert "no workflow for story 'ghost'" in one_error_line(result)

    def test_control_characters_in_an_id_are_not_echoed_raw(self, sqlite_url: str) -> None:
        """An id with an escape sequence is refused (no workflow can have it), shown escaped."""
        invoke("db", "upgrade", "--db", sqlite_url)
        result = invoke("status", "x\x1b[2Jy", "--db", sqlite_url)
        line = one_error_line(result)
        assert result.exit_code == ExitCode.USAGE
        assert "\x1b" not in result.stderr
        assert r"control characters" in line and r"'x\x1b[2Jy'" in line

    @pytest.mark.parametrize("story_id", ["x\x1b[2Jy", "no\u00a0break", "tab\there", "it's"])
    def test_quoted_ids_are_the_same_id_to_bash(self, story_id: str) -> None:
        """What the hints print is one shell word that bash reads back as the very id."""
        import subprocess

        from story_fsm.cli._errors import shell_quote

        echoed = subprocess.run(
            ["bash", "-c", f"printf %s {shell_quote(story_id)}"],
            capture_output=True,
            check=True,
        ).stdout
        assert echoed.decode("utf-8") == story_id


class TestStatus:
    def test_json_is_the_stored_summary(
        self, store: WorkflowStateManager, database_url: str
    ) -> None:
        """`status --json` prints the workflow's stored summary."""
        failed_workflow(store)
        result = invoke("status", "bad", "--db", database_url, "--json")
        assert result.exit_code == 0, result.stderr
        row = store.load_row("bad")
        assert row is not None
        assert json.loads(result.stdout) == roundtrip(row.summary.to_dict())

    def test_table_names_state_score_and_error(
        self, store: WorkflowStateManager, database_url: str
    ) -> None:
        """The human status shows state, title, last score, seq and the failure's text."""
        failed_workflow(store)
        out = invoke("status", "bad", "--db", database_url).stdout
        for expected in ("failed", "40.0", "polisher down", "step (seq)", "lease", "started"):
            assert expected in out

    def test_unknown_story_exits_2(self, store: WorkflowStateManager, database_url: str) -> None:
        """An unknown story id exits 2 with one line naming it."""
        result = invoke("status", "ghost", "--db", database_url)
        assert result.exit_code == ExitCode.USAGE and "'ghost'" in one_error_line(result)

    def test_missing_sqlite_file_is_not_created(self, tmp_path: Path) -> None:
        """A read command on a SQLite file that does not exist exits 2 and creates nothing."""
        result = invoke("status", "x", "--db", f"sqlite:///{tmp_path}/typo.db")
        assert result.exit_code == ExitCode.USAGE and "no database file" in one_error_line(result)
        assert not (tmp_path / "typo.db").exists()

    def test_a_read_only_uri_shows_the_workflow_and_refuses_a_run(
        self, tmp_path: Path, story_file: Path
    ) -> None:
        """Read commands work on a database opened read-only (mode=ro); a run exits 4 with the
        reason, and nothing is written; a missing file named by a URI exits 2, creating none."""
        path = tmp_path / "story_fsm.db"
        assert invoke("run", str(story_file), "--db", f"sqlite:///{path}").exit_code == 0
        before = path.read_bytes()
        read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
        for command in ("status", "history"):
            result = invoke(command, story_file.stem, "--db", read_only)
            assert result.exit_code == 0, result.stderr
            assert "complete" in result.stdout
        result = invoke("run", str(story_file), "--db", read_only, "--story-id", "again")
        assert result.exit_code == ExitCode.DATABASE
        assert "opened read-only" in one_error_line(result)
        assert path.read_bytes() == before
        result = invoke("status", "x", "--db", f"sqlite:///file:{tmp_path}/typo.db?uri=true")
        assert result.exit_code == ExitCode.USAGE and "no database file" in one_error_line(result)
        assert not (tmp_path / "typo.db").exists()


class TestShow:
    def test_prints_the_polished_story_as_a_file_run_reads_back(
        self, database_url: str, story_file: Path, tmp_path: Path
    ) -> None:
        """`show` prints the current title and script; written with -o and run again, the
        new workflow starts from exactly that version."""
        assert invoke("run", str(story_file), "--db", database_url, "-q").exit_code == 0
        with WorkflowStateManager(database_url) as store:
            done = store.load_state("keepers_cat")
        assert done is not None and done.final_script != done.initial_script
        shown = invoke("show", "keepers_cat", "--db", database_url)
        assert shown.exit_code == 0 and shown.stderr == ""
        assert shown.stdout.startswith(f"{done.final_title}\n\n{done.final_script}")
        again = tmp_path / "polished.txt"
        written = invoke("show", "keepers_cat", "--db", database_url, "-o", str(again))
        assert written.exit_code == 0 and written.stdout == "" and str(again) in written.stderr
        assert again.read_text(encoding="utf-8") == shown.stdout
        assert invoke("run", str(again), "--db", database_url, "-q").exit_code == 0
        with WorkflowStateManager(database_url) as store:
            rerun = store.load_state("polished")
        assert rerun is not None
        assert (rerun.initial_title, rerun.initial_script) == (done.final_title, done.final_script)

    def test_initial_prints_the_submitted_version(self, sqlite_url: str, story_file: Path) -> None:
        """--initial prints the story as it was submitted, not as polished."""
        assert invoke("run", str(story_file), "--db", sqlite_url, "-q").exit_code == 0
        with WorkflowStateManager(sqlite_url) as store:
            done = store.load_state("keepers_cat")
        assert done is not None
        out = invoke("show", "keepers_cat", "--initial", "--db", sqlite_url).stdout
        assert out == f"{done.initial_title}\n\n{done.initial_script}\n"
        assert done.final_script not in out

    def test_json_is_the_stored_result(
        self, store: WorkflowStateManager, database_url: str, tmp_path: Path
    ) -> None:
        """--json prints WorkflowResult.to_dict() (as `run --json` does), to stdout or -o."""
        failing_then_passing(store)
        stored = store.load_state("s-1")
        assert stored is not None
        expected = roundtrip(stored.to_dict())
        result = invoke("show", "s-1", "--db", database_url, "--json")
        assert result.exit_code == 0 and json.loads(result.stdout) == expected
        target = tmp_path / "s-1.json"
        written = invoke("show", "s-1", "--db", database_url, "--json", "-o", str(target))
        assert written.exit_code == 0 and written.stdout == ""
        assert json.loads(target.read_text(encoding="utf-8")) == expected

    def test_a_workflow_not_complete_shows_its_latest_version_with_a_note(
        self, store: WorkflowStateManager, database_url: str
    ) -> None:
        """Mid-run (here REVIEWING after a crash) it is the latest committed version; stderr
        says the workflow is not COMPLETE yet, stdout holds the story only."""
        interrupted_workflow(store)
        row = store.load_row("s-1")
        assert row is not None and row.summary.state is WorkflowState.REVIEWING
        result = invoke("show", "s-1", "--db", database_url)
        assert result.exit_code == 0
        assert result.stdout == f"{row.summary.title}\n\n{row.script}\n"
        assert "REVIEWING, not COMPLETE" in result.stderr
        assert f"step {row.summary.seq}" in result.stderr

    def test_a_pipe_gets_the_text_as_stored(self, sqlite_url: str, tmp_path: Path) -> None:
        """Not a terminal, the title's control characters are printed as they are (data for
        the next tool); a terminal gets them escaped (tests/test_cli_subprocess.py)."""
        story = tmp_path / "evil.txt"
        story.write_text("Evil \x1b[2J title\nThe cat sat on the mat. It was warm.\n")
        assert invoke("run", str(story), "--db", sqlite_url, "-q").exit_code == 0
        out = invoke("show", "evil", "--initial", "--db", sqlite_url).stdout
        assert out.startswith("Evil \x1b[2J title\n\n")

    def test_unknown_story_and_json_with_initial_exit_2(
        self, store: WorkflowStateManager, database_url: str, tmp_path: Path
    ) -> None:
        """An unknown id exits 2 naming it; --json with --initial exits 2 before any database
        is opened (the missing file is neither reported nor created)."""
        result = invoke("show", "ghost", "--db", database_url)
        assert result.exit_code == ExitCode.USAGE and "'ghost'" in one_error_line(result)
        missing = tmp_path / "none.db"
        result = invoke("show", "x", "--json", "--initial", "--db", f"sqlite:///{missing}")
        assert result.exit_code == ExitCode.USAGE and "drop --initial" in one_error_line(result)
        assert not missing.exists()


class TestHistory:
    def test_failed_attempt_has_its_own_line_with_the_error(
        self, store: WorkflowStateManager, database_url: str
    ) -> None:
        """`history` shows the failed attempt as a line carrying its error text."""
        failing_then_passing(store)
        result = invoke("history", "s-1", "--db", database_url)
        assert result.exit_code == 0, result.stderr
        failed = [line for line in result.stdout.splitlines() if "attempt_failed" in line]
        assert len(failed) == 1 and "flaky network" in failed[0] and "polish #1" in failed[0]
        reviewed = [line for line in result.stdout.splitlines() if "reviewed" in line]
        assert "60.0" in reviewed[0] and "reviewing → polishing" in reviewed[0]

    def test_json_lists_every_record(self, store: WorkflowStateManager, database_url: str) -> None:
        """`history --json` prints every stored record, in order."""
        failing_then_passing(store)
        result = invoke("history", "s-1", "--db", database_url, "--json")
        expected = [record.to_dict() for record in store.history("s-1")]
        assert json.loads(result.stdout) == roundtrip(expected)

    def test_unknown_story_exits_2(self, store: WorkflowStateManager, database_url: str) -> None:
        """An unknown story id exits 2."""
        result = invoke("history", "ghost", "--db", database_url)
        assert result.exit_code == ExitCode.USAGE and "'ghost'" in one_error_line(result)

    @pytest.mark.parametrize("value", ["2", "1"])
    def test_interval_without_follow_exits_2(
        self, store: WorkflowStateManager, database_url: str, tmp_path: Path, value: str
    ) -> None:
        """--interval without --follow exits 2 saying it needs --follow, even at the default
        value, before any database is opened (a missing file is not created)."""
        failing_then_passing(store)
        result = invoke("history", "s-1", "--interval", value, "--db", database_url)
        assert result.exit_code == ExitCode.USAGE and result.stdout == ""
        assert "--interval needs --follow" in one_error_line(result)
        missing = tmp_path / "none.db"
        result = invoke("history", "x", "--interval", value, "--db", f"sqlite:///{missing}")
        assert result.exit_code == ExitCode.USAGE and "needs --follow" in one_error_line(result)
        assert not missing.exists()


class TestHistoryFollow:
    def test_a_finished_workflow_is_printed_line_by_line_and_follow_ends(
        self, store: WorkflowStateManager, database_url: str
    ) -> None:
        """--follow on a finished workflow prints one line per record, in order, and exits 0;
        with --json, one object per line, as `history --json` gives them."""
        failing_then_passing(store)
        records = store.history("s-1")
        lines = invoke("history", "s-1", "-f", "--db", database_url).stdout.splitlines()
        assert [int(line.split()[0]) for line in lines] == [r.seq for r in records]
        assert all(r.trigger.value in line for r, line in zip(records, lines, strict=True))
        assert "flaky network" in next(line for line in lines if "attempt_failed" in line)
        objects = invoke("history", "s-1", "-f", "--json", "--db", database_url).stdout
        parsed = [json.loads(line) for line in objects.splitlines()]
        assert parsed == roundtrip([r.to_dict() for r in records])

    def test_unknown_story_and_bad_interval_are_usage_errors(
        self, store: WorkflowStateManager, database_url: str
    ) -> None:
        """An unknown story exits 2 as without --follow; --interval 0 exits 2, printing nothing."""
        ghost = invoke("history", "ghost", "-f", "--db", database_url)
        assert ghost.exit_code == ExitCode.USAGE and "'ghost'" in one_error_line(ghost)
        failing_then_passing(store)
        fast = invoke("history", "s-1", "-f", "--interval", "0", "--db", database_url)
        assert fast.exit_code == ExitCode.USAGE and fast.stdout == ""

    @staticmethod
    def after_each_look(
        monkeypatch: pytest.MonkeyPatch,
        store: WorkflowStateManager,
        method: str,
        writes: list[Callable[[], object]],
    ) -> None:
        """After each of the command's calls of *method*, the next of *writes* is committed
        (by the test's own store), as another process would commit it between two reads."""
        real = getattr(WorkflowStateManager, method)

        def then_write(self: WorkflowStateManager, *args: Any, **kwargs: Any) -> Any:
            found = real(self, *args, **kwargs)
            if self is not store and writes:
                writes.pop(0)()
            return found

        monkeypatch.setattr(WorkflowStateManager, method, then_write)

    def test_a_workflow_deleted_while_followed_is_said_to_be(
        self, monkeypatch: pytest.MonkeyPatch, store: WorkflowStateManager, database_url: str
    ) -> None:
        """Deleted after its first record was printed: exit 2 saying it was deleted while
        followed, not that it was never started."""
        StoryWorkflowOrchestrator(ScriptedReviewer(), ScriptedPolisher(), store).submit(
            "s-1", "T", "S", {}
        )
        self.after_each_look(monkeypatch, store, "history", [lambda: store.delete_workflow("s-1")])
        result = invoke("history", "s-1", "-f", "--interval", "0.05", "--db", database_url)
        assert result.exit_code == ExitCode.USAGE
        assert [line.split()[3] for line in result.stdout.splitlines()] == ["submit"]
        assert "'s-1' was deleted while it was followed" in one_error_line(result)

    def test_a_new_workflow_of_the_same_id_is_not_taken_for_the_followed_one(
        self, monkeypatch: pytest.MonkeyPatch, store: WorkflowStateManager, database_url: str
    ) -> None:
        """Deleted, then run again under its id between two looks: the new workflow's records
        are not printed as the rest of the old one's; exit 2, it was deleted."""
        StoryWorkflowOrchestrator(ScriptedReviewer(), ScriptedPolisher(), store).submit(
            "s-1", "T", "S", {}
        )

        def delete_and_run_again() -> None:
            store.delete_workflow("s-1")
            failing_then_passing(store)

        self.after_each_look(monkeypatch, store, "history", [delete_and_run_again])
        result = invoke("history", "s-1", "-f", "--interval", "0.05", "--db", database_url)
        assert result.exit_code == ExitCode.USAGE, result.stdout
        assert [line.split()[3] for line in result.stdout.splitlines()] == ["submit"]
        assert "'s-1' was deleted while it was followed" in one_error_line(result)

    def test_a_failed_workflow_retried_between_two_reads_is_followed_on(
        self, monkeypatch: pytest.MonkeyPatch, store: WorkflowStateManager, database_url: str
    ) -> None:
        """Read FAILED, then re-queued before its records were read: the retry row is no
        end; the follower reads the workflow again and prints it to COMPLETE."""
        failed_workflow(store, "bad")
        config = WorkflowConfig(retry_backoff_seconds=0)
        again = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(97, "publish")), ScriptedPolisher(), store, config
        )
        self.after_each_look(
            monkeypatch,
            store,
            "load_row",
            [lambda: again.requeue("bad"), lambda: None, lambda: again.resume("bad")],
        )
        result = invoke("history", "bad", "-f", "--interval", "0.05", "--db", database_url)
        assert result.exit_code == 0, result.stderr
        lines = result.stdout.splitlines()
        assert [int(line.split()[0]) for line in lines] == [r.seq for r in store.history("bad")]
        triggers = [line.split()[3] for line in lines]
        assert triggers[triggers.index("fail") + 1] == "retry" and "→ complete" in lines[-1]


class TestList:
    def test_state_filter(self, store: WorkflowStateManager, database_url: str) -> None:
        """`list --state failed` shows only the failed workflows."""
        failing_then_passing(store, "ok-1")
        failed_workflow(store, "bad-1")
        data = json.loads(
            invoke("list", "--state", "failed", "--db", database_url, "--json").stdout
        )
        assert [item["story_id"] for item in data] == ["bad-1"]
        table = invoke("list", "--state", "failed", "--db", database_url).stdout
        assert "bad-1" in table and "ok-1" not in table
        everything = invoke("list", "--db", database_url, "--json").stdout
        assert [s["story_id"] for s in json.loads(everything)] == ["ok-1", "bad-1"]

    def test_limit_offset_and_newest_page_the_list(
        self, store: WorkflowStateManager, database_url: str
    ) -> None:
        """`list --newest -n 1` is the latest workflow; --offset pages on; -n 0 exits 2."""
        failing_then_passing(store, "ok-1")
        failed_workflow(store, "bad-1")

        def listed(*args: str) -> list[str]:
            result = invoke("list", *args, "--db", database_url, "--json")
            assert result.exit_code == 0, result.stderr
            return [item["story_id"] for item in json.loads(result.stdout)]

        assert listed("--newest", "-n", "1") == ["bad-1"]
        assert listed("--limit", "1", "--offset", "1") == ["bad-1"]
        assert listed("--newest", "--offset", "1") == ["ok-1"]
        assert "bad-1" in invoke("list", "--newest", "-n", "1", "--db", database_url).stdout
        for bad in (("-n", "0"), ("--offset", "-1"), ("-n", str(2**63))):
            result = invoke("list", *bad, "--db", database_url)
            assert result.exit_code == ExitCode.USAGE, (bad, result.stderr)

    def test_empty_list_says_so_on_stderr(
        self, store: WorkflowStateManager, database_url: str
    ) -> None:
        """With no workflows, stdout stays empty and stderr says none matched."""
        result = invoke("list", "--state", "complete", "--db", database_url)
        assert result.exit_code == 0 and result.stdout == ""
        assert "no workflows in state complete" in result.stderr

    def test_an_offset_past_the_end_says_so_not_that_there_are_none(
        self, store: WorkflowStateManager, database_url: str
    ) -> None:
        """A page past the last workflow is empty; stderr says that it is past them, not that
        the database holds none."""
        failing_then_passing(store, "ok-1")
        failed_workflow(store, "bad-1")
        result = invoke("list", "--offset", "2", "--db", database_url)
        assert result.exit_code == 0 and result.stdout == ""
        assert "no workflows past the first 2 in " in result.stderr
        failed = invoke("list", "--state", "failed", "--offset", "5", "--db", database_url)
        assert "no workflows in state failed past the first 5 in " in failed.stderr

    def test_unknown_state_is_a_usage_error(self, sqlite_url: str) -> None:
        """An unknown --state exits 2."""
        assert invoke("list", "--state", "nope", "--db", sqlite_url).exit_code == ExitCode.USAGE


class TestDelete:
    def test_yes_deletes_the_workflow_and_its_history(
        self, database_url: str, story_file: Path
    ) -> None:
        """--yes deletes at once; the story is unknown afterwards, another one is kept."""
        assert invoke("run", str(story_file), "--db", database_url, "-q").exit_code == 0
        other = invoke("run", str(story_file), "--story-id", "other", "--db", database_url, "-q")
        assert other.exit_code == 0
        deleted = invoke("delete", "keepers_cat", "--yes", "--db", database_url)
        assert deleted.exit_code == 0, deleted.stderr
        assert deleted.stdout == "deleted workflow 'keepers_cat' (COMPLETE)\n"
        gone = invoke("status", "keepers_cat", "--db", database_url)
        assert gone.exit_code == ExitCode.USAGE and "no workflow" in one_error_line(gone)
        with WorkflowStateManager(database_url) as store:
            assert [s.story_id for s in store.list_workflows()] == ["other"]
            assert store.history("other")

    def test_without_yes_and_no_terminal_nothing_is_deleted(
        self, sqlite_url: str, story_file: Path
    ) -> None:
        """No terminal to ask on and no --yes: a usage error, and the workflow stays."""
        assert invoke("run", str(story_file), "--db", sqlite_url, "-q").exit_code == 0
        refused = invoke("delete", "keepers_cat", "--db", sqlite_url)
        assert refused.exit_code == ExitCode.USAGE
        assert "--yes" in one_error_line(refused)
        with WorkflowStateManager(sqlite_url) as store:
            assert store.load_row("keepers_cat") is not None

    def test_a_workflow_a_live_process_runs_is_refused_with_exit_3(self, database_url: str) -> None:
        """A live lease: exit 3, the holder named, every row kept; --json prints nothing."""
        rows = _held_by_host_b(database_url, "busy")
        refused = invoke("delete", "busy", "--yes", "--json", "--db", database_url)
        assert refused.exit_code == ExitCode.LOST_RACE and refused.stdout == ""
        assert "held by host-b:42" in one_error_line(refused)
        with WorkflowStateManager(database_url) as store:
            assert len(store.history("busy")) == rows

    def test_a_held_workflow_is_refused_before_asking_for_yes(self, database_url: str) -> None:
        """Without --yes and no terminal, a workflow a live process runs exits 3 for its
        lease, not 2 for the missing --yes: the lease is checked before any question."""
        rows = _held_by_host_b(database_url, "busy")
        refused = invoke("delete", "busy", "--db", database_url)
        assert refused.exit_code == ExitCode.LOST_RACE and refused.stdout == ""
        assert "held by host-b:42" in one_error_line(refused)
        with WorkflowStateManager(database_url) as store:
            assert len(store.history("busy")) == rows

    def test_a_workflow_claimed_after_the_check_is_still_refused(
        self, monkeypatch: pytest.MonkeyPatch, store: WorkflowStateManager, database_url: str
    ) -> None:
        """Claimed by a worker between the command's read and its deletion (while the user
        answers): the deletion's own check refuses it, exit 3, and every row is kept."""
        StoryWorkflowOrchestrator(ScriptedReviewer(), ScriptedPolisher(), store).submit(
            "s-1", "T", "S", {}
        )
        TestHistoryFollow.after_each_look(
            monkeypatch, store, "load_row", [lambda: store.claim_next(Lease("box-7:123", "t", 600))]
        )
        refused = invoke("delete", "s-1", "--yes", "--db", database_url)
        assert refused.exit_code == ExitCode.LOST_RACE, refused.stderr
        assert "held by box-7:123" in one_error_line(refused)
        assert len(store.history("s-1")) == 1

    def test_unknown_story_is_a_usage_error(self, sqlite_url: str, story_file: Path) -> None:
        assert invoke("run", str(story_file), "--db", sqlite_url, "-q").exit_code == 0
        missing = invoke("delete", "nope", "--yes", "--db", sqlite_url)
        assert missing.exit_code == ExitCode.USAGE and "no workflow" in one_error_line(missing)


class TestPrune:
    def test_dry_run_counts_then_yes_deletes_only_what_ended_before_the_age(
        self, database_url: str, story_file: Path
    ) -> None:
        """--dry-run counts and keeps; --older-than that reaches no workflow deletes none; an
        unfinished workflow is never pruned; --json reports the same numbers."""
        assert invoke("run", str(story_file), "--db", database_url, "-q").exit_code == 0
        queued = invoke("submit", str(story_file), "--story-id", "queued", "--db", database_url)
        assert queued.exit_code == 0
        counted = invoke("prune", "--older-than", "0s", "--dry-run", "--db", database_url)
        assert counted.exit_code == 0, counted.stderr
        assert counted.stdout.startswith("would delete 1 finished workflow(s) ended before ")
        kept = invoke("prune", "--older-than", "1d", "--yes", "--json", "--db", database_url)
        assert kept.exit_code == 0, kept.stderr
        assert json.loads(kept.stdout)["matched"] == json.loads(kept.stdout)["deleted"] == 0
        failed_only = invoke(
            "prune", "--older-than", "0s", "--state", "failed", "--yes", "--db", database_url
        )
        assert failed_only.stdout.startswith("deleted 0 failed workflow(s)")
        done = invoke("prune", "--older-than", "0s", "--yes", "--json", "--db", database_url)
        report = json.loads(done.stdout)
        assert (report["matched"], report["deleted"], report["dry_run"]) == (1, 1, False)
        with WorkflowStateManager(database_url) as store:
            assert [s.story_id for s in store.list_workflows()] == ["queued"]

    @pytest.mark.parametrize("given", ["FAILED", "Failed"])
    def test_state_is_read_in_any_case_as_list_reads_it(
        self, sqlite_url: str, story_file: Path, given: str
    ) -> None:
        """--state FAILED (as status prints it) prunes the failed ones only, as --state failed."""
        assert invoke("run", str(story_file), "--db", sqlite_url, "-q").exit_code == 0
        with WorkflowStateManager(sqlite_url) as store:
            finish_workflow(store, "broken", fail=True)
        pruned = invoke(
            "prune", "--older-than", "0s", "--state", given, "--yes", "--db", sqlite_url
        )
        assert pruned.exit_code == 0, pruned.stderr
        assert pruned.stdout.startswith("deleted 1 failed workflow(s)")
        with WorkflowStateManager(sqlite_url) as store:
            assert [s.story_id for s in store.list_workflows()] == ["keepers_cat"]

    @pytest.mark.parametrize(
        ("args", "named"),
        [
            (["--older-than", "30"], "--older-than"),
            (["--older-than", "5x"], "--older-than"),
            (["--older-than", "-1d"], "--older-than"),
            (["--older-than", "200000d"], "100 years"),
            (["--older-than", "1" + "0" * 400 + "w"], "100 years"),
            (["--older-than", "1d", "--state", "reviewing"], "only finished"),
            (["--older-than", "1d", "--state", "sleeping"], "unknown state"),
        ],
    )
    def test_bad_options_are_usage_errors_and_delete_nothing(
        self, sqlite_url: str, story_file: Path, args: list[str], named: str
    ) -> None:
        assert invoke("run", str(story_file), "--db", sqlite_url, "-q").exit_code == 0
        refused = invoke("prune", *args, "--yes", "--db", sqlite_url)
        assert refused.exit_code == ExitCode.USAGE
        assert named in one_error_line(refused)
        with WorkflowStateManager(sqlite_url) as store:
            assert len(store.list_workflows()) == 1

    def test_without_yes_and_no_terminal_nothing_is_pruned(
        self, sqlite_url: str, story_file: Path
    ) -> None:
        assert invoke("run", str(story_file), "--db", sqlite_url, "-q").exit_code == 0
        refused = invoke("prune", "--older-than", "0s", "--db", sqlite_url)
        assert refused.exit_code == ExitCode.USAGE and "--yes" in one_error_line(refused)
        with WorkflowStateManager(sqlite_url) as store:
            assert len(store.list_workflows()) == 1


class TestDb:
    def test_upgrade_current_downgrade_on_a_fresh_database(self, database_url: str) -> None:
        """`db current` reads none, `upgrade` reaches head, `downgrade base` drops the tables."""
        before = json.loads(invoke("db", "current", "--db", database_url, "--json").stdout)
        assert (before["current"], before["up_to_date"]) == (None, False)
        assert invoke("db", "upgrade", "--db", database_url).exit_code == 0
        after = json.loads(invoke("db", "current", "--db", database_url, "--json").stdout)
        assert after["current"] == head_revision() and after["up_to_date"] is True
        down = invoke("db", "downgrade", "base", "--db", database_url)
        assert down.exit_code == 0, down.stderr
        final = json.loads(invoke("db", "current", "--db", database_url, "--json").stdout)
        assert final["current"] is None
        engine = sa.create_engine(database_url)
        try:
            assert (
                build_schema("story_fsm_").workflows.name
                not in sa.inspect(engine).get_table_names()
            )
        finally:
            engine.dispose()

    def test_downgrade_base_of_a_host_database_changes_nothing(self, database_url: str) -> None:
        """`db downgrade base` on a database without story_fsm's schema exits 0 (revision
        none → none) and adds no story_fsm table to it."""
        engine = sa.create_engine(database_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE host_things (id INTEGER PRIMARY KEY)"))
            down = invoke("db", "downgrade", "base", "--db", database_url)
            assert down.exit_code == 0, down.stderr
            assert "revision none → none" in down.stdout
            assert sa.inspect(engine).get_table_names() == ["host_things"]
        finally:
            engine.dispose()

    def test_current_does_not_create_a_sqlite_file(self, tmp_path: Path) -> None:
        """`db current` on a missing SQLite file reports no revision and creates nothing."""
        result = invoke("db", "current", "--db", f"sqlite:///{tmp_path}/new.db")
        assert result.exit_code == 0 and "revision none" in result.stdout
        assert not (tmp_path / "new.db").exists()

    def test_current_of_a_newer_schema_says_to_upgrade_story_fsm(self, sqlite_url: str) -> None:
        """A revision this story_fsm does not ship: `db upgrade` cannot help, so not advised."""
        assert invoke("db", "upgrade", "--db", sqlite_url).exit_code == 0
        engine = sa.create_engine(sqlite_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE story_fsm_alembic_version SET version_num = '0099'"))
        finally:
            engine.dispose()
        result = invoke("db", "current", "--db", sqlite_url)
        assert result.exit_code == 0
        assert "revision 0099" in result.stdout and "upgrade story_fsm" in result.stdout
        assert "db upgrade" not in result.stdout
        # Migrating from it says the same, not alembic's "Can't locate revision".
        for command in (["upgrade"], ["downgrade", "0001"]):
            moved = invoke("db", *command, "--db", sqlite_url)
            assert moved.exit_code == ExitCode.USAGE
            line = one_error_line(moved)
            assert "'0099'" in line and "upgrade story_fsm" in line and "locate" not in line

    def test_foreign_tables_without_a_revision_get_no_upgrade_advice(self, tmp_path: Path) -> None:
        """Tables named like story_fsm's with no revision: current says so, upgrade exits 2."""
        path = tmp_path / "foreign.db"
        # closing(): sqlite3's own context manager commits but leaves the connection open.
        with closing(sqlite3.connect(path)) as conn, conn:
            conn.execute("CREATE TABLE story_fsm_workflows (id INTEGER PRIMARY KEY)")
        url = f"sqlite:///{path}"
        shown = invoke("db", "current", "--db", url)
        assert shown.exit_code == 0
        assert "no revision" in shown.stdout and "db upgrade" not in shown.stdout
        upgraded = invoke("db", "upgrade", "--db", url)
        assert upgraded.exit_code == ExitCode.USAGE
        assert "carry no story_fsm revision" in one_error_line(upgraded)

    def test_unknown_revision_exits_2(self, sqlite_url: str) -> None:
        """A downgrade to a revision that does not exist exits 2 with one line."""
        assert invoke("db", "upgrade", "--db", sqlite_url).exit_code == 0
        result = invoke("db", "downgrade", "nope", "--db", sqlite_url)
        assert result.exit_code == ExitCode.USAGE and "nope" in one_error_line(result)

    @pytest.mark.parametrize("revision", ["", "head+1"])
    def test_a_revision_alembic_cannot_read_exits_2(self, sqlite_url: str, revision: str) -> None:
        """Revision strings alembic asserts on (rather than refuses) are usage errors too."""
        assert invoke("db", "upgrade", "0001", "--db", sqlite_url).exit_code == 0
        for command in ("upgrade", "downgrade"):
            result = invoke("db", command, revision, "--db", sqlite_url)
            assert result.exit_code == ExitCode.USAGE, result.stderr
            assert "migration refused" in one_error_line(result)
        with closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as conn:
            assert conn.execute("SELECT version_num FROM story_fsm_alembic_version").fetchall() == [
                ("0001",)
            ]

    def test_an_unknown_driver_exits_2(self, tmp_path: Path) -> None:
        """sqlite+aiosqlite:// (a driver story_fsm does not install) is a usage error."""
        (tmp_path / "x.db").touch()
        result = invoke("list", "--db", f"sqlite+aiosqlite:///{tmp_path}/x.db")
        assert result.exit_code == ExitCode.USAGE and "aiosqlite" in one_error_line(result)

    def test_worker_concurrency_is_bounded(self, tmp_path: Path) -> None:
        """--concurrency past the bound is refused before any database is made."""
        result = invoke("worker", "--db", f"sqlite:///{tmp_path}/w.db", "--concurrency", "10**11")
        assert result.exit_code == ExitCode.USAGE
        result = invoke("worker", "--db", f"sqlite:///{tmp_path}/w.db", "--concurrency", "1025")
        assert result.exit_code == ExitCode.USAGE and "1024" in result.stderr
        assert not (tmp_path / "w.db").exists()

    def test_read_commands_do_not_migrate_an_empty_database(self, tmp_path: Path) -> None:
        """A read command on a database without the schema exits 2 naming 'db upgrade'."""
        path = tmp_path / "empty.db"
        engine = sa.create_engine(f"sqlite:///{path}")
        engine.connect().close()  # an empty SQLite file
        engine.dispose()
        result = invoke("list", "--db", f"sqlite:///{path}")
        line = one_error_line(result)
        assert result.exit_code == ExitCode.USAGE and "story-fsm db upgrade" in line
        assert "has no story_fsm schema" in line and "None" not in line

    @pytest.mark.parametrize(
        ("command", "exit_code", "expected"),
        [
            (["list"], ExitCode.USAGE, "has no story_fsm schema"),
            (["status", "x"], ExitCode.USAGE, "story-fsm db upgrade"),
            (["history", "x"], ExitCode.USAGE, "has no story_fsm schema"),
            (["retry", "x"], ExitCode.USAGE, "has no story_fsm schema"),
            (["delete", "x", "--yes"], ExitCode.USAGE, "has no story_fsm schema"),
            (["db", "current"], 0, "revision none"),
            (["db", "downgrade", "base"], ExitCode.USAGE, "nothing to downgrade"),
        ],
    )
    def test_an_empty_sqlite_file_is_left_empty(
        self, tmp_path: Path, command: list[str], exit_code: int, expected: str
    ) -> None:
        """A command that only reads (or finds nothing to do) leaves a 0-byte file 0 bytes:
        opening it would write SQLite's first page (with WAL mode) into it."""
        path = tmp_path / "empty.db"
        path.touch()
        result = invoke(*command, "--db", f"sqlite:///{path}")
        assert result.exit_code == exit_code, result.stderr
        assert expected in (result.stdout if exit_code == 0 else one_error_line(result))
        assert path.stat().st_size == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]

    @pytest.mark.parametrize(
        "command",
        [
            ["submit", "{story}"],
            ["worker", "--stop-when-idle"],
            ["list"],
            ["status", "keepers_cat"],
            ["db", "upgrade"],
            ["db", "current"],
            ["db", "downgrade", "base"],
        ],
    )
    @pytest.mark.parametrize("url", ["sqlite://", "sqlite:///file:m?mode=memory&uri=true"])
    def test_an_in_memory_database_is_refused_but_by_run(
        self, story_file: Path, command: list[str], url: str
    ) -> None:
        """An in-memory database ends with the command: a submit, an upgrade or a worker there
        would do nothing that lasts, a read would find it empty. Exit 2 saying so; a run (which
        prints its result) still uses one."""
        args = [arg.format(story=story_file) for arg in command]
        result = invoke(*args, "--db", url)
        assert result.exit_code == ExitCode.USAGE, result.stdout
        assert "in-memory database" in one_error_line(result)
        ran = invoke("run", str(story_file), "--db", url, "--json")
        assert ran.exit_code == 0, ran.stderr
        assert json.loads(ran.stdout)["story_id"] == "keepers_cat"

    def test_unknown_schema_revision_exits_2(self, sqlite_url: str) -> None:
        """A database stamped with a revision this story_fsm does not know exits 2."""
        WorkflowStateManager(sqlite_url).close()
        engine = sa.create_engine(sqlite_url)
        version_table = build_schema("story_fsm_").version_table
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {version_table} SET version_num = 'f00d'"))
        engine.dispose()
        result = invoke("status", "x", "--db", sqlite_url)
        assert result.exit_code == ExitCode.USAGE and "'f00d'" in one_error_line(result)


class TestDatabaseUrl:
    def test_env_var_is_used_without_db(self, tmp_path: Path) -> None:
        """STORY_FSM_DATABASE_URL names the database when --db is not given."""
        url = f"sqlite:///{tmp_path}/from_env.db"
        assert invoke("db", "upgrade", env={"STORY_FSM_DATABASE_URL": url}).exit_code == 0
        assert (tmp_path / "from_env.db").exists() and not (tmp_path / "story_fsm.db").exists()

    def test_db_option_beats_the_env_var(self, tmp_path: Path) -> None:
        """--db wins over STORY_FSM_DATABASE_URL."""
        env = {"STORY_FSM_DATABASE_URL": f"sqlite:///{tmp_path}/from_env.db"}
        result = invoke("db", "upgrade", "--db", f"sqlite:///{tmp_path}/from_option.db", env=env)
        assert result.exit_code == 0
        assert (tmp_path / "from_option.db").exists() and not (tmp_path / "from_env.db").exists()

    def test_default_is_story_fsm_db_in_the_working_directory(self, tmp_path: Path) -> None:
        """With neither, the database is sqlite:///story_fsm.db in the working directory."""
        assert invoke("db", "upgrade").exit_code == 0
        assert (tmp_path / "story_fsm.db").exists()

    def test_bad_url_exits_2(self) -> None:
        """A URL naming an unsupported database exits 2."""
        result = invoke("list", "--db", "mysql+nothing://x/y")
        assert result.exit_code == ExitCode.USAGE and "mysql" in one_error_line(result)

    @pytest.mark.parametrize(
        "url",
        [
            "mysql://u:hunter2@h/db",
            "postgresql://postgres:hunter2@127.0.0.1:abc/x",
            "oracle://h/db?password=hunter2",
            # Options libpq refuses: a usage error (2), not an unreachable database (4).
            "postgresql://u:hunter2@127.0.0.1/db?sslmod=require",
            "postgresql://u:hunter2@127.0.0.1:70000/db",
            "postgresql://u:hunter2@127.0.0.1/db?connect_timeout=soon",
        ],
    )
    def test_a_refused_url_is_shown_without_its_password(self, url: str) -> None:
        """Refused URLs (unsupported, unparseable, bad options) exit 2, the password masked."""
        result = invoke("list", "--db", url)
        assert result.exit_code == ExitCode.USAGE
        line = one_error_line(result)
        assert "hunter2" not in result.stderr and "***" in line

    def test_unreachable_database_exits_4(self) -> None:
        """A database that refuses the connection exits 4 with one line, password hidden."""
        result = invoke("list", "--db", "postgresql://u:s3cret@127.0.0.1:1/db")
        assert result.exit_code == ExitCode.DATABASE
        assert "s3cret" not in one_error_line(result)


class TestDiagram:
    @pytest.mark.parametrize("fmt", ["mmd", "dot"])
    def test_prints_the_library_diagram(
        self, store: WorkflowStateManager, database_url: str, fmt: str
    ) -> None:
        """`diagram` prints what workflow_diagram() draws for the story."""
        failing_then_passing(store)
        result = invoke("diagram", "s-1", "--format", fmt, "--db", database_url)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.strip() == workflow_diagram(store, "s-1", fmt).strip()

    def test_output_file(
        self, store: WorkflowStateManager, database_url: str, tmp_path: Path
    ) -> None:
        """--output writes the diagram to the file and leaves stdout empty."""
        failing_then_passing(store)
        target = tmp_path / "s-1.mmd"
        result = invoke("diagram", "s-1", "--db", database_url, "--output", str(target))
        assert result.exit_code == 0 and result.stdout == ""
        assert target.read_text().strip() == workflow_diagram(store, "s-1", "mmd").strip()

    @pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
    def test_svg(self, store: WorkflowStateManager, database_url: str) -> None:
        """--format svg prints an SVG document."""
        failing_then_passing(store)
        result = invoke("diagram", "s-1", "--format", "svg", "--db", database_url)
        assert result.exit_code == 0 and "<svg" in result.stdout

    def test_unknown_story_exits_2(self, store: WorkflowStateManager, database_url: str) -> None:
        """A story with no workflow exits 2."""
        result = invoke("diagram", "ghost", "--db", database_url)
        assert result.exit_code == ExitCode.USAGE and "'ghost'" in one_error_line(result)

    def test_formats_match_the_library(self) -> None:
        """The command offers exactly the formats the diagrams package renders."""
        assert sorted(f.value for f in DiagramFormat) == sorted(FORMATS)


@pytest.fixture
def boom_command() -> Iterator[Callable[[BaseException], None]]:
    """Registers a command raising a chosen error, the way an extension module would."""
    raised: list[BaseException] = []

    @app.command("boom")
    def boom() -> None:
        raise raised[0]

    yield raised.append
    app.registered_commands[:] = [c for c in app.registered_commands if c.name != "boom"]


class TestErrorBoundary:
    def test_a_second_ctrl_c_on_the_way_out_keeps_the_story_s_hint(
        self, boom_command: Callable[[BaseException], None]
    ) -> None:
        """Ctrl-C again while the first one's Interrupted unwinds (the store closing): the
        message still names the story and its resume command, with no traceback."""

        class ClosingStore:
            def __enter__(self) -> None:
                return None

            def __exit__(self, *exc: object) -> None:
                raise KeyboardInterrupt  # the second Ctrl-C lands in the close

        def interrupted() -> None:
            with ClosingStore():
                raise Interrupted("s-1")

        try:
            interrupted()
        except KeyboardInterrupt as second:
            boom_command(second)
        result = invoke("boom")
        assert result.exit_code == ExitCode.INTERRUPTED
        assert "story-fsm resume s-1" in one_error_line(result)

    @pytest.mark.parametrize(
        ("error", "code"),
        [
            (StageFailedError("s", Stage.POLISH, 3, None), ExitCode.WORKFLOW_FAILED),
            (ConcurrentAdvanceError("s", "expected step 3"), ExitCode.LOST_RACE),
            (InputValidationError("bad input"), ExitCode.USAGE),
            (WorkflowNotFoundError("s"), ExitCode.USAGE),
            (WorkflowExistsError("s"), ExitCode.USAGE),
            (SchemaVersionError("newer schema"), ExitCode.USAGE),
            (StoreError("database error: gone"), ExitCode.DATABASE),
            (DatabaseBusyError("locked"), ExitCode.DATABASE),
            (InvalidTransitionError("can't polish when in COMPLETE"), ExitCode.USAGE),
            (StoryFSMError("no Graphviz"), ExitCode.WORKFLOW_FAILED),
            (Interrupted("s"), ExitCode.INTERRUPTED),
        ],
        ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else "",
    )
    def test_each_error_class_maps_to_its_exit_code(
        self, boom_command: Callable[[BaseException], None], error: BaseException, code: ExitCode
    ) -> None:
        """Any story_fsm error a command raises exits with its code and one stderr line."""
        boom_command(error)
        result = invoke("boom")
        assert result.exit_code == code == exit_code_for(error)
        assert one_error_line(result) == f"error: {message_for(error)}"

    def test_ctrl_c_in_any_command_is_one_line_and_130(
        self, boom_command: Callable[[BaseException], None]
    ) -> None:
        """A KeyboardInterrupt outside a workflow run (submit, list ...) exits 130, no traceback."""
        boom_command(KeyboardInterrupt())
        result = invoke("boom")
        assert result.exit_code == ExitCode.INTERRUPTED
        assert one_error_line(result) == "error: interrupted"

    def test_ctrl_c_before_a_run_stored_its_story_says_nothing_was_written(
        self, sqlite_url: str, story_file: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Interrupted while its first write waits (a locked file, say): no resume hint."""

        def interrupted(*args: Any, **kwargs: Any) -> Any:
            raise KeyboardInterrupt

        monkeypatch.setattr(WorkflowStateManager, "create_with_record", interrupted)
        result = invoke("run", str(story_file), "--story-id", "s-1", "--db", sqlite_url)
        assert result.exit_code == ExitCode.INTERRUPTED
        assert one_error_line(result) == (
            "error: interrupted before story 's-1' was stored; nothing was written"
        )

    def test_hints_for_an_id_that_starts_with_a_dash_run_as_shown(
        self, store: WorkflowStateManager, database_url: str
    ) -> None:
        """A hint names '-x' after '--' (or as --story-id=-x), where no option takes it."""
        assert "story-fsm resume -- -draft" in message_for(Interrupted("-draft"))
        assert "story-fsm status -- -draft" in message_for(ConcurrentAdvanceError("-draft"))
        assert "--story-id=-draft" in message_for(WorkflowNotFoundError("-draft"))
        result = invoke("status", "--db", database_url, "--", "-draft")
        assert one_error_line(result).startswith("error: no workflow for story '-draft'")

    def test_debug_prints_the_traceback(
        self, boom_command: Callable[[BaseException], None]
    ) -> None:
        """--debug adds the traceback before the error line; the exit code is unchanged."""
        boom_command(WorkflowNotFoundError("s"))
        result = invoke("--debug", "boom")
        assert result.exit_code == ExitCode.USAGE
        assert "Traceback" in result.stderr and result.stderr.rstrip().splitlines()[-1].startswith(
            "error: "
        )

    def test_multiline_messages_are_folded(self) -> None:
        """A message with line breaks is printed on one line."""
        assert message_for(StoreError("first\nsecond")) == "first second"

    def test_race_and_busy_messages_name_commands(self) -> None:
        """The lost-race and locked-database lines give an operator's next step, not an API's."""
        line = message_for(ConcurrentAdvanceError("s 1", "expected step 2, the database is at 3"))
        assert "(expected step 2, the database is at 3)" in line
        assert "story-fsm status 's 1'" in line and "reload" not in line
        busy = message_for(DatabaseBusyError("... raise busy_timeout_seconds ..."))
        assert "busy_timeout_seconds" not in busy and "PostgreSQL" in busy
        assert "?timeout=SECONDS" in busy

    def test_the_url_s_timeout_is_how_long_a_command_waits_for_the_lock(
        self, sqlite_url: str, story_file: Path, tmp_path: Path
    ) -> None:
        """An operator sets the busy timeout in --db (?timeout=0.2): a lock held for 3 s
        outlasts it, and the command exits 4 without writing (with the default 30 s, it
        would wait the lock out and run)."""
        WorkflowStateManager(
            sqlite_url
        ).close()  # the schema, so the lock is all that is in the way
        blocker = sqlite3.connect(
            str(tmp_path / "story_fsm.db"), isolation_level=None, check_same_thread=False
        )
        blocker.execute("BEGIN IMMEDIATE")
        release = threading.Timer(3.0, blocker.execute, ("ROLLBACK",))
        release.start()
        try:
            result = invoke("run", str(story_file), "--db", f"{sqlite_url}?timeout=0.2", "-q")
        finally:
            release.cancel()
            release.join()
            blocker.close()
        assert result.exit_code == ExitCode.DATABASE, result.stderr
        assert "past the busy timeout" in one_error_line(result)
        with WorkflowStateManager(sqlite_url) as store:
            assert store.list_workflows() == []

    def test_help_epilog_lists_the_exit_codes(self) -> None:
        """`--help` documents every exit code."""
        out = invoke("--help").stdout
        for code in ExitCode:
            assert f"{int(code)} " in out

    def test_missing_extension_modules_are_skipped(self) -> None:
        """load_extensions imports the listed modules that exist and skips the others."""
        assert "story_fsm.cli._workers" not in EXTENSION_MODULES  # built in now
        assert load_extensions(["story_fsm.cli._no_such_module", "tests.stages"]) == [
            "tests.stages"
        ]


def _events() -> list[tuple[str, dict[str, Any]]]:
    config = {"max_iterations": 3, "quality_threshold": 90}
    return [
        ("workflow_started", {"story_id": "s", "title": "T [bold]", "config": config}),
        ("iteration_started", {"story_id": "s", "iteration": 1}),
        ("stage_started", {"story_id": "s", "stage": "review", "iteration": 1}),
        ("review_complete", {"story_id": "s", "iteration": 1, "quality_score": 61.5, "decision": "polish"}),
        ("stage_started", {"story_id": "s", "stage": "polish", "iteration": 1}),
        ("stage_retry", {"story_id": "s", "stage": "polish", "iteration": 1, "attempt": 1,
                         "error": "RuntimeError: down", "wait_seconds": 2.0}),
        ("polish_complete", {"story_id": "s", "iteration": 1, "changes_count": 4}),
        ("review_complete", {"story_id": "s", "iteration": 2, "quality_score": 93.0, "decision": "publish"}),
        ("workflow_complete", {"story_id": "s", "decision": "publish", "final_quality_score": 93.0,
                               "iterations": 2, "total_cost": 0.0}),
        ("some_future_event", {"story_id": "s"}),
    ]  # fmt: skip


class TestProgressView:
    def test_plain_lines_when_not_a_terminal(self) -> None:
        """Off a terminal each step is one plain line: scores, polish, retry, final decision."""
        buffer = io.StringIO()
        with ProgressView(Console(file=buffer, width=120, markup=False)) as view:
            for event, data in _events():
                view(event, data)
        lines = buffer.getvalue().splitlines()
        assert "\x1b" not in buffer.getvalue()
        assert lines[0].startswith("▶ s: T [bold]")
        assert "v1 review" in lines[1] and "61.5" in lines[1] and lines[1].endswith("polish")
        assert "attempt 1 failed: RuntimeError: down; retrying in 2s" in lines[2]
        assert "4 changes (attempt 2)" in lines[3]
        assert "93.0" in lines[4] and lines[5].startswith("✔ publish at 93.0 after 2 iterations")

    def test_live_spinner_on_a_terminal_tracks_the_attempt(self) -> None:
        """On a terminal a spinner shows the stage in flight and its attempt number."""
        buffer = io.StringIO()
        console = Console(file=buffer, width=120, force_terminal=True, markup=False)
        with ProgressView(console) as view:
            for event, data in _events()[:6]:
                view(event, data)
            assert (view.stage, view.iteration, view.attempt) == ("polish", 1, 2)
            assert view._live is not None and view._live.is_started
        assert view._live is None
        assert "61.5" in buffer.getvalue()

    @pytest.mark.parametrize(
        ("score", "bar"),
        [(0, " " * 20), (100, "█" * 20), (50, "█" * 10 + " " * 10), (2.5, "▌" + " " * 19)],
    )
    def test_score_bar(self, score: float, bar: str) -> None:
        """Scores draw as 20 cells of block characters, in eighths."""
        assert score_bar(score) == bar
