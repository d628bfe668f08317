"""fsync-family syscalls per persisted transition, counted by ``strace -f -c``.

Each variant runs twice under strace, with N stories and with none (the setup alone: schema,
migrations, first connections); the difference divided by the rows written is what a transition
costs in fsync + fdatasync. The raw sqlite3 baseline shows the floor: one per commit.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.child import run_child
from bench.stats import Spread, rotated

SYSCALLS = ("fsync", "fdatasync")
VARIANTS = ("raw_sqlite3", "story_fsm")


def strace_missing() -> str | None:
    """Return why the section can't run (no strace), or None."""
    if shutil.which("strace") is None:
        return "strace is not installed (apt-get install -y strace)"
    return None


def parse_strace_summary(text: str) -> dict[str, int]:
    """Return ``{syscall: calls}`` from ``strace -c`` output."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in SYSCALLS and parts[3].isdigit():
            counts[parts[-1]] = int(parts[3])
    return counts


def _traced(variant: str, n: int, sync: str, workdir: Path) -> tuple[int, dict[str, Any]]:
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as trace:
        prefix = ("strace", "-f", "-c", "-o", trace.name, "-e", "trace=" + ",".join(SYSCALLS))
        result = run_child(
            "loop", variant, n, workdir, "--sync", sync, "--warmup", 0, prefix=prefix
        )
        counts = parse_strace_summary(Path(trace.name).read_text())
    return sum(counts.values()), result


def measure(variant: str, n: int, sync: str, workdir: Path) -> dict[str, Any]:
    """Count fsyncs of *n* stories beyond the setup's, per story and per persisted row."""
    setup_calls, _ = _traced(variant, 0, sync, workdir / "setup")
    calls, result = _traced(variant, n, sync, workdir / "run")
    extra = calls - setup_calls
    return {
        "calls": calls,
        "setup_calls": setup_calls,
        "per_story": extra / n,
        "per_row": extra / result["rows"],
        "rows_per_story": result["rows"] / n,
    }


def run_section(
    *, n: int, sync: str, repeats: int, workdir: Path, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Count fsyncs per row for raw sqlite3 and story_fsm at *sync*, *repeats* times."""
    why = strace_missing()
    if why:
        log(f"  fsync: skipped, {why}")
        return {"skipped": why}
    runs: dict[str, list[dict[str, Any]]] = {}
    for rep in range(repeats):
        for variant in rotated(VARIANTS, rep):
            res = measure(variant, n, sync, workdir / f"fsync-{variant}-{rep}")
            runs.setdefault(variant, []).append(res)
            log(f"  fsync r{rep} {variant:12s} {res['per_row']:.2f} per row")
    return {
        "n": n,
        "sync": sync,
        "variants": {
            v: {
                "per_row": Spread.of([r["per_row"] for r in rs]).to_dict(),
                "per_story": Spread.of([r["per_story"] for r in rs]).to_dict(),
                "rows_per_story": rs[0]["rows_per_story"],
            }
            for v, rs in runs.items()
        },
    }
