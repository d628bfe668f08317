"""Rendering results.json as markdown tables, the targets' verdicts (``bench.targets``) last.

Every figure is ``median (min–max)`` over the repeats; every ratio was taken within a repeat.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.stats import fmt_spread as _fmt
from bench.targets import targets


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows)]


def _block(title: str, header: list[str], rows: list[list[str]], *notes: str) -> list[str]:
    """A titled table, then notes (each its own paragraph)."""
    return [f"### {title}", "", *_table(header, rows), *(f"\n{note}" for note in notes)]


def group_subject(group: dict[str, Any]) -> str:
    """Return story_fsm's variant name in a loop group."""
    return "story_fsm_pg" if "story_fsm_pg" in group["variants"] else "story_fsm"


def _loop_group(name: str, group: dict[str, Any], storage: dict[str, Any]) -> list[str]:
    rows = []
    for variant, v in group["variants"].items():
        ratio = group["ratios"].get(f"{variant}_per_step_vs_raw")
        st = storage.get(variant, {})
        rows.append(
            [
                variant,
                _fmt(v["story_us"]),
                _fmt(v["step_us"]),
                str(v["steps_per_story"]),
                _fmt(ratio, 2, "×") if ratio else "1.00× (the limit)",
                _fmt(st.get("bytes_per_step")),
                _fmt(st.get("rss_peak_mib")),
            ]
        )
    sync = f", synchronous={group['sync']}" if group["sync"] else ""
    per_story = group["ratios"][f"{group_subject(group)}_per_story_vs_raw"]
    header = [
        "variant",
        "µs/story",
        "µs/row",
        "rows/story",
        "× raw per row",
        "bytes/row",
        "peak RSS MiB",
    ]
    return [
        "",
        *_block(
            f"{name}{sync}",
            header,
            rows,
            f"story_fsm per story vs raw per story: {_fmt(per_story, 2, '×')}",
        ),
    ]


def _loop(section: dict[str, Any]) -> list[str]:
    lines = [
        f"## Per transition ({section['n']} stories on SQLite, {section['pg_n']} on "
        f"PostgreSQL; {section['repeats']} interleaved repeats)"
    ]
    storage = section.get("storage", {})
    for name, group in section["groups"].items():
        lines += _loop_group(name, group, storage.get(name, {}).get("variants", {}))
    return lines


def _fsync(section: dict[str, Any]) -> list[str]:
    if "skipped" in section:
        return ["### fsyncs", "", f"skipped: {section['skipped']}"]
    rows = [
        [v, _fmt(d["per_row"], 2), _fmt(d["per_story"], 1), f"{d['rows_per_story']:.0f}"]
        for v, d in section["variants"].items()
    ]
    title = (
        f"fsync + fdatasync (strace, {section['n']} stories, synchronous={section['sync']}"
        ", setup subtracted)"
    )
    return _block(title, ["variant", "per row", "per story", "rows/story"], rows)


def _resume(section: dict[str, Any]) -> list[str]:
    rows = [
        [h, _fmt(d["first_stage_ms"], 2), _fmt(d["to_result_ms"], 1), _fmt(d["store_open_ms"], 1)]
        for h, d in section["by_length"].items()
    ]
    r = section["longest_vs_shortest"]
    note = (
        f"H={r['longest']} / H={r['shortest']}: to first stage "
        f"{_fmt(r['first_stage'], 2, '×')}, to result {_fmt(r['to_result'], 2, '×')}"
    )
    header = [
        "history rows",
        "resume() → first stage, ms",
        "resume() → result, ms",
        "store open, ms",
    ]
    return _block(f"Resume ({section['repeats']} repeats, fresh process each)", header, rows, note)


def _throughput(section: dict[str, Any]) -> list[str]:
    rows = [
        [c, _fmt(d["stories_per_s"], 1), f"{d['ideal_per_s']:.1f}", _fmt(d["efficiency"], 2)]
        for c, d in section["by_concurrency"].items()
    ]
    title = (
        f"Throughput (stages sleep {section['stage_sleep_s'] * 1e3:.0f} ms, "
        f"{section['stories_per_thread']} stories per thread, SQLite)"
    )
    return _block(title, ["concurrency", "stories/s", "ideal", "efficiency"], rows)


def _workers(section: dict[str, Any]) -> list[str]:
    if section.get("status") != "measured":
        return [f"### Workers on PostgreSQL: {section.get('status')}"]
    rows = [
        [
            k,
            str(d["stories"]),
            _fmt(d["stories_per_s"], 1),
            f"{d['ideal_per_s']:.0f}",
            _fmt(d["efficiency"], 2),
            _fmt(d["vs_one"], 2, "×"),
            _fmt(d["rss_peak_mib"]),
        ]
        for k, d in section["by_processes"].items()
    ]
    title = (
        f"Workers on PostgreSQL ({section['stories_per_thread']} stories per thread, "
        f"{section['threads_per_worker']} threads per worker, stages sleep "
        f"{section['stage_sleep_s'] * 1e3:.0f} ms, {section['repeats']} repeats)"
    )
    header = [
        "worker processes",
        "stories",
        "stories/s",
        "ideal",
        "efficiency",
        "× one worker",
        "peak RSS MiB per worker",
    ]
    return _block(title, header, rows)


def _peers(section: dict[str, Any]) -> list[str]:
    if "skipped" in section:
        return ["### Peers", "", f"skipped: {section['skipped']}"]
    loop, fsyncs = section["loop"], section["fsyncs"].get("peers", {})
    rows = [
        [
            p,
            _fmt(d["workflow_us"]),
            _fmt(d["vs_raw"], 2, "×"),
            _fmt(d["vs_story_fsm"], 2, "×"),
            _fmt(d["bytes_per_step"]),
            _fmt(d["rss_peak_mib"]),
            f"{fsyncs[p]['per_workflow']:.1f}" if p in fsyncs else "–",
        ]
        for p, d in loop["peers"].items()
    ]
    header = [
        "peer",
        "µs/workflow",
        "× raw sqlite3",
        "× story_fsm",
        "bytes/step",
        "peak RSS MiB",
        "fsyncs/workflow",
    ]
    title = f"Peers: the loop ({loop['n']} workflows × {loop['rounds']} interleaved rounds)"
    resume = section["resume"]
    resume_rows = [
        [key.replace("@", " @ H="), _fmt(d["resume_ms"], 1), _fmt(d.get("first_stage_ms"), 2)]
        for key, d in resume["runs"].items()
    ]
    resume_header = ["peer @ history", "resume → done, ms", "story_fsm: → first stage, ms"]
    return [
        *_block(title, header, rows),
        "",
        *_block(f"Peers: resume ({resume['repeats']} repeats)", resume_header, resume_rows),
    ]


def _targets(results: dict[str, Any]) -> list[str]:
    mark = {True: "met", False: "**not met**", None: "–"}
    rows = [[t.name, t.goal, t.measured, mark[t.met]] for t in targets(results)]
    return _block(
        "Targets (ratios measured in one run)", ["target", "goal", "measured", "met"], rows
    )


RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "loop": _loop,
    "fsync": _fsync,
    "resume": _resume,
    "throughput": _throughput,
    "workers": _workers,
    "peers": _peers,
}


def render(results: dict[str, Any]) -> str:
    """Return the whole report as markdown."""
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    lines = [
        f"Measured {meta.get('date', '?')} ({meta.get('mode', '?')}); "
        + ", ".join(f"{k} {v}" for k, v in machine.items())
    ]
    for name, section in results.get("sections", {}).items():
        if name in RENDERERS:
            lines += ["", *RENDERERS[name](section)]
    lines += ["", *_targets(results)]
    return "\n".join(lines)
