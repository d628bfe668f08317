"""Throughput with slow stages: stories per second against the ideal, at several concurrencies.

Each stage sleeps (50 ms by default, an LLM call's stand-in), so one story needs at least
5 × 50 ms; C threads sharing one orchestrator and one SQLite file could finish C stories per
250 ms. The efficiency is the measured rate over that ideal. One child process per repeat runs
every concurrency (in a rotated order, each on a fresh database file). Worker processes on
PostgreSQL are measured in ``bench.workers``.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.child import emit, peak_rss_kb, run_child
from bench.stats import Spread, rotated
from bench.workload import (
    STAGE_CALLS_PER_STORY,
    NoOpPolisher,
    NoOpReviewer,
    loop_config,
    run_story,
)


def _worker(orchestrator: Any, name: str, stories: int, gate: threading.Barrier) -> None:
    gate.wait()
    for i in range(stories):
        run_story(orchestrator, f"{name}-{i}")


def measure(concurrency: int, stories: int, db: Path, sleep: float) -> dict[str, Any]:
    """Run *concurrency* threads × *stories* stories on a fresh store; return the rate."""
    from story_fsm import StoryWorkflowOrchestrator, WorkflowStateManager

    store = WorkflowStateManager(f"sqlite:///{db}")
    # Warm up (statement cache, stage threads) with instant stages: it is not timed.
    fast = StoryWorkflowOrchestrator(NoOpReviewer(), NoOpPolisher(), store, loop_config())
    run_story(fast, "warmup")
    orchestrator = StoryWorkflowOrchestrator(
        NoOpReviewer(sleep), NoOpPolisher(sleep), store, loop_config()
    )
    gate = threading.Barrier(concurrency + 1)
    threads = [
        threading.Thread(target=_worker, args=(orchestrator, f"t{t}", stories, gate))
        for t in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    done = sum(s.state == "complete" for s in store.list_workflows()) - 1  # minus the warm-up
    store.close()
    expected = concurrency * stories
    if done != expected:
        raise AssertionError(f"{done} of {expected} stories completed")
    ideal = concurrency / (STAGE_CALLS_PER_STORY * sleep)
    return {
        "concurrency": concurrency,
        "stories": expected,
        "elapsed_s": elapsed,
        "stories_per_s": expected / elapsed,
        "ideal_per_s": ideal,
        "efficiency": expected / elapsed / ideal,
    }


def child_main(argv: list[str] | None = None) -> None:
    """``python -m bench.throughput STORIES_PER_THREAD WORKDIR C [C ...] [--sleep S]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.throughput")
    parser.add_argument("stories", type=int, help="stories per thread")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("concurrency", type=int, nargs="+", help="run in this order")
    parser.add_argument("--sleep", type=float, default=0.05)
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    runs = [
        measure(c, args.stories, args.workdir / f"c{c}.db", args.sleep) for c in args.concurrency
    ]
    emit({"runs": runs, "rss_peak_kb": peak_rss_kb()})


def run_section(
    *,
    concurrencies: tuple[int, ...],
    stories_per_thread: int,
    repeats: int,
    workdir: Path,
    sleep: float = 0.05,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure each concurrency *repeats* times, in a rotated order per repeat."""
    runs: dict[int, list[dict[str, Any]]] = {}
    for rep in range(repeats):
        order = rotated(concurrencies, rep)
        res = run_child(
            "throughput",
            stories_per_thread,
            workdir / f"throughput-{rep}",
            *order,
            "--sleep",
            sleep,
        )
        for run in res["runs"]:
            runs.setdefault(run["concurrency"], []).append(run)
            log(
                f"  throughput r{rep} C={run['concurrency']:3d} {run['stories_per_s']:7.2f} "
                f"stories/s ({run['efficiency']:.0%} of ideal)"
            )
    return {
        "stage_sleep_s": sleep,
        "stories_per_thread": stories_per_thread,
        "repeats": repeats,
        "by_concurrency": {
            str(c): {
                "stories_per_s": Spread.of([r["stories_per_s"] for r in runs[c]]).to_dict(),
                "ideal_per_s": runs[c][0]["ideal_per_s"],
                "efficiency": Spread.of([r["efficiency"] for r in runs[c]]).to_dict(),
            }
            for c in concurrencies
        },
    }


if __name__ == "__main__":
    child_main()
