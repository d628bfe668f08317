"""Where one story of the loop spends its time: the driver's share, and a profile of the rest.

    python bench/profile_loop.py                          # split at FULL: COMMITs, statements, rest
    python bench/profile_loop.py --sync OFF --n 3000
    python bench/profile_loop.py --profiler cprofile      # the engine's functions, by own time
    python bench/profile_loop.py --profiler pyinstrument  # a call tree (pip install pyinstrument)
    python bench/profile_loop.py --sync OFF --inline --pause-after-commit 200  # see below

The loop is the benchmark's (no-op stages, a ~2 KB script, a SQLite file in WAL mode). With
``--inline`` (implied by the profilers) the runs are carried on the calling thread instead of
a pool thread, so that a profiler of this thread sees them. The engine never runs that way
(the pool thread is what lets a stage timeout abandon a hung call), so ``split`` keeps the
pool thread by default.

``split`` times the store's SQLite writer connection from the driver's side
(:func:`bench.tap.tap_writer`): each statement's ``execute`` and each ``commit``. What is
left of a story's time is the engine's own Python (and the hand-off to its carrier thread).
The timers cost a little themselves, so the sum is above the benchmark's figure.
Not a benchmark: nothing is compared, nothing written to ``results.json``.

``--cpus K`` keeps the process (every thread of it) on K of the CPUs it may use, to ask
where the carrier hand-off's cost goes: with ``--cpus 1`` the carrier and the waiting thread
take turns on one core, so each hand-off is a switch on a core that is awake and warm instead
of a wake-up of the other core (a halted virtual CPU on a VM) with the story's data in the
first core's caches. A question for the profile, not a setting: the engine never pins threads
(its runs would then share one core however many the machine has).

``--pause-after-commit US`` asks what a wait on the disk costs the code that runs after it.
At ``synchronous=OFF`` (no fsync) the thread then blocks for US microseconds after each COMMIT
(``--pause spin`` keeps the core busy instead), as it does in an fsync at FULL; the pause is
timed apart and left out of the split. Where the engine's own time grows with a blocking pause
but not with a busy one, what grows is the cost of running on a core that went idle (cold
caches, a halted virtual CPU), not the work.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import os
import tempfile
import time
from typing import Any

from bench.tap import tap_writer
from bench.workload import NoOpPolisher, NoOpReviewer, loop_config, run_story

PROFILERS = ("split", "cprofile", "pyinstrument")
WARM_STORIES = 50


class _Clock:
    """Time spent in the driver, summed: statements and COMMITs."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start counting afresh (after the warm-up stories)."""
        self.execute = 0.0
        self.commit = 0.0
        self.paused = 0.0
        self.statements = 0
        self.commits = 0

    def statement(self, _sql: str, _params: Any, seconds: float) -> None:
        """Count one statement and the driver's time for it."""
        self.execute += seconds
        self.statements += 1

    def committed(self, seconds: float) -> None:
        """Count one COMMIT and the driver's time for it."""
        self.commit += seconds
        self.commits += 1


def _pause_after_commits(store: Any, clock: _Clock, micros: float, kind: str) -> None:
    """Make each COMMIT of *store*'s tapped writer block (or spin) *micros* µs after it.

    The pause is timed into ``clock.paused``, apart from the COMMIT's own time.
    """
    seconds = micros / 1e6
    writer = store._writer  # the tap's stand-in connection (bench.tap)
    commit = writer.commit

    def paused_commit() -> None:
        commit()
        started = time.perf_counter()
        if kind == "sleep":
            time.sleep(seconds)
        else:
            while time.perf_counter() - started < seconds:
                pass
        clock.paused += time.perf_counter() - started

    writer.commit = paused_commit


def _inline_executor() -> Any:
    from story_fsm._executor import StageCall, StageExecutor

    class Inline(StageExecutor):
        """Runs each carried run on the calling thread (for profilers only)."""

        def submit(self, fn: Any) -> Any:
            call = StageCall(fn)
            call._run()
            return call

    return Inline()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the profile *argv* asks for; print it and return the split (or an empty dict)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sync", default="FULL", choices=("OFF", "NORMAL", "FULL"))
    parser.add_argument("--n", type=int, default=1000, help="stories measured")
    parser.add_argument("--profiler", default="split", choices=PROFILERS)
    parser.add_argument("--inline", action="store_true", help="carry runs on this thread")
    parser.add_argument("--top", type=int, default=30, help="cprofile: rows shown")
    parser.add_argument(
        "--pause-after-commit", type=float, default=0.0, metavar="US", help="see the docstring"
    )
    parser.add_argument("--pause", default="sleep", choices=("sleep", "spin"))
    parser.add_argument("--cpus", type=int, default=0, metavar="K", help="see the docstring")
    args = parser.parse_args(argv)
    if args.cpus > 0:
        # Before any thread starts: threads inherit the affinity they are created with.
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, allowed[: args.cpus])

    from story_fsm import StoryWorkflowOrchestrator, WorkflowStateManager

    with tempfile.TemporaryDirectory(prefix="story-fsm-profile-") as folder:
        store = WorkflowStateManager(f"sqlite:///{folder}/profile.db", sqlite_synchronous=args.sync)
        clock = _Clock()
        tap_writer(store, clock.statement, clock.committed)
        if args.pause_after_commit > 0:
            _pause_after_commits(store, clock, args.pause_after_commit, args.pause)
        inline = args.inline or args.profiler != "split"
        orchestrator = StoryWorkflowOrchestrator(
            NoOpReviewer(),
            NoOpPolisher(),
            store,
            loop_config(),
            executor=_inline_executor() if inline else None,
        )
        for n in range(WARM_STORIES):
            run_story(orchestrator, f"warm-{n}")
        clock.reset()

        def work() -> None:
            for n in range(args.n):
                run_story(orchestrator, f"story-{n}")

        try:
            return _profile(args, work, clock)
        finally:
            store.close()


def _profile(args: argparse.Namespace, work: Any, clock: _Clock) -> dict[str, Any]:
    if args.profiler == "cprofile":
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(work)
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
        return {}
    if args.profiler == "pyinstrument":
        try:
            from pyinstrument import Profiler
        except ImportError:
            raise SystemExit(
                "pyinstrument is not installed: `.venv/bin/pip install pyinstrument`, "
                "or use --profiler cprofile (the standard library's)"
            ) from None
        profiler = Profiler(interval=0.0002)
        profiler.start()
        work()
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False))
        return {}
    started = time.perf_counter()
    work()
    story = (time.perf_counter() - started) / args.n * 1e6
    split = {
        "sync": args.sync,
        "stories": args.n,
        "cpus": len(os.sched_getaffinity(0)),
        "story_us": round(story, 1),
        "commit_us": round(clock.commit / args.n * 1e6, 1),
        "statements_us": round(clock.execute / args.n * 1e6, 1),
        "commits_per_story": clock.commits / args.n,
        "statements_per_story": clock.statements / args.n,
        "paused_us": round(clock.paused / args.n * 1e6, 1),
    }
    split["rest_us"] = round(
        story - split["commit_us"] - split["statements_us"] - split["paused_us"], 1
    )
    paused = f" ({split['paused_us']:.0f} of it paused)" if clock.paused else ""
    on = f" on {split['cpus']} CPU{'s' if split['cpus'] > 1 else ''}" if args.cpus else ""
    print(
        f"synchronous={args.sync}, {args.n} stories{on}: {split['story_us']:.0f} µs per story"
        f"{paused} = {split['commit_us']:.0f} in {split['commits_per_story']:g} COMMITs + "
        f"{split['statements_us']:.0f} in {split['statements_per_story']:g} statements + "
        f"{split['rest_us']:.0f} the engine's own (Python, the carrier hand-off)"
    )
    return split


if __name__ == "__main__":
    main()
