"""The benchmark's code paths still run (tiny sizes, no timing asserted): bench/ is not tested
for speed here, only for breakage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import peers, report, run, targets
from bench.fsyncs import parse_strace_summary
from bench.stats import Spread, ratio_spread, rotated

TINY = run.replace(
    run.QUICK,
    repeats=1,
    loop_n=1,
    pg_n=1,
    fsync_n=1,
    fsync_repeats=1,
    resume_lengths=(2, 4),
    resume_repeats=1,
    concurrencies=(1, 2),
    stories_per_thread=1,
    stage_sleep=0.001,
    worker_processes=(1, 2),
    worker_stories_per_thread=2,
    worker_threads=1,
    worker_repeats=1,
)


@pytest.mark.slow
class TestQuickPath:
    def test_every_default_section_runs_and_reports(self, tmp_path: Path) -> None:
        """A tiny run measures every default section, writes the JSON and renders the targets."""
        out = tmp_path / "results.json"
        run.run(TINY, run.DEFAULT_SECTIONS, out=out, workdir=tmp_path / "work", mode="smoke")
        results = json.loads(out.read_text())
        assert set(run.DEFAULT_SECTIONS) <= set(results["sections"])
        storage = results["sections"]["loop"]["storage"]
        assert next(iter(storage.values()))["unchanged_script_stored_again"] is False
        # The replay of story_fsm's statements writes what the engine writes, row for row.
        sqlite = next(g for g in results["sections"]["loop"]["groups"].values() if g["sync"])
        replay, engine = sqlite["variants"]["story_fsm_sql"], sqlite["variants"]["story_fsm"]
        assert replay["steps_per_story"] == engine["steps_per_story"] == 7
        assert "### Targets" in report.render(results)
        assert len(targets.targets(results)) == 8
        workers = results["sections"]["workers"]
        if workers["status"] == "measured":  # the same stories per thread for each worker count
            assert [d["stories"] for d in workers["by_processes"].values()] == [2, 4]


class TestHelpers:
    def test_peers_without_their_virtualenv_are_skipped_with_instructions(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No peer virtualenv: the section says how to set one up instead of failing."""
        result = peers.run_section(
            venv=None, n=1, rounds=1, lengths=(2,), repeats=1, fsync_n=1, workdir=tmp_path
        )
        assert "skipped" in result
        assert "pip install -e" in capsys.readouterr().out

    def test_strace_summary_is_parsed(self) -> None:
        """The calls column of ``strace -c`` is read for fsync and fdatasync only."""
        text = (
            "% time     seconds  usecs/call     calls    errors syscall\n"
            "------ ----------- ----------- --------- --------- ----------------\n"
            " 90.00    0.010000          50       200           fdatasync\n"
            " 10.00    0.001000          10         3         1 fsync\n"
            "  0.00    0.000000           0         9           write\n"
        )
        assert parse_strace_summary(text) == {"fdatasync": 200, "fsync": 3}

    def test_ratios_are_taken_within_each_repeat(self) -> None:
        """Each ratio pairs the same repeat's figures; the spread is over repeats."""
        assert ratio_spread([2.0, 9.0, 4.0], [1.0, 3.0, 4.0]) == Spread(2.0, 1.0, 3.0, 3)
        assert rotated([1, 2, 3], 4) == [2, 3, 1]


class TestProfileSplit:
    @pytest.mark.parametrize("inline", [False, True])
    def test_the_split_counts_the_hot_paths_driver_calls(
        self, inline: bool, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A story of the loop is 6 COMMITs and 14 statements on the kept writer connection.

        The figures the profile prints rest on the timed connection standing in for the
        store's: if it stopped seeing the writes (or the hot path grew a commit), this fails.
        """
        from bench import profile_loop

        argv = ["--sync", "OFF", "--n", "3"] + (["--inline"] if inline else [])
        split = profile_loop.main(argv)
        assert (split["commits_per_story"], split["statements_per_story"]) == (6, 14)
        # The driver's time is a part of the story's, not counted twice nor missed.
        assert 0 < split["commit_us"] + split["statements_us"] < split["story_us"]
        assert split["commit_us"] > 0 and split["statements_us"] > 0
        assert "6 COMMITs" in capsys.readouterr().out

    @pytest.mark.parametrize("kind", ["sleep", "spin"])
    def test_a_pause_after_each_commit_is_timed_apart(self, kind: str) -> None:
        """--pause-after-commit waits after each of the 6 COMMITs, and the split leaves it out."""
        from bench import profile_loop

        argv = ["--sync", "OFF", "--n", "2", "--inline", "--pause-after-commit", "2000"]
        split = profile_loop.main([*argv, "--pause", kind])
        assert split["paused_us"] >= 6 * 2000
        parts = split["commit_us"] + split["statements_us"] + split["paused_us"]
        assert split["rest_us"] == pytest.approx(split["story_us"] - parts, abs=0.2)
        assert 0 < split["rest_us"] < split["story_us"] - split["paused_us"]

    def test_cpus_keeps_the_profile_and_its_carrier_on_one_cpu(self) -> None:
        """--cpus 1 runs the split (the carrier included) on one CPU, in its own process."""
        import subprocess
        import sys

        script = (
            "import os, threading, sys\n"
            "from bench import profile_loop\n"
            "seen = set()\n"
            "real = threading.Thread.run\n"
            "def run(self):\n"
            "    seen.add(len(os.sched_getaffinity(0)))\n"
            "    real(self)\n"
            "threading.Thread.run = run\n"
            "split = profile_loop.main(['--sync', 'OFF', '--n', '2', '--cpus', '1'])\n"
            "print('threads', sorted(seen), 'cpus', split['cpus'])\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "2 stories on 1 CPU:" in done.stdout
        # The carrier is a pool thread started after the option took effect: it is on one CPU.
        assert done.stdout.strip().splitlines()[-1] == "threads [1] cpus 1"

    def test_a_missing_pyinstrument_is_a_clear_exit(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import sys

        from bench import profile_loop

        monkeypatch.setitem(sys.modules, "pyinstrument", None)  # import fails as if absent
        with pytest.raises(SystemExit, match="pyinstrument is not installed"):
            profile_loop.main(["--n", "1", "--profiler", "pyinstrument", "--sync", "OFF"])
