"""The issue's targets, checked against results.json (medians of within-repeat ratios)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.stats import fmt_spread as _fmt


@dataclass(frozen=True)
class Target:
    """One of the issue's targets, and how this run measured against it."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in these results


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results.get("sections", {})
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _ratio_target(name: str, goal: str, spread: Any, ok: Callable[[float], bool]) -> Target:
    if not spread:
        return Target(name, goal, "not measured", None)
    return Target(name, goal, _fmt(spread, 2, "×"), ok(spread["median"]))


def targets(results: dict[str, Any]) -> list[Target]:
    """Check the issue's targets against *results* (medians of within-repeat ratios)."""
    groups = _get(results, "loop", "groups") or {}
    default = next(iter(groups), None)
    out = [
        _ratio_target(
            "per transition vs raw sqlite3 INSERT+COMMIT",
            "≤ 1.5×",
            _get(results, "loop", "groups", str(default), "ratios", "story_fsm_per_step_vs_raw"),
            lambda r: r <= 1.5,
        )
    ]
    fs = _get(results, "fsync", "variants", "story_fsm", "per_row")
    out.append(
        Target(
            "fsyncs per transition",
            "≤ 1.1",
            _fmt(fs, 2) if fs else "not measured",
            fs["median"] <= 1.1 if fs else None,
        )
    )
    burr = _get(results, "peers", "loop", "peers", "burr_sqlite", "vs_story_fsm")
    out.append(
        _ratio_target(
            "per workflow: Burr + SQLitePersister / story_fsm", "≥ 3×", burr, lambda r: r >= 3
        )
    )
    resume = _get(results, "resume", "longest_vs_shortest")
    label = (
        f"resume at {resume['longest']} / at {resume['shortest']} rows"
        if resume
        else "resume at 10,000 / at 10 rows"
    )
    out.append(_ratio_target(label, "≤ 1.2×", resume and resume["first_stage"], lambda r: r <= 1.2))
    eff = _get(results, "throughput", "by_concurrency", "32", "efficiency")
    out.append(
        Target(
            "throughput at concurrency 32",
            "≥ 90% of ideal",
            _fmt(eff, 2) if eff else "not measured",
            eff["median"] >= 0.9 if eff else None,
        )
    )
    four = _get(results, "workers", "by_processes", "4", "vs_one")
    if four:
        out.append(
            _ratio_target("4 workers / 1 worker on PostgreSQL", "≥ 3.2×", four, lambda r: r >= 3.2)
        )
    else:
        status = _get(results, "workers", "status") or "not measured"
        out.append(Target("4 workers / 1 worker on PostgreSQL", "≥ 3.2×", status, None))
    storage = _get(results, "loop", "storage", str(default))
    out.append(
        _ratio_target(
            "storage per transition vs raw sqlite3 per step",
            "≤ 1.2×",
            storage and storage["ratio_vs_raw"],
            lambda r: r <= 1.2,
        )
    )
    again = storage.get("unchanged_script_stored_again") if storage else None
    out.append(
        Target(
            "an unchanged script is not stored again",
            "not stored",
            "not measured" if again is None else ("stored" if again else "not stored"),
            None if again is None else not again,
        )
    )
    return out
