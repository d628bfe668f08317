"""Storage: bytes per persisted transition and peak RSS, from the per-transition section's runs.

The bytes are measured inside each loop run (``bench.loop``): the database's used pages after
the run minus those after creating the schema, divided by the rows written. SQLite is
checkpointed first (``wal_checkpoint(TRUNCATE)``), so the WAL holds nothing uncounted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from bench.stats import Spread, ratio_spread


def sqlite_used_bytes(path: Path) -> int:
    """Return the bytes of *path*'s pages in use, after moving the WAL into the file."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    return int((pages - free) * size)


def script_checks(history: list[Any]) -> dict[str, int]:
    """Count, in one story's history, polishes and how many of them stored a script."""
    polishes = [r for r in history if r.trigger == "polished"]
    return {
        "polishes": len(polishes),
        "scripts_stored": sum("polished_script" in r.payload.get("polish", {}) for r in polishes),
        "marked_unchanged": sum(bool(r.payload.get("script_unchanged")) for r in polishes),
    }


def _bytes_per_step(runs: list[dict[str, Any]]) -> list[float]:
    return [r["bytes"] / r["rows"] for r in runs]


def summarize(loop: dict[str, Any]) -> dict[str, Any]:
    """Build the storage section from the loop section's raw runs (same runs, same repeats)."""
    out: dict[str, Any] = {}
    for group, runs in loop["runs"].items():
        section: dict[str, Any] = {"variants": {}}
        for variant, results in runs.items():
            section["variants"][variant] = {
                "bytes_per_step": Spread.of(_bytes_per_step(results)).to_dict(),
                "bytes_per_story": Spread.of(
                    [r["bytes"] / r["stories"] for r in results]
                ).to_dict(),
                "rss_peak_mib": Spread.of([r["rss_peak_kb"] / 1024 for r in results]).to_dict(),
                "script_checks": results[0].get("script_checks"),
            }
        base = "raw_psycopg" if "raw_psycopg" in runs else "raw_sqlite3"
        subject = "story_fsm_pg" if "story_fsm_pg" in runs else "story_fsm"
        section["ratio_vs_raw"] = ratio_spread(
            _bytes_per_step(runs[subject]), _bytes_per_step(runs[base])
        ).to_dict()
        unchanged = runs.get("story_fsm_unchanged")
        if unchanged:
            checks = unchanged[0]["script_checks"]
            section["unchanged_script_stored_again"] = checks["scripts_stored"] > 0
        out[group] = section
    return out
