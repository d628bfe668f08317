"""Peers: story_fsm beside LangGraph, Burr, DBOS and raw SQLite, in one run of the peer harness.

The harness (``../shared/peer-bench``, read-only, not ours to copy into the project) is copied
to a temporary folder and driven from there with its own virtualenv, in which story_fsm is
installed too (its ``story_fsm`` peer drives our public API). Three measurements, each peer in
a fresh process, peers interleaved:

* loop: ``bench_loop.py PEER N`` per round; each peer's per-workflow time over raw sqlite3's
  (WAL, synchronous FULL) in the same round;
* resume: ``bench_resume.py`` for LangGraph, Burr and DBOS, ``bench.resume`` for story_fsm,
  at each history length, on copies of one crashed build;
* fsyncs: ``strace -c`` around the loop at two sizes; the difference per workflow.

Without the virtualenv the section prints how to set it up and is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.child import ROOT, child_env, run_command
from bench.fsyncs import SYSCALLS, parse_strace_summary, strace_missing
from bench.resume import fresh_copy
from bench.stats import Spread, ratio_spread, rotated

HARNESS = Path(os.environ.get("PEERBENCH_SRC", ROOT.parent / "shared" / "peer-bench"))
BASELINE = "sqlite_wal_full"
LOOP_PEERS = (
    BASELINE,
    "sqlalchemy_core",
    "story_fsm",
    "burr_sqlite",
    "langgraph_sqlite_sync",
    "dbos_sqlite",
)
RESUME_PEERS = ("story_fsm", "burr", "langgraph", "dbos")
FSYNC_PEERS = (BASELINE, "story_fsm", "burr_sqlite", "langgraph_sqlite_sync", "dbos_sqlite")
STEPS_PER_WORKFLOW = 5  # the harness's unit: per step = per workflow / 5, for every peer

SETUP = """\
The peer benchmark needs its own virtualenv (see {harness}/README.md):
  SCRATCH=$(mktemp -d)
  python3 -m venv $SCRATCH/venv
  $SCRATCH/venv/bin/pip install sqlalchemy transitions langgraph langgraph-checkpoint-sqlite \\
      apache-burr dbos "psycopg[binary]" langgraph-checkpoint-postgres psutil
  $SCRATCH/venv/bin/pip install -e {root}
then: PEERBENCH_VENV=$SCRATCH/venv python bench/run.py --only peers"""


def venv_python(venv: str | None) -> tuple[str | None, str]:
    """Return the peer virtualenv's python if it imports every peer and story_fsm, and why not."""
    if not venv:
        return None, "the peer virtualenv is missing (set PEERBENCH_VENV)"
    python = str(Path(venv) / "bin" / "python")
    probe = [python, "-c", "import burr, langgraph, dbos, story_fsm"]
    try:
        proc = subprocess.run(probe, check=False, capture_output=True, text=True, timeout=120)
    except OSError as exc:
        return None, f"{python} does not run: {exc}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"{python} cannot import the peers and story_fsm ({last}); re-run its pip"
    return python, ""


@contextmanager
def harness_copy() -> Iterator[Path]:
    """Yield a writable temporary copy of the harness, removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="story-fsm-peers-"))
    try:
        copy = scratch / "peer-bench"
        shutil.copytree(HARNESS, copy, ignore=shutil.ignore_patterns("results", "__pycache__"))
        for path in [copy, *copy.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        yield copy
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _bytes_per_step(result: dict[str, Any]) -> float | None:
    size = sum(result["files"].values()) if "files" in result else result.get("pg_db_growth")
    return size / (result["persisted_wf"] * STEPS_PER_WORKFLOW) if size else None


def run_loop(
    python: str,
    harness: Path,
    *,
    n: int,
    rounds: int,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Run the loop for every peer, *rounds* times interleaved; ratios to raw sqlite3 per round."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for rnd in range(rounds):
        for peer in rotated(LOOP_PEERS, rnd):
            wd = workdir / f"loop-{peer}-{rnd}"
            res = run_command([python, str(harness / "bench_loop.py"), peer, str(n), str(wd)])
            shutil.rmtree(wd, ignore_errors=True)
            runs.setdefault(peer, []).append(res)
            log(f"  peers loop r{rnd} {peer:24s} {res['wf_median_us']:9.0f} µs/workflow")
    base = [r["wf_median_us"] for r in runs[BASELINE]]
    table = {}
    for peer, rs in runs.items():
        wf = [r["wf_median_us"] for r in rs]
        per_step = [_bytes_per_step(r) for r in rs]
        table[peer] = {
            "workflow_us": Spread.of(wf).to_dict(),
            "vs_raw": ratio_spread(wf, base).to_dict(),
            "vs_story_fsm": ratio_spread(
                wf, [r["wf_median_us"] for r in runs["story_fsm"]]
            ).to_dict(),
            "bytes_per_step": Spread.of([b for b in per_step if b]).to_dict()
            if any(per_step)
            else None,
            "rss_peak_mib": Spread.of([r["rss_peak_kb"] / 1024 for r in rs]).to_dict(),
            "rows": rs[0].get("rows"),
            "version": rs[0].get("version"),
        }
    return {"n": n, "rounds": rounds, "peers": table}


def _resume_cmd(python: str, harness: Path, mode: str, peer: str, rows: int, wd: Path) -> list[str]:
    if peer == "story_fsm":
        return [python, "-m", "bench.resume", mode, str(rows), str(wd)]
    return [python, str(harness / "bench_resume.py"), mode, peer, str(rows), str(wd)]


def _resume_ms(result: dict[str, Any]) -> float:
    """The peers' resume time (load + finish); story_fsm's to-result time, its equivalent."""
    return float(result.get("resume_ms", result.get("to_result_ms")))


def run_resume(
    python: str,
    harness: Path,
    *,
    lengths: tuple[int, ...],
    repeats: int,
    workdir: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Build one crashed history per peer and length, then resume copies of it, interleaved."""
    env = child_env({"PEERBENCH_CRASH": "1"})
    jobs = [(peer, rows) for rows in lengths for peer in RESUME_PEERS]
    for peer, rows in jobs:
        build = workdir / f"resume-{peer}-{rows}"
        shutil.rmtree(build, ignore_errors=True)
        res = run_command(_resume_cmd(python, harness, "build", peer, rows, build), env=env)
        log(f"  peers resume build {peer:10s} H={rows:6d} {res['build_s']:6.1f}s")
    runs: dict[str, list[dict[str, Any]]] = {}
    for rep in range(repeats):
        for peer, rows in rotated(jobs, rep):
            copy = workdir / f"resume-{peer}-{rows}-rep{rep}"
            fresh_copy(workdir / f"resume-{peer}-{rows}", copy)
            res = run_command(_resume_cmd(python, harness, "resume", peer, rows, copy))
            shutil.rmtree(copy, ignore_errors=True)
            runs.setdefault(f"{peer}@{rows}", []).append(res)
            log(f"  peers resume r{rep} {peer:10s} H={rows:6d} {_resume_ms(res):9.1f} ms")
    table: dict[str, Any] = {}
    for key, rs in runs.items():
        entry = {"resume_ms": Spread.of([_resume_ms(r) for r in rs]).to_dict()}
        if "first_stage_ms" in rs[0]:
            entry["first_stage_ms"] = Spread.of([r["first_stage_ms"] for r in rs]).to_dict()
        table[key] = entry
    return {"lengths": list(lengths), "repeats": repeats, "runs": table}


def _fsyncs(python: str, harness: Path, peer: str, n: int, wd: Path) -> int:
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as trace:
        prefix = ["strace", "-f", "-c", "-o", trace.name, "-e", "trace=" + ",".join(SYSCALLS)]
        run_command([*prefix, python, str(harness / "bench_loop.py"), peer, str(n), str(wd)])
        shutil.rmtree(wd, ignore_errors=True)
        return sum(parse_strace_summary(Path(trace.name).read_text()).values())


def run_fsyncs(
    python: str, harness: Path, *, n: int, workdir: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    """fsync + fdatasync per workflow: runs of n and 2n workflows, the difference over n."""
    why = strace_missing()
    if why:
        return {"skipped": why}
    table = {}
    for peer in FSYNC_PEERS:
        small = _fsyncs(python, harness, peer, n, workdir / f"fsync-{peer}-a")
        large = _fsyncs(python, harness, peer, 2 * n, workdir / f"fsync-{peer}-b")
        table[peer] = {"per_workflow": (large - small) / n}
        log(f"  peers fsync {peer:24s} {table[peer]['per_workflow']:.1f} per workflow")
    return {"n": n, "peers": table}


def run_section(
    *,
    venv: str | None,
    n: int,
    rounds: int,
    lengths: tuple[int, ...],
    repeats: int,
    fsync_n: int,
    workdir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run loop, resume and fsync comparisons against the peers (skipped without the venv)."""
    python, why = venv_python(venv)
    if python is None:
        log(f"  peers: skipped, {why}")
        log(SETUP.format(harness=HARNESS, root=ROOT))
        return {"skipped": why}
    if not (HARNESS / "bench_loop.py").is_file():
        return {"skipped": f"no peer harness at {HARNESS}"}
    with harness_copy() as harness:
        return {
            "loop": run_loop(python, harness, n=n, rounds=rounds, workdir=workdir, log=log),
            "resume": run_resume(
                python, harness, lengths=lengths, repeats=repeats, workdir=workdir, log=log
            ),
            "fsyncs": run_fsyncs(python, harness, n=fsync_n, workdir=workdir, log=log),
        }
