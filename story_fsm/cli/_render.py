"""Rich tables for people: a run's summary, a workflow's status, its history, the list.

Every function builds a renderable from the library's records and prints nothing itself; the
commands print them on stdout. User text (titles, errors) is passed as plain text, never as
markup, with its control characters escaped (:func:`~story_fsm.cli._output.shown`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from story_fsm.cli._output import shown
from story_fsm.models import TransitionRecord, WorkflowIteration, WorkflowResult, WorkflowSummary
from story_fsm.states import Trigger, WorkflowState

__all__ = ["history_line", "history_table", "result_summary", "status_table", "workflows_table"]

_STATE_STYLES = {
    WorkflowState.COMPLETE: "bold green",
    WorkflowState.FAILED: "bold red",
    WorkflowState.INITIAL: "dim",
}
_DASH = "–"


def _state(state: WorkflowState) -> Text:
    return Text(state.value, style=_STATE_STYLES.get(state, "bold yellow"))


def _time(value: datetime | None) -> str:
    if value is None:
        return _DASH
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _score(value: float | None) -> str:
    return _DASH if value is None else f"{value:.1f}"


def _cost(value: float | None) -> str:
    return _DASH if value is None else f"${value:.4f}"


def _seconds(value: float | None) -> str:
    return _DASH if value is None else f"{value:.2f}s"


def _grid(rows: list[tuple[str, str | Text]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in rows:
        grid.add_row(name, value if isinstance(value, Text) else Text(value))
    return grid


def _iteration_row(it: WorkflowIteration, previous: float | None) -> list[str | Text]:
    delta = _DASH if previous is None else f"{it.quality_score - previous:+.1f}"
    polished = it.polish_data is not None
    return [
        str(it.iteration_number),
        Text(f"{it.quality_score:.1f}", style="bold"),
        delta,
        it.decision.value,
        str(it.changes_count) if polished else _DASH,
        _seconds(it.review_seconds + it.polish_seconds),
        _cost(it.cost),
    ]


def _iterations_table(result: WorkflowResult) -> Table:
    table = Table(title=f"{result.story_id}: {shown(result.final_title)}", title_justify="left")
    for name in ("iteration", "score", "Δ", "review says", "changes", "duration", "cost"):
        justify: JustifyMethod = "left" if name == "review says" else "right"
        table.add_column(name, justify=justify)
    previous: float | None = None
    for it in result.iterations:
        table.add_row(*_iteration_row(it, previous))
        previous = it.quality_score
    return table


def _outcome(result: WorkflowResult) -> Text:
    if result.state is WorkflowState.COMPLETE:
        style = "bold green" if result.decision == "publish" else "bold yellow"
        return Text(f"{result.decision} ({result.state.value})", style=style)
    return _state(result.state)


def result_summary(result: WorkflowResult) -> RenderableType:
    """Return a run's summary: score per iteration, then decision, cost and duration."""
    scores = _DASH
    if result.initial_quality_score is not None and result.final_quality_score is not None:
        scores = f"{result.initial_quality_score:.1f} → {result.final_quality_score:.1f}"
        scores += f" ({result.quality_improvement or 0.0:+.1f})"
    rows: list[tuple[str, str | Text]] = [
        ("decision", _outcome(result)),
        ("score", scores),
        ("reviews", f"{result.total_reviews} review(s), {result.total_polishes} polish(es)"),
        ("cost", _cost(result.total_cost)),
        ("duration", _seconds(result.total_duration_seconds)),
    ]
    if result.final_title != result.initial_title:
        rows.append(("title", f"{shown(result.initial_title)} → {shown(result.final_title)}"))
    if result.error:
        rows.append(("error", Text(shown(result.error), style="red")))
    return Group(_iterations_table(result), Text(""), _grid(rows))


def _lease(summary: WorkflowSummary) -> str:
    """Return ``owner (until HH:MM:SS)`` for a held workflow, a dash for a free one."""
    if not summary.lease_owner:
        return _DASH
    until = f" (until {_time(summary.lease_expires_at)})" if summary.lease_expires_at else ""
    return summary.lease_owner + until


def status_table(summary: WorkflowSummary) -> RenderableType:
    """Return one workflow's status as a two-column grid."""
    lease = _lease(summary)
    rows: list[tuple[str, str | Text]] = [
        ("story", summary.story_id),
        ("state", _state(summary.state)),
        ("title", shown(summary.title)),
        ("iteration", str(summary.iteration)),
        ("step (seq)", str(summary.seq)),
        ("last score", _score(summary.last_quality_score)),
        ("cost", _cost(summary.total_cost)),
        ("decision", summary.decision or _DASH),
        ("error", Text(shown(summary.error), style="red") if summary.error else _DASH),
        ("lease", lease),
        ("started", f"{_time(summary.started_at)} UTC"),
        ("updated", f"{_time(summary.updated_at)} UTC"),
    ]
    return _grid(rows)


def _record_row(record: TransitionRecord) -> list[str | Text]:
    score = record.payload.get("quality_score") if record.trigger is Trigger.REVIEWED else None
    failed = record.trigger in (Trigger.ATTEMPT_FAILED, Trigger.FAIL)
    attempt = f"{record.stage.value} #{record.attempt}" if record.stage and record.attempt else ""
    return [
        str(record.seq),
        _time(record.created_at),
        Text(record.trigger.value, style="red" if failed else ""),
        f"{record.source.value} → {record.dest.value}",
        str(record.iteration),
        attempt,
        _score(score) if isinstance(score, int | float) else "",
        _seconds(record.duration_seconds) if record.duration_seconds is not None else "",
        Text(shown(record.error or ""), style="red"),
    ]


def history_table(story_id: str, records: list[TransitionRecord]) -> Table:
    """Return one line per stored record: transitions and failed attempts, in order."""
    table = Table(title=f"history of {story_id} (UTC)", title_justify="left")
    names = ("seq", "time", "trigger", "source → dest", "iter", "attempt", "score", "took")
    for name in names:
        justify: JustifyMethod = "right" if name in ("seq", "iter", "score", "took") else "left"
        table.add_column(name, justify=justify, no_wrap=True)
    table.add_column("error", overflow="fold")
    for record in records:
        table.add_row(*_record_row(record))
    return table


def history_line(record: TransitionRecord) -> str:
    """Return one record as one line of plain text, the table's columns in its order.

    For ``history --follow``, which prints each record as it is committed: a table would
    have to be drawn again for every row.
    """
    seq, at, trigger, edge, iteration, *rest = (
        cell.plain if isinstance(cell, Text) else cell for cell in _record_row(record)
    )
    head = f"{seq:>4}  {at}  {trigger:<14} {edge:<23} iter {iteration}"
    return "  ".join((head, *(cell for cell in rest if cell)))


def workflows_table(summaries: list[WorkflowSummary]) -> Table:
    """Return one line per workflow, oldest first."""
    table = Table()
    columns = ("story", "state", "iter", "score", "cost", "decision", "lease", "updated (UTC)")
    for name in (*columns, "title"):
        justify: JustifyMethod = "right" if name in ("iter", "score", "cost") else "left"
        table.add_column(name, justify=justify)
    for s in summaries:
        table.add_row(
            s.story_id,
            _state(s.state),
            str(s.iteration),
            _score(s.last_quality_score),
            _cost(s.total_cost),
            s.decision or _DASH,
            _lease(s),
            _time(s.updated_at),
            Text(shown(s.title)),
        )
    return table
