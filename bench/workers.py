"""Workers on PostgreSQL: stories per second with 1, 2 and 4 worker processes.

K worker processes (``story_fsm.Worker``, each with the same number of threads) get
K × threads × R stories, submitted to a fresh schema: the same R stories per thread whatever
K is, so every configuration runs for about as long. (With one N for every K, four workers
would finish in a quarter of the time, and their start-up and last, unevenly shared round
would weigh four times as much: that measures the tail, not the throughput.) They start,
report ready, and are released together; the rate is N over the time from the release to the
last worker's exit (all stories COMPLETE). Stages sleep like LLM calls, so more processes
should mean proportionally more stories per second until the machine's cores or the database
are the limit. K is interleaved across repeats and each repeat's ratios are taken within it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import pg
from bench.child import ROOT, child_env, emit, parse_result, peak_rss_kb, run_child
from bench.stats import Spread, ratio_spread, rotated
from bench.workload import (
    AUDIENCE,
    STAGE_CALLS_PER_STORY,
    TITLE,
    NoOpPolisher,
    NoOpReviewer,
    loop_config,
    make_script,
)

READY = "READY"


def available() -> bool:
    """True once story_fsm ships ``Worker``."""
    import story_fsm

    return hasattr(story_fsm, "Worker")


def _store(schema: str) -> Any:
    from story_fsm import WorkflowStateManager

    return WorkflowStateManager(pg.sqlalchemy_url(pg.base_url(), schema))


def submit(schema: str, stories: int) -> None:
    """Submit *stories* workflows (INITIAL, unclaimed) to *schema*."""
    from story_fsm import StoryWorkflowOrchestrator

    with _store(schema) as store:
        orchestrator = StoryWorkflowOrchestrator(
            NoOpReviewer(), NoOpPolisher(), store, loop_config()
        )
        for i in range(stories):
            orchestrator.submit(f"story-{i}", TITLE, make_script(0), AUDIENCE)
    emit({"submitted": stories})


def work(schema: str, threads: int, go: Path, sleep: float) -> None:
    """Say READY, wait for the *go* file, then work until no story is left."""
    from story_fsm import Worker

    store = _store(schema)
    worker = Worker(
        NoOpReviewer(sleep), NoOpPolisher(sleep), store, concurrency=threads, poll_seconds=0.02
    )
    print(READY, flush=True)
    while not go.exists():
        time.sleep(0.002)
    stats = worker.run(stop_when_idle=True)
    ended = time.time()
    store.close()
    emit({"ended": ended, "completed": stats.completed, "rss_peak_kb": peak_rss_kb()})


def child_main(argv: list[str] | None = None) -> None:
    """``python -m bench.workers submit SCHEMA N`` | ``work SCHEMA THREADS GO_FILE SLEEP``."""
    parser = argparse.ArgumentParser(prog="python -m bench.workers")
    parser.add_argument("mode", choices=["submit", "work"])
    parser.add_argument("schema")
    parser.add_argument("args", nargs="*")
    args = parser.parse_args(argv)
    if args.mode == "submit":
        submit(args.schema, int(args.args[0]))
    else:
        threads, go, sleep = args.args
        work(args.schema, int(threads), Path(go), float(sleep))


# -- parent -------------------------------------------------------------------------------------


def _start_workers(
    processes: int, schema: str, threads: int, go: Path, sleep: float
) -> list[subprocess.Popen[str]]:
    cmd = [sys.executable, "-m", "bench.workers", "work", schema, str(threads), str(go), str(sleep)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=child_env())
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != READY:
            proc.kill()
            raise RuntimeError(f"a worker did not start: {line!r}")
    return procs


def measure(processes: int, stories: int, threads: int, sleep: float) -> dict[str, Any]:
    """Run *stories* through *processes* workers on a fresh schema; return the rate."""
    schema = pg.create_schema()
    try:
        run_child("workers", "submit", schema, stories)
        with tempfile.TemporaryDirectory() as tmp:
            go = Path(tmp) / "go"
            procs = _start_workers(processes, schema, threads, go, sleep)
            go.touch()
            released = time.time()
            results = [parse_result(proc.communicate(timeout=600)[0]) for proc in procs]
    finally:
        pg.drop_schema(schema)
    done = sum(r["completed"] for r in results)
    if done != stories:
        raise AssertionError(f"{done} of {stories} stories completed")
    elapsed = max(r["ended"] for r in results) - released
    ideal = processes * threads / (STAGE_CALLS_PER_STORY * sleep)
    return {
        "processes": processes,
        "stories_per_s": stories / elapsed,
        "ideal_per_s": ideal,
        "efficiency": stories / elapsed / ideal,
        "elapsed_s": elapsed,
        "rss_peak_mib": max(r["rss_peak_kb"] for r in results) / 1024,
    }


def run_section(
    *,
    processes: tuple[int, ...],
    stories_per_thread: int,
    threads: int,
    repeats: int,
    sleep: float = 0.05,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure each worker count *repeats* times, interleaved; ratios to one worker."""
    if not available():
        log("  workers: not yet available")
        return {"status": "not yet available"}
    if pg.unavailable():
        log(f"  workers: skipped, {pg.unavailable()}")
        return {"status": f"skipped: {pg.unavailable()}"}
    runs: dict[int, list[dict[str, Any]]] = {}
    for rep in range(repeats):
        for k in rotated(processes, rep):
            res = measure(k, k * threads * stories_per_thread, threads, sleep)
            runs.setdefault(k, []).append(res)
            log(
                f"  workers r{rep} K={k} {res['stories_per_s']:7.1f} stories/s "
                f"({res['efficiency']:.0%} of ideal)"
            )
    one = [r["stories_per_s"] for r in runs[min(processes)]]
    return {
        "status": "measured",
        "stories_per_thread": stories_per_thread,
        "threads_per_worker": threads,
        "stage_sleep_s": sleep,
        "repeats": repeats,
        "by_processes": {
            str(k): {
                "stories": k * threads * stories_per_thread,
                "stories_per_s": Spread.of([r["stories_per_s"] for r in rs]).to_dict(),
                "ideal_per_s": rs[0]["ideal_per_s"],
                "efficiency": Spread.of([r["efficiency"] for r in rs]).to_dict(),
                "vs_one": ratio_spread([r["stories_per_s"] for r in rs], one).to_dict(),
                "rss_peak_mib": Spread.of([r["rss_peak_mib"] for r in rs]).to_dict(),
            }
            for k, rs in runs.items()
        },
    }


if __name__ == "__main__":
    child_main()
