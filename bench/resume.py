"""Resume latency against history length: from ``resume()`` to the first stage call.

Build (child, once per length H): one story loops review → polish with a reviewer that never
publishes, and the process hard-exits (``os._exit``) inside the stage call that would write row
H, so the database holds H committed rows and the story stands in REVIEWING, as after a crash.
The build writes at ``synchronous=NORMAL`` (only its speed matters).

Resume (child, fresh process per measurement, on a copy of the build): open the store at the
engine's default level, call ``orchestrator.resume(story_id)`` and record ``perf_counter()``
when the first stage is entered. The story then publishes; the time to ``resume()`` returning
is reported too. Each build is checkpointed once before it is copied, so that no resume starts
with a WAL near SQLite's auto-checkpoint size (which would land a checkpoint in one measurement
by chance: a property of where the crash fell, not of the history's length).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.child import emit, peak_rss_kb, run_child
from bench.stats import Spread, ratio_spread, rotated
from bench.storage import sqlite_used_bytes
from bench.workload import NoOpPolisher, make_script

STORY_ID = "long-story"
DB_NAME = "story_fsm.db"
_STARTED = time.perf_counter()


class _CrashingReviewer:
    """Never publishes; ends the process inside the review call that would write row *rows*."""

    def __init__(self, rows: int, on_crash: Callable[[], None]) -> None:
        # Before review call j (0-based) the story has 2 + 2j rows: submit, start, j pairs.
        self.crash_at = (rows - 2) // 2
        self.calls = 0
        self.on_crash = on_crash

    def review_story(self, **_: Any) -> dict[str, Any]:
        if self.calls == self.crash_at:
            self.on_crash()
            os._exit(0)
        self.calls += 1
        return {"decision": "polish", "quality_score": 50}


class _FirstCallClock:
    """A reviewer/polisher that notes when it is first entered, then publishes."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.polisher = NoOpPolisher()

    def _enter(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()

    def review_story(self, **_: Any) -> dict[str, Any]:
        self._enter()
        return {"decision": "publish", "quality_score": 90}

    def polish_story(self, **kwargs: Any) -> dict[str, Any]:
        self._enter()
        return self.polisher.polish_story(**kwargs)


def build(rows: int, workdir: Path) -> None:
    """Write one story with *rows* committed rows, then crash mid-review (never returns)."""
    from story_fsm import StoryWorkflowOrchestrator, WorkflowConfig, WorkflowStateManager

    if rows < 2 or rows % 2:
        raise SystemExit("the history length must be even and >= 2")
    workdir.mkdir(parents=True, exist_ok=True)
    store = WorkflowStateManager(f"sqlite:///{workdir / DB_NAME}", sqlite_synchronous="NORMAL")
    started = time.perf_counter()

    def report() -> None:
        elapsed = time.perf_counter() - started
        emit(
            {
                "mode": "build",
                "rows": rows,
                "build_s": elapsed,
                "build_row_us": elapsed / rows * 1e6,
                "rss_peak_kb": peak_rss_kb(),
            }
        )

    orchestrator = StoryWorkflowOrchestrator(
        _CrashingReviewer(rows, report),
        NoOpPolisher(),
        store,
        WorkflowConfig(max_iterations=rows, retry_backoff_seconds=0),
    )
    orchestrator.run_story_workflow(STORY_ID, "Long", make_script(0), {})
    raise SystemExit("the build finished without crashing")


def resume(rows: int, workdir: Path) -> None:
    """Resume the built story in this fresh process and report the latencies."""
    imported = time.perf_counter()
    from story_fsm import StoryWorkflowOrchestrator, WorkflowStateManager

    imports_s = time.perf_counter() - imported
    opened = time.perf_counter()
    store = WorkflowStateManager(f"sqlite:///{workdir / DB_NAME}")
    open_ms = (time.perf_counter() - opened) * 1e3
    clock = _FirstCallClock()
    orchestrator = StoryWorkflowOrchestrator(clock, clock, store)
    start = time.perf_counter()
    result = orchestrator.resume(STORY_ID)
    done = time.perf_counter()
    store.close()
    history = result.metadata["history_length"]
    if result.decision != "publish" or history != rows + 2:  # + the resume and review rows
        raise AssertionError(f"resumed {result.decision} with {history} rows, built {rows}")
    assert clock.first is not None
    emit(
        {
            "mode": "resume",
            "rows": rows,
            "first_stage_ms": (clock.first - start) * 1e3,
            "to_result_ms": (done - start) * 1e3,
            "store_open_ms": open_ms,
            "imports_s": imports_s,
            "process_s": done - _STARTED,
            "rss_peak_kb": peak_rss_kb(),
        }
    )


def child_main(argv: list[str] | None = None) -> None:
    """``python -m bench.resume build|resume ROWS WORKDIR``."""
    parser = argparse.ArgumentParser(prog="python -m bench.resume")
    parser.add_argument("mode", choices=["build", "resume"])
    parser.add_argument("rows", type=int)
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args(argv)
    (build if args.mode == "build" else resume)(args.rows, args.workdir)


# -- parent -------------------------------------------------------------------------------------


def fresh_copy(source: Path, target: Path) -> None:
    """Copy the folder *source* to *target* and flush the copy to disk.

    Else the resume's first fsync would flush the whole copy. Only the copied files are synced
    (``os.sync()`` would wait for every other process's dirty pages on a shared machine).
    """
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    for path in target.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def run_section(
    *,
    lengths: tuple[int, ...],
    repeats: int,
    workdir: Path,
    python: str = sys.executable,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build each history length once, then resume copies of them, interleaved."""
    builds = {}
    for rows in lengths:
        target = workdir / f"resume-{rows}"
        builds[rows] = run_child("resume", "build", rows, target, python=python)
        builds[rows]["bytes"] = sqlite_used_bytes(target / DB_NAME)  # checkpoints the WAL
        log(f"  resume build H={rows:6d} {builds[rows]['build_s']:6.1f}s")
    runs: dict[int, list[dict[str, Any]]] = {}
    for rep in range(repeats):
        for rows in rotated(lengths, rep):
            copy = workdir / f"resume-{rows}-rep{rep}"
            fresh_copy(workdir / f"resume-{rows}", copy)
            res = run_child("resume", "resume", rows, copy, python=python)
            shutil.rmtree(copy, ignore_errors=True)
            runs.setdefault(rows, []).append(res)
            log(
                f"  resume r{rep} H={rows:6d} first stage {res['first_stage_ms']:7.2f} ms, "
                f"result {res['to_result_ms']:8.2f} ms"
            )
    shortest, longest = min(lengths), max(lengths)
    return {
        "lengths": list(lengths),
        "repeats": repeats,
        "builds": builds,
        "by_length": {
            str(rows): {
                key: Spread.of([r[key] for r in rs]).to_dict()
                for key in ("first_stage_ms", "to_result_ms", "store_open_ms", "rss_peak_kb")
            }
            for rows, rs in runs.items()
        },
        "longest_vs_shortest": {
            "shortest": shortest,
            "longest": longest,
            "first_stage": ratio_spread(
                [r["first_stage_ms"] for r in runs[longest]],
                [r["first_stage_ms"] for r in runs[shortest]],
            ).to_dict(),
            "to_result": ratio_spread(
                [r["to_result_ms"] for r in runs[longest]],
                [r["to_result_ms"] for r in runs[shortest]],
            ).to_dict(),
        },
    }


if __name__ == "__main__":
    child_main()
