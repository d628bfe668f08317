"""The ``story-fsm`` command line as real processes: exit codes, streams, crashes, a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from story_fsm import WorkflowState, WorkflowStateManager
from story_fsm._records import Lease
from story_fsm.cli import ExitCode
from tests.fake_llm_server import FakeLLMServer
from tests.hermetic import HOST_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = Path(sys.executable).with_name("story-fsm")

pytestmark = pytest.mark.slow

STORY = (
    "The Keeper's Cat\n"
    "It was a dark and stormy night.  Elsie really noticed that the cat was missing. "
    "She had basically just finished winding the great lamp , and the the wind howled "
    "around the tower.\n"
)

# Settings of the developer's shell that must not steer the child processes.
_DROPPED_ENV = HOST_SETTINGS


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    return {**env, **extra}


def stored_state(url: str, story_id: str = "keepers_cat") -> WorkflowState | None:
    """The state *story_id* is stored in at *url* (None: no such workflow)."""
    with WorkflowStateManager(url) as store:
        row = store.load_row(story_id)
    return None if row is None else row.summary.state


def piped_cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    """Start the command line with stdout and stderr on pipes, for a test to close one."""
    return subprocess.Popen(
        [sys.executable, "-m", "story_fsm.cli", *args],
        cwd=cwd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli(
    *args: str, cwd: Path, script: bool = False, redirect: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the command line to completion (``python -m story_fsm.cli``, or the console script).

    *redirect* is a shell redirection applied to it first (``>&-`` closes its stdout).
    """
    command = [str(CONSOLE_SCRIPT)] if script else [sys.executable, "-m", "story_fsm.cli"]
    if redirect:
        command = ["sh", "-c", f'exec "$@" {redirect}', "sh", *command]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def spawn_victim(url: str, calls: Path, story_id: str, hang_at: str) -> subprocess.Popen[str]:
    """Start tests/proc_entry.py running *story_id*; it hangs in the stage *hang_at*."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.proc_entry", "run", url, str(calls), story_id, hang_at],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_call(calls: Path, line: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if calls.exists() and line in calls.read_text().splitlines():
            return
        assert proc.poll() is None, f"child exited early: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"child never reached {line!r}")


def call_counts(calls: Path) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    for line in calls.read_text().splitlines():
        _story, stage, iteration = line.split()
        counts[(stage, int(iteration))] = counts.get((stage, int(iteration)), 0) + 1
    return counts


@pytest.fixture
def story_file(tmp_path: Path) -> Path:
    path = tmp_path / "keepers_cat.txt"
    path.write_text(STORY, encoding="utf-8")
    return path


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


def _review(score: float, decision: str) -> dict[str, Any]:
    return {
        "decision": decision,
        "quality_score": score,
        "criteria": {"hook": score, "clarity": score},
        "feedback": ["Tighten the opening."],
    }


class TestProcess:
    def test_missing_file_exits_2_with_one_line_and_no_traceback(self, tmp_path: Path) -> None:
        """`python -m story_fsm.cli run` on a missing file: exit 2, one stderr line, no stdout."""
        done = cli("run", "nowhere.txt", cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr.splitlines() == ["error: story file 'nowhere.txt' does not exist"]
        assert done.stdout == ""
        assert not (tmp_path / "story_fsm.db").exists()

    @pytest.mark.skipif(
        not CONSOLE_SCRIPT.exists(), reason="story-fsm console script not installed"
    )
    def test_console_script_json_run_matches_the_store(
        self, database_url: str, story_file: Path, tmp_path: Path
    ) -> None:
        """The installed `story-fsm run --json` prints only the stored result on stdout."""
        done = cli(
            "run", str(story_file), "--db", database_url, "--json", cwd=tmp_path, script=True
        )
        assert done.returncode == 0, done.stderr
        with WorkflowStateManager(database_url) as store:
            stored = store.load_state("keepers_cat")
        assert stored is not None
        assert json.loads(done.stdout) == json.loads(json.dumps(stored.to_dict()))
        assert "v1 review" in done.stderr and "\x1b[" not in done.stderr  # a pipe: plain lines

    def test_sigint_exits_130_with_a_resume_hint(
        self, server: FakeLLMServer, story_file: Path, tmp_path: Path
    ) -> None:
        """Ctrl-C during a stage exits 130, says how to resume, and leaves the workflow resumable
        and unheld: a delete right after needs no wait."""
        server.enqueue_completion(_review(70, "polish"), delay=30)
        url = f"sqlite:///{tmp_path}/interrupted.db"
        proc = subprocess.Popen(
            [sys.executable, "-m", "story_fsm.cli", "run", str(story_file), "--db", url,
             "--editor", "openai"],
            cwd=tmp_path,
            env=child_env(
                OPENAI_BASE_URL=server.url, OPENAI_API_KEY="test-key", PYTHONFAULTHANDLER="1"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not server.requests and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        if not server.requests:  # a SIGINT now would test start-up, not a stage
            proc.kill()
            pytest.fail(f"the run made no LLM request within 30 s:\n{proc.communicate()[1]}")
        proc.send_signal(signal.SIGINT)
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # Say where it hangs: faulthandler prints every thread's stack on SIGABRT.
            proc.send_signal(signal.SIGABRT)
            _out, err = proc.communicate(timeout=30)
            pytest.fail(f"no exit within 30 s of SIGINT; the process's threads:\n{err}")
        assert proc.returncode == 130, err
        assert err.splitlines()[-1] == (
            "error: interrupted; story 'keepers_cat' stopped mid-stage and keeps its committed "
            "steps; run 'story-fsm resume keepers_cat' to continue"
        )
        assert "Traceback" not in err
        with WorkflowStateManager(url) as store:
            row = store.load_row("keepers_cat")
        assert row is not None and row.summary.state is WorkflowState.REVIEWING
        assert row.summary.lease_owner is None  # given up on the way out: nobody waits for it
        deleted = cli("delete", "keepers_cat", "--db", url, "--yes", cwd=tmp_path)
        assert deleted.returncode == 0, deleted.stderr


class TestExitWithAThreadInACall:
    def test_output_and_exit_code_survive_a_stage_thread_still_in_a_call(
        self, tmp_path: Path
    ) -> None:
        """A command that ends while a pool thread is still in a call (left by Ctrl-C or a
        timeout) exits at once with its own code and all it printed: the interpreter's
        shutdown, which can abort the process when such a thread is in native code, is
        skipped."""
        url = f"sqlite:///{tmp_path}/busy.db"
        WorkflowStateManager(url).close()
        program = (
            "import atexit, time, sys\n"
            "atexit.register(lambda: print('shutdown ran', file=sys.stderr))\n"
            "from story_fsm._executor import default_executor\n"
            "from story_fsm.cli import main\n"
            "default_executor().submit(lambda: time.sleep(60))\n"
            "main(sys.argv[1:])\n"
        )

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-c", program, *args, "--db", url],
                cwd=tmp_path,
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )

        listed = run("list", "--json")
        assert (listed.returncode, json.loads(listed.stdout)) == (0, [])
        missing = run("status", "nobody")
        assert missing.returncode == 2
        assert missing.stderr.splitlines()[-1].startswith("error: no workflow for story 'nobody'")
        # The process ended before the interpreter's shutdown, which never stops that thread.
        assert "shutdown ran" not in listed.stderr + missing.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
class TestStdoutRefused:
    """stdout that takes nothing (a full disk): one error line, exit 5, no traceback; a run
    that could not print its result has stored it all the same."""

    @staticmethod
    def to_full(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        with open("/dev/full", "w") as full:
            return subprocess.run(
                [sys.executable, "-m", "story_fsm.cli", *args],
                cwd=cwd,
                env=child_env(),
                stdout=full,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                check=False,
            )

    def test_each_kind_of_output_exits_5_with_one_line(
        self, story_file: Path, tmp_path: Path
    ) -> None:
        url = f"sqlite:///{tmp_path}/full.db"
        ran = self.to_full("run", str(story_file), "--db", url, cwd=tmp_path)
        assert stored_state(url) is WorkflowState.COMPLETE
        commands = [
            ("list", "--db", url),  # a rich table
            ("list", "--json", "--db", url),  # JSON
            ("history", "keepers_cat", "--db", url),
            ("diagram", "keepers_cat", "--db", url),  # plain text
        ]
        for done in [ran, *(self.to_full(*args, cwd=tmp_path) for args in commands)]:
            assert done.returncode == 5, done.stderr
            assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
            assert done.stderr.splitlines()[-1] == (
                "error: cannot write the output to stdout (No space left on device)"
            )

    def test_an_encoding_without_the_characters_exits_5_naming_the_remedy(
        self, story_file: Path, tmp_path: Path
    ) -> None:
        """stdout in ASCII (PYTHONIOENCODING, a legacy locale) cannot take a table's arrows or
        a title's accents: one error line naming the remedy and exit 5, not a traceback."""
        url = f"sqlite:///{tmp_path}/ascii.db"
        for story_id in ("keepers_cat", "café"):
            ran = cli("run", str(story_file), "--story-id", story_id, "--db", url, cwd=tmp_path)
            assert ran.returncode == 0, ran.stderr
        for args in (
            ("history", "keepers_cat"),  # a rich table ("→")
            ("history", "keepers_cat", "-f"),  # plain lines
            ("status", "keepers_cat"),
            ("list", "--json"),  # JSON: "café"
            ("show", "café", "--json"),
        ):
            done = cli(*args, "--db", url, cwd=tmp_path, PYTHONIOENCODING="ascii")
            assert done.returncode == ExitCode.OUTPUT, (args, done.stderr)
            assert "Traceback" not in done.stderr, args
            assert done.stderr.splitlines()[-1].startswith("error: stdout's encoding (ascii)")
            assert "PYTHONIOENCODING=utf-8" in done.stderr

    def test_a_closed_pipe_ends_quietly(self, story_file: Path, tmp_path: Path) -> None:
        """`story-fsm list | head`: the reader went away; no error line, no traceback."""
        url = f"sqlite:///{tmp_path}/pipe.db"
        assert cli("run", str(story_file), "--db", url, cwd=tmp_path).returncode == 0
        for args in (("history", "keepers_cat"), ("list", "--json")):
            with piped_cli(*args, "--db", url, cwd=tmp_path) as proc:
                assert proc.stdout is not None and proc.stderr is not None
                proc.stdout.close()  # before the child writes: its first write meets the close
                err = proc.stderr.read()
                assert (proc.wait(timeout=60), err) == (141, "")

    def test_a_follow_waiting_for_a_record_ends_when_its_reader_goes(self, tmp_path: Path) -> None:
        """`history -f | head -1` on a workflow waiting for a worker: the follower sees the
        reader gone while it waits (as tail -f does) and ends quietly with 141, instead of
        waiting for a next record that may never come."""
        from story_fsm import StoryWorkflowOrchestrator
        from tests.stages import ScriptedPolisher, ScriptedReviewer

        url = f"sqlite:///{tmp_path}/queued.db"
        with WorkflowStateManager(url) as store:
            orchestrator = StoryWorkflowOrchestrator(ScriptedReviewer(), ScriptedPolisher(), store)
            orchestrator.submit("queued", "T", "S", {})
        with piped_cli(
            "history", "queued", "-f", "--interval", "0.05", "--db", url, cwd=tmp_path
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            try:
                assert proc.stdout.readline().split()[3] == "submit"
                proc.stdout.close()  # head -1 has its line
                assert proc.wait(timeout=10) == ExitCode.STDOUT_CLOSED
                assert proc.stderr.read() == ""
            finally:
                if proc.poll() is None:
                    proc.kill()


def read_to_the_end(leader: int) -> bytes:
    """Read a pty's leader side until the child closes its end."""
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        seen += chunk
    return seen


class TestShowOnATerminal:
    def test_control_characters_are_escaped_for_a_terminal_only(self, tmp_path: Path) -> None:
        """`show` to a terminal (a pty here) prints a title's escape sequence as ``\\x1b``, as
        ``ls`` does with odd file names; to a pipe, the same command prints it as stored."""
        import pty

        story = tmp_path / "evil.txt"
        story.write_text("Evil \x1b[2J title\nThe cat sat on the mat. It was warm.\n")
        url = f"sqlite:///{tmp_path}/show.db"
        assert cli("run", str(story), "--db", url, "-q", cwd=tmp_path).returncode == 0
        command = [sys.executable, "-m", "story_fsm.cli", "show", "evil", "--initial", "--db", url]
        leader, follower = pty.openpty()
        try:
            with subprocess.Popen(
                command, cwd=tmp_path, env=child_env(), stdout=follower, stderr=subprocess.PIPE
            ) as proc:
                os.close(follower)
                follower = -1
                seen = read_to_the_end(leader)
                assert proc.wait(timeout=60) == 0
        finally:
            os.close(leader)
            if follower != -1:
                os.close(follower)
        text = seen.decode("utf-8").replace("\r\n", "\n")  # the pty's line discipline
        assert text.startswith("Evil \\x1b[2J title\n\n") and "\x1b" not in text
        piped = cli("show", "evil", "--initial", "--db", url, cwd=tmp_path)
        assert piped.stdout.startswith("Evil \x1b[2J title\n\n")


def answered_on_a_terminal(
    command: list[str], answer: str, *, cwd: Path, typed_ahead: bool = False
) -> tuple[int, str, str]:
    """Run *command* with stdin and stderr on a pty; type *answer* once it asks [y/N]
    (*typed_ahead*: at once, whether it asks or not).

    Returns the exit code, what the terminal showed, and stdout.
    """
    import pty

    leader, follower = pty.openpty()
    try:
        with subprocess.Popen(
            command,
            cwd=cwd,
            env=child_env(),
            stdin=follower,
            stdout=subprocess.PIPE,
            stderr=follower,
        ) as proc:
            os.close(follower)
            follower = -1
            seen = b""
            while not typed_ahead and b"[y/N]" not in seen:
                chunk = os.read(leader, 4096)
                assert chunk, seen
                seen += chunk
            os.write(leader, answer.encode() + b"\n")
            assert proc.stdout is not None
            out = proc.stdout.read().decode()
            code = proc.wait(timeout=60)
            seen += read_to_the_end(leader)
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    return code, seen.decode("utf-8").replace("\r\n", "\n"), out


class TestConfirmOnATerminal:
    def test_delete_and_prune_ask_and_do_only_what_was_agreed(self, tmp_path: Path) -> None:
        """On a terminal, delete and prune ask first: "n" keeps everything (exit 0, "nothing
        deleted"), "y" deletes what the question named."""
        story = tmp_path / "tale.txt"
        story.write_text("A Tale\nThe cat sat on the mat. It was warm.\n")
        url = f"sqlite:///{tmp_path}/ask.db"
        for story_id in ("one", "two"):
            made = cli("run", str(story), "--story-id", story_id, "--db", url, "-q", cwd=tmp_path)
            assert made.returncode == 0, made.stderr
        base = [sys.executable, "-m", "story_fsm.cli"]
        delete = [*base, "delete", "one", "--db", url]
        code, seen, out = answered_on_a_terminal(delete, "n", cwd=tmp_path)
        assert (code, out) == (0, "")
        assert "Delete workflow 'one' (COMPLETE, " in seen and "nothing deleted" in seen
        code, seen, out = answered_on_a_terminal(delete, "y", cwd=tmp_path)
        assert (code, out) == (0, "deleted workflow 'one' (COMPLETE)\n")
        prune = [*base, "prune", "--older-than", "0s", "--db", url]
        code, seen, out = answered_on_a_terminal(prune, "n", cwd=tmp_path)
        assert (code, out) == (0, "") and "Delete 1 finished workflow(s)" in seen
        listed = cli("list", "--json", "--db", url, cwd=tmp_path)
        assert [w["story_id"] for w in json.loads(listed.stdout)] == ["two"]
        code, seen, out = answered_on_a_terminal(prune, "y", cwd=tmp_path)
        assert code == 0 and out.startswith("deleted 1 finished workflow(s)")
        listed = cli("list", "--json", "--db", url, cwd=tmp_path)
        assert json.loads(listed.stdout) == []

    def test_a_held_workflow_is_refused_without_a_question(self, tmp_path: Path) -> None:
        """Deleting a workflow a worker holds exits 3 naming the holder before asking [y/N]
        (a "y" could not be acted on); every row is kept."""
        story = tmp_path / "tale.txt"
        story.write_text("A Tale\nThe cat sat on the mat. It was warm.\n")
        url = f"sqlite:///{tmp_path}/ask.db"
        made = cli("submit", str(story), "--db", url, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        with WorkflowStateManager(url) as store:
            assert store.claim_next(Lease("box-7:123", "t", 600)) is not None
        delete = [sys.executable, "-m", "story_fsm.cli", "delete", "tale", "--db", url]
        code, seen, out = answered_on_a_terminal(delete, "y", cwd=tmp_path, typed_ahead=True)
        assert (code, out) == (ExitCode.LOST_RACE, "")
        assert "[y/N]" not in seen and "held by box-7:123" in seen
        assert stored_state(url, "tale") is WorkflowState.INITIAL

    def test_a_declined_json_command_still_prints_its_object(self, tmp_path: Path) -> None:
        """With --json, "n" prints the object with nothing deleted (deleted false, or 0), so
        a reader of stdout always gets JSON; the workflow stays."""
        story = tmp_path / "tale.txt"
        story.write_text("A Tale\nThe cat sat on the mat. It was warm.\n")
        url = f"sqlite:///{tmp_path}/ask.db"
        made = cli("run", str(story), "--story-id", "one", "--db", url, "-q", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        base = [sys.executable, "-m", "story_fsm.cli"]
        delete = [*base, "delete", "one", "--json", "--db", url]
        code, seen, out = answered_on_a_terminal(delete, "n", cwd=tmp_path)
        assert code == 0 and "nothing deleted" in seen
        assert json.loads(out) == {"story_id": "one", "deleted": False, "state": "complete"}
        prune = [*base, "prune", "--older-than", "0s", "--json", "--db", url]
        code, seen, out = answered_on_a_terminal(prune, "n", cwd=tmp_path)
        assert code == 0 and "nothing deleted" in seen
        report = json.loads(out)
        assert (report["matched"], report["deleted"], report["dry_run"]) == (1, 0, False)
        listed = cli("list", "--json", "--db", url, cwd=tmp_path)
        assert [w["story_id"] for w in json.loads(listed.stdout)] == ["one"]


class TestHistoryFollow:
    def test_follow_prints_each_record_as_it_is_committed_then_ends(self, tmp_path: Path) -> None:
        """`history -f` in another process prints the rows committed so far, waits while
        the review is held, prints the rest as they land, and exits 0 at COMPLETE."""
        import threading

        from story_fsm import StoryWorkflowOrchestrator, WorkflowConfig
        from tests.stages import ScriptedPolisher, ScriptedReviewer, review

        url = f"sqlite:///{tmp_path}/follow.db"
        gate = threading.Event()

        def held_review() -> dict[str, Any]:
            assert gate.wait(60)
            return review(99, "publish")

        with WorkflowStateManager(url) as store:
            orchestrator = StoryWorkflowOrchestrator(
                ScriptedReviewer(review(60), held_review),
                ScriptedPolisher(),
                store,
                WorkflowConfig(retry_backoff_seconds=0),
            )
            runner = threading.Thread(
                target=orchestrator.run_story_workflow, args=("tale", "T", "S", {}), daemon=True
            )
            runner.start()
            deadline = time.monotonic() + 30
            while store.load_row("tale") is None or store.load_row("tale").summary.seq < 3:  # type: ignore[union-attr]
                assert time.monotonic() < deadline
                time.sleep(0.01)
            follower = piped_cli(
                "history", "tale", "-f", "--interval", "0.05", "--db", url, cwd=tmp_path
            )
            try:
                assert follower.stdout is not None
                early = [follower.stdout.readline() for _ in range(4)]  # submit .. polished
                assert [line.split()[3] for line in early] == [
                    "submit",
                    "start",
                    "reviewed",
                    "polished",
                ]
                assert follower.poll() is None  # the second review is held: still following
                gate.set()
                runner.join(30)
                rest, err = follower.communicate(timeout=30)
                assert follower.returncode == 0, err
                assert [line.split()[3] for line in rest.splitlines()] == ["reviewed"]
                assert "reviewing → complete" in rest
            finally:
                gate.set()
                if follower.poll() is None:
                    follower.kill()
                    follower.communicate()
            assert len(store.history("tale")) == 5


class TestStderrRefused:
    """stderr that takes nothing (``2>>log`` on a full disk, a reader gone) loses the progress,
    the logs and the error line, never the run: the command goes on and exits as it would."""

    @staticmethod
    def with_stderr(stderr: Any, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "story_fsm.cli", *args],
            cwd=cwd,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=60,
            check=False,
        )

    def test_a_run_completes_and_exits_as_it_would(self, story_file: Path, tmp_path: Path) -> None:
        """The live view and -v's log lines meet /dev/full: the run still completes (it used
        to stop in REVIEWING with exit 1, the failed log of a failed progress write raising
        out of the run), and stdout still gets its summary."""
        url = f"sqlite:///{tmp_path}/full.db"
        with open("/dev/full", "w") as full:
            done = self.with_stderr(full, "-v", "run", str(story_file), "--db", url, cwd=tmp_path)
            missing = self.with_stderr(full, "status", "nope", "--db", url, cwd=tmp_path)
            traced = self.with_stderr(full, "--debug", "status", "nope", "--db", url, cwd=tmp_path)
        assert done.returncode == 0 and "publish (complete)" in done.stdout
        assert stored_state(url) is WorkflowState.COMPLETE
        # The error line is lost with stderr; the exit code still says what went wrong.
        assert (missing.returncode, traced.returncode) == (ExitCode.USAGE, ExitCode.USAGE)

    def test_a_closed_stderr_pipe_does_not_stop_a_run(
        self, story_file: Path, tmp_path: Path
    ) -> None:
        """The reader of stderr went away before the first log line: the run goes on."""
        url = f"sqlite:///{tmp_path}/pipe.db"
        with piped_cli("-v", "run", str(story_file), "--db", url, cwd=tmp_path) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            proc.stderr.close()
            out = proc.stdout.read()
            assert proc.wait(timeout=60) == 0
        assert "publish (complete)" in out
        assert stored_state(url) is WorkflowState.COMPLETE


class TestClosedAtLaunch:
    """A stdout or stderr closed when the command starts (``>&-``, ``2>&-``), which Python
    leaves None: stdout is an unwritable stdout (exit 5), stderr one that takes nothing."""

    def test_a_closed_stdout_exits_5_after_the_run_is_stored(
        self, story_file: Path, tmp_path: Path
    ) -> None:
        """The run completes and is stored; only its summary is lost: one error line, exit 5."""
        url = f"sqlite:///{tmp_path}/closed.db"
        done = cli("run", "-q", str(story_file), "--db", url, cwd=tmp_path, redirect=">&-")
        listed = cli("list", "--json", "--db", url, cwd=tmp_path, redirect=">&-")
        for proc in (done, listed):
            assert proc.returncode == 5, proc.stderr
            assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
            assert proc.stderr.splitlines()[-1] == (
                "error: cannot write the output to stdout (stdout is closed)"
            )
        assert stored_state(url) is WorkflowState.COMPLETE

    def test_a_closed_stderr_loses_the_diagnostics_not_the_run(
        self, story_file: Path, tmp_path: Path
    ) -> None:
        """The run goes on and prints its summary; a missing story still exits 2."""
        url = f"sqlite:///{tmp_path}/closed.db"
        done = cli("-v", "run", str(story_file), "--db", url, cwd=tmp_path, redirect="2>&-")
        missing = cli("status", "nope", "--db", url, cwd=tmp_path, redirect="2>&-")
        assert done.returncode == 0 and "publish (complete)" in done.stdout
        assert missing.returncode == ExitCode.USAGE
        assert stored_state(url) is WorkflowState.COMPLETE

    def test_a_closed_stdin_is_no_terminal_to_confirm_on(
        self, story_file: Path, tmp_path: Path
    ) -> None:
        """`delete` without --yes asks for it (exit 2) and deletes nothing."""
        url = f"sqlite:///{tmp_path}/closed.db"
        assert cli("run", str(story_file), "--db", url, cwd=tmp_path).returncode == 0
        refused = cli("delete", "keepers_cat", "--db", url, cwd=tmp_path, redirect="<&-")
        assert refused.returncode == ExitCode.USAGE, refused.stderr
        assert refused.stderr.splitlines()[-1] == (
            "error: stdin is not a terminal to confirm on; pass --yes to go on"
        )
        with WorkflowStateManager(url) as store:
            assert store.load_row("keepers_cat") is not None


class TestOpenAIEditor:
    def test_run_completes_against_a_chat_completions_server(
        self, server: FakeLLMServer, story_file: Path, tmp_path: Path
    ) -> None:
        """`run --editor openai` reviews, polishes and publishes through a real HTTP server."""
        server.enqueue_completion(_review(70, "polish"), prompt_tokens=1000, completion_tokens=200)
        server.enqueue_completion(
            {
                "polished_title": "The Cat",
                "polished_script": "Elsie missed her cat.",
                "change_log": ["cut"],
            }
        )
        server.enqueue_completion(_review(96, "publish"))
        url = f"sqlite:///{tmp_path}/openai.db"
        done = cli(
            "run", str(story_file), "--db", url, "--editor", "openai", "--json", cwd=tmp_path,
            OPENAI_BASE_URL=server.url, OPENAI_API_KEY="test-key", STORY_FSM_MODEL="gpt-4o-mini",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["decision"] == "publish" and result["quality_scores"] == [70, 96]
        assert result["final_title"] == "The Cat" and result["total_cost"] > 0
        assert [r.json["model"] for r in server.requests] == ["gpt-4o-mini"] * 3
        assert result["metadata"]["config"]["review_model"] == "gpt-4o-mini"
        assert server.requests[0].headers["authorization"] == "Bearer test-key"


class TestCrashThenResume:
    def test_sigkilled_workflow_completes_with_the_resume_command(
        self, database_url: str, tmp_path: Path
    ) -> None:
        """SIGKILL inside review 2, then `story-fsm resume` completes without redoing committed steps."""
        calls = tmp_path / "calls.txt"
        victim = spawn_victim(database_url, calls, "story-k", "review:2")
        wait_for_call(calls, "story-k review 2", victim)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
        done = cli("resume", "story-k", "--db", database_url, "--json", cwd=ROOT)
        assert done.returncode == 0, done.stderr
        assert "resuming from reviewing" in done.stderr
        with WorkflowStateManager(database_url) as store:
            stored = store.load_state("story-k")
        assert stored is not None and stored.state is WorkflowState.COMPLETE
        assert json.loads(done.stdout) == json.loads(json.dumps(stored.to_dict()))
        # Review 1 and polish 1 ran once, in the killed process; the resume used the offline
        # editor from review 2 on, so the counting stages saw nothing more.
        assert call_counts(calls) == {("review", 1): 1, ("polish", 1): 1, ("review", 2): 1}
        assert stored.quality_scores[0] == 72  # the killed process's committed review
