"""Per transition: the loop on story_fsm beside raw sqlite3, SQLAlchemy Core and psycopg.

Parent: :func:`run_section` runs every variant in a fresh process per repeat, interleaved, and
takes each ratio within a repeat. Child: ``python -m bench.loop VARIANT N WORKDIR`` runs N
stories (after a warm-up) and prints per-story timings, rows, bytes and peak RSS.

story_fsm persists 7 rows per story (submit, start, 3 reviews, 2 polishes) in 6 transactions
(a new run commits its creation and its first edge together); the raw baselines persist the 5
stage results as one INSERT + COMMIT each.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import pg
from bench.child import emit, peak_rss_kb, run_child
from bench.drivers import DRIVERS, PG_VARIANTS, SQLITE_VARIANTS, Driver
from bench.stats import Spread, ratio_spread, rotated
from bench.workload import STAGE_CALLS_PER_STORY


def engine_default_synchronous() -> str:
    """Return story_fsm's default ``sqlite_synchronous`` (read from its signature)."""
    from story_fsm import WorkflowStateManager

    param = inspect.signature(WorkflowStateManager).parameters["sqlite_synchronous"]
    return str(param.default).upper()


# -- child --------------------------------------------------------------------------------------


def _timed_stories(driver: Driver, n: int, warmup: int) -> tuple[list[float], str | None]:
    last = None
    for i in range(warmup):
        last = f"warmup-{i}"
        driver.run_one(last)
    times = []
    for i in range(n):
        last = f"story-{i}"
        start = time.perf_counter()
        driver.run_one(last)
        times.append(time.perf_counter() - start)
    return times, last


def child_main(argv: list[str] | None = None) -> None:
    """Run one variant in this process and print its ``RESULT``."""
    parser = argparse.ArgumentParser(prog="python -m bench.loop")
    parser.add_argument("variant", choices=sorted(DRIVERS))
    parser.add_argument("n", type=int)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--sync", default="FULL")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pg-schema")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    driver = DRIVERS[args.variant](args)
    setup_s = time.perf_counter() - started
    times, last = _timed_stories(driver, args.n, args.warmup)
    info = driver.finish(last)
    steps = info.pop("steps_per_story", STAGE_CALLS_PER_STORY)
    story_us = statistics.median(times) * 1e6 if times else None
    emit(
        {
            "variant": args.variant,
            "sync": None if args.pg_schema else args.sync,
            "n": args.n,
            "stories": args.n + args.warmup,
            "setup_s": setup_s,
            "story_us": story_us,
            "story_mean_us": statistics.fmean(times) * 1e6 if times else None,
            "steps_per_story": steps,
            "step_us": story_us / steps if story_us else None,
            "rss_peak_kb": peak_rss_kb(),
            **info,
        }
    )


# -- parent -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """Variants compared with each other: one backend at one durability level."""

    name: str
    variants: tuple[str, ...]
    sync: str | None = None  # SQLite's synchronous level

    @property
    def baseline(self) -> str:
        """The physical limit of the group: the raw driver's INSERT + COMMIT."""
        return self.variants[0]

    @property
    def subject(self) -> str:
        """story_fsm's variant in the group."""
        return "story_fsm_pg" if "story_fsm_pg" in self.variants else "story_fsm"


def groups(*, with_normal: bool, with_pg: bool) -> list[Group]:
    """Return the groups to measure: SQLite at the engine's default level, and optionally more."""
    default = engine_default_synchronous()
    out = [Group(f"sqlite_{default.lower()}", SQLITE_VARIANTS, default)]
    if with_normal and default != "NORMAL":
        out.append(Group("sqlite_normal", ("raw_sqlite3", "story_fsm"), "NORMAL"))
    if with_pg:
        out.append(Group("postgresql", PG_VARIANTS))
    return out


def _run_one(group: Group, variant: str, n: int, workdir: Path) -> dict[str, Any]:
    args: list[object] = [variant, n, workdir]
    schema = None
    if group.sync:
        args += ["--sync", group.sync]
    else:
        schema = pg.create_schema()
        args += ["--pg-schema", schema]
    try:
        return run_child("loop", *args)
    finally:
        if schema:
            pg.drop_schema(schema)


def _summarize(group: Group, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    variants = {
        v: {
            "story_us": Spread.of([r["story_us"] for r in rs]).to_dict(),
            "step_us": Spread.of([r["step_us"] for r in rs]).to_dict(),
            "steps_per_story": rs[0]["steps_per_story"],
            "setup_s": Spread.of([r["setup_s"] for r in rs]).to_dict(),
        }
        for v, rs in runs.items()
    }
    base = runs[group.baseline]

    def ratio(variant: str, key: str) -> dict[str, Any]:
        return ratio_spread([r[key] for r in runs[variant]], [r[key] for r in base]).to_dict()

    ratios = {f"{v}_per_step_vs_raw": ratio(v, "step_us") for v in group.variants[1:]}
    ratios[f"{group.subject}_per_story_vs_raw"] = ratio(group.subject, "story_us")
    return {"sync": group.sync, "baseline": group.baseline, "variants": variants, "ratios": ratios}


def run_section(
    group_list: list[Group],
    *,
    n: int,
    pg_n: int,
    repeats: int,
    workdir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every group's variants *repeats* times, interleaved; summarize with ratios."""
    jobs = [(g, v) for g in group_list for v in g.variants]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {g.name: {} for g in group_list}
    for rep in range(repeats):
        for group, variant in rotated(jobs, rep):
            count = n if group.sync else pg_n
            res = _run_one(group, variant, count, workdir / f"loop-{group.name}-{variant}-{rep}")
            runs[group.name].setdefault(variant, []).append(res)
            log(f"  loop r{rep} {group.name:12s} {variant:20s} {res['step_us']:8.0f} µs/step")
    summary = {g.name: _summarize(g, runs[g.name]) for g in group_list}
    return {"n": n, "pg_n": pg_n, "repeats": repeats, "groups": summary, "runs": runs}


if __name__ == "__main__":
    child_main()
