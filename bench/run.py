"""Run story_fsm's benchmarks, print the tables, and write ``bench/results.json``.

    python bench/run.py                 # full (≈ 5 min here): every section but the peers
    python bench/run.py --quick         # reduced (< 1 min), for breakage; results in bench/.work
    python bench/run.py --only peers    # beside LangGraph, Burr, DBOS (≈ 5 min; PEERBENCH_VENV)
    python bench/run.py --only resume,throughput

Sections run in fresh subprocesses; a run updates only the sections it measured in the
results file, so the peers can be measured separately and land in the same file.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: import ``bench.*`` from the project root, and never let this folder's
    # module names shadow a library's.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from bench import fsyncs, loop, peers, pg, report, resume, storage, throughput, workers
from bench.child import ROOT

BENCH = ROOT / "bench"
SECTIONS = ("loop", "fsync", "resume", "throughput", "workers", "peers")
DEFAULT_SECTIONS = ("loop", "fsync", "resume", "throughput", "workers")


@dataclass(frozen=True)
class Plan:
    """How much each section measures."""

    repeats: int = 5
    loop_n: int = 300
    pg_n: int = 150
    with_normal: bool = True
    fsync_n: int = 100
    fsync_repeats: int = 3  # counts, not timings: they barely vary
    resume_lengths: tuple[int, ...] = (10, 1000, 10000)
    resume_repeats: int = 5
    concurrencies: tuple[int, ...] = (1, 8, 32)
    stories_per_thread: int = 8
    stage_sleep: float = 0.05
    worker_processes: tuple[int, ...] = (1, 2, 4)
    worker_stories_per_thread: int = 16  # the same for every worker count (weak scaling)
    worker_threads: int = 8
    worker_repeats: int = 3  # each repeat runs every worker count
    peer_n: int = 200
    peer_rounds: int = 3
    peer_lengths: tuple[int, ...] = (10, 1000, 10000)
    peer_repeats: int = 3
    peer_fsync_n: int = 20


FULL = Plan()
QUICK = Plan(
    repeats=3,
    loop_n=20,
    pg_n=10,
    with_normal=False,
    fsync_n=20,
    fsync_repeats=1,
    resume_lengths=(10, 1000),
    resume_repeats=3,
    stories_per_thread=1,
    worker_processes=(1, 4),
    worker_stories_per_thread=2,
    worker_repeats=1,
    peer_n=20,
    peer_lengths=(10, 100, 1000),
    peer_fsync_n=5,
)


def machine() -> dict[str, Any]:
    """Describe what the numbers were measured on."""
    import sqlalchemy
    import transitions

    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": pg.server_version() or "none",
        "sqlalchemy": sqlalchemy.__version__,
        "transitions": transitions.__version__,
        "platform": platform.platform(),
    }


def _runners(plan: Plan, workdir: Path, peer_venv: str | None) -> dict[str, Callable[[], Any]]:
    """Each section's measurement, as a thunk."""

    def run_loop() -> dict[str, Any]:
        groups = loop.groups(with_normal=plan.with_normal, with_pg=pg.unavailable() is None)
        if pg.unavailable():
            print(f"  postgresql: skipped, {pg.unavailable()}")
        section = loop.run_section(
            groups, n=plan.loop_n, pg_n=plan.pg_n, repeats=plan.repeats, workdir=workdir
        )
        section["storage"] = storage.summarize(section)
        return section

    return {
        "loop": run_loop,
        "fsync": lambda: fsyncs.run_section(
            n=plan.fsync_n,
            sync=loop.engine_default_synchronous(),
            repeats=plan.fsync_repeats,
            workdir=workdir,
        ),
        "resume": lambda: resume.run_section(
            lengths=plan.resume_lengths, repeats=plan.resume_repeats, workdir=workdir
        ),
        "throughput": lambda: throughput.run_section(
            concurrencies=plan.concurrencies,
            stories_per_thread=plan.stories_per_thread,
            repeats=plan.repeats,
            workdir=workdir,
            sleep=plan.stage_sleep,
        ),
        "workers": lambda: workers.run_section(
            processes=plan.worker_processes,
            stories_per_thread=plan.worker_stories_per_thread,
            threads=plan.worker_threads,
            repeats=plan.worker_repeats,
            sleep=plan.stage_sleep,
        ),
        "peers": lambda: peers.run_section(
            venv=peer_venv,
            n=plan.peer_n,
            rounds=plan.peer_rounds,
            lengths=plan.peer_lengths,
            repeats=plan.peer_repeats,
            fsync_n=plan.peer_fsync_n,
            workdir=workdir / "peers",
        ),
    }


def run(
    plan: Plan,
    sections: tuple[str, ...],
    *,
    out: Path,
    workdir: Path,
    mode: str,
    peer_venv: str | None = None,
) -> dict[str, Any]:
    """Measure *sections*, merge them into *out* (JSON), print the report and return it."""
    results: dict[str, Any] = json.loads(out.read_text()) if out.is_file() else {}
    results["meta"] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "machine": machine(),
        "plan": asdict(plan),
    }
    runners = _runners(plan, workdir, peer_venv)
    for name in sections:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        section = runners[name]()
        section["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        section["section_s"] = round(time.perf_counter() - started, 1)
        print(f"   ({section['section_s']:.0f} s)", flush=True)
        results.setdefault("sections", {})[name] = section
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")  # after each: partial runs count
    print()
    print(report.render(results))
    print(f"\nwrote {out}")
    return results


def _sections(only: str | None, with_peers: bool) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in only.split(",")) if only else DEFAULT_SECTIONS
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    return chosen + (("peers",) if with_peers and "peers" not in chosen else ())


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes (< 1 min)")
    parser.add_argument("--only", help=f"comma-separated sections from {', '.join(SECTIONS)}")
    parser.add_argument("--peers", action="store_true", help="add the peer comparison")
    parser.add_argument("--peer-venv", default=os.environ.get("PEERBENCH_VENV"))
    parser.add_argument(
        "--out",
        type=Path,
        help="results file (default: bench/results.json, "
        "or bench/.work/results-quick.json with --quick)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=BENCH / ".work",
        help="scratch folder for the databases (emptied first)",
    )
    args = parser.parse_args(argv)
    plan, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    out = args.out or (
        BENCH / ".work" / "results-quick.json" if args.quick else BENCH / "results.json"
    )
    workdir = args.workdir / "runs"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        run(
            plan,
            _sections(args.only, args.peers),
            out=out,
            workdir=workdir,
            mode=mode,
            peer_venv=args.peer_venv,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


__all__ = ["FULL", "QUICK", "Plan", "main", "replace", "run"]

if __name__ == "__main__":
    main()
