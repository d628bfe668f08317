"""Mapping between database rows and story_fsm's records (pure functions, no I/O)."""

from __future__ import annotations

import json
import reprlib
from datetime import datetime, timedelta
from typing import Any

from story_fsm._json import dumps
from story_fsm._records import Lease, NewWorkflow, TransitionWrite, WorkflowRow
from story_fsm.models import TransitionRecord, WorkflowSummary
from story_fsm.states import ReviewDecision, Stage, Trigger, WorkflowState

__all__ = [
    "SUBMIT_WRITE",
    "advance_params",
    "creation_values",
    "fold_advance",
    "planned_row",
    "record_from_row",
    "record_from_write",
    "submitted_record",
    "summary_from_row",
    "transition_values",
    "workflow_from_row",
]


# What a read accepts in each kind of column. The driver's own types say what a column holds on
# PostgreSQL; SQLite stores any value in any column, so a row written by other tools may hold
# text where a count belongs. Such a value is refused here, at the read (a ValueError, which
# the store reports as an UnreadableRowError naming the story), not later, as a TypeError deep
# in a result or a rendering. ``type(v) in kinds`` rather than isinstance: a bool is no count.
_NONE = type(None)
_INT = (int,)
_NUMBER = (int, float)
_TEXT = (str,)
_OPT_INT = (int, _NONE)
_OPT_NUMBER = (int, float, _NONE)
_OPT_TEXT = (str, _NONE)
_OBJECT = (dict,)
_OPT_OBJECT = (dict, _NONE)
_KIND_NAMES = {int: "an integer", float: "a number", str: "text", dict: "a JSON object"}


def _of(kinds: tuple[type, ...], value: Any, column: str) -> Any:
    """Return *value* when its type is one of *kinds*, else raise ValueError naming *column*."""
    if type(value) in kinds:
        return value
    # (int, float) reads "a number": an integer is one too.
    named = [k for k in kinds if not (k is int and float in kinds)]
    wanted = " or ".join("null" if k is _NONE else _KIND_NAMES.get(k, k.__name__) for k in named)
    raise ValueError(f"{column} holds {reprlib.repr(value)} where {wanted} belongs")


def _json(kinds: tuple[type, ...], text: Any, column: str) -> Any:
    """Decode the JSON text of *column* and check what it decodes to."""
    return _of(kinds, json.loads(_of(_TEXT, text, column)), column)


def _checked_payload(trigger: Trigger, payload: Any) -> dict[str, Any]:
    """*payload* (decoded), checked for what the result reads of a review's or a polish's."""
    checked: dict[str, Any] = _of(_OBJECT, payload, "payload")
    if trigger is Trigger.REVIEWED:
        score = _of(_NUMBER, payload.get("quality_score"), "payload.quality_score")
        ReviewDecision(_of(_TEXT, payload.get("decision"), "payload.decision"))
        if not 0 <= score <= 100:  # also false for NaN, which json.loads takes
            raise ValueError(f"payload.quality_score holds {score!r} where 0-100 belongs")
        _of(_OPT_OBJECT, payload.get("review"), "payload.review")
    elif trigger is Trigger.POLISHED:
        _of(_OPT_INT, payload.get("changes_count"), "payload.changes_count")
        _of(_OPT_TEXT, payload.get("title"), "payload.title")
        _of(_OPT_OBJECT, payload.get("polish"), "payload.polish")
    return checked


def summary_from_row(row: Any) -> WorkflowSummary:
    return WorkflowSummary(
        story_id=row.story_id,
        state=WorkflowState(row.state),
        iteration=_of(_INT, row.iteration, "iteration"),
        seq=_of(_INT, row.seq, "seq"),
        title=_of(_TEXT, row.title, "title"),
        last_quality_score=_of(_OPT_NUMBER, row.last_quality_score, "last_quality_score"),
        total_cost=_of(_NUMBER, row.total_cost, "total_cost"),
        decision=_of(_OPT_TEXT, row.decision, "decision"),
        error=_of(_OPT_TEXT, row.error, "error"),
        started_at=row.started_at,
        updated_at=row.updated_at,
        lease_owner=_of(_OPT_TEXT, row.lease_owner, "lease_owner"),
        lease_expires_at=row.lease_expires_at,
    )


def workflow_from_row(row: Any) -> WorkflowRow:
    review_payload = getattr(row, "last_review_payload", None)
    return WorkflowRow(
        summary=summary_from_row(row),
        initial_title=_of(_TEXT, row.initial_title, "initial_title"),
        initial_script=_of(_TEXT, row.initial_script, "initial_script"),
        script=_of(_TEXT, row.script, "script"),
        audience_context=_json(_OBJECT, row.audience_context, "audience_context"),
        original_idea=_of(_TEXT, row.original_idea, "original_idea"),
        local_review_summary=(  # any JSON value: the pipeline's own summary, kept as given
            json.loads(_of(_TEXT, row.local_review_summary, "local_review_summary"))
            if row.local_review_summary
            else None
        ),
        config=_json(_OBJECT, row.config, "config"),
        initial_quality_score=_of(_OPT_NUMBER, row.initial_quality_score, "initial_quality_score"),
        total_reviews=_of(_INT, row.total_reviews, "total_reviews"),
        total_polishes=_of(_INT, row.total_polishes, "total_polishes"),
        failed_stage=Stage(row.failed_stage) if row.failed_stage else None,
        completed_at=row.completed_at,
        last_review=(
            _checked_payload(Trigger.REVIEWED, json.loads(_of(_TEXT, review_payload, "payload")))
            if review_payload
            else None
        ),
        lease_token=_of(_OPT_TEXT, row.lease_token, "lease_token"),
    )


def record_from_row(row: Any) -> TransitionRecord:
    trigger = Trigger(row.trigger)
    return TransitionRecord(
        seq=_of(_INT, row.seq, "seq"),
        trigger=trigger,
        source=WorkflowState(row.source),
        dest=WorkflowState(row.dest),
        iteration=_of(_INT, row.iteration, "iteration"),
        created_at=row.created_at,
        payload=_checked_payload(trigger, json.loads(_of(_TEXT, row.payload, "payload"))),
        stage=Stage(row.stage) if row.stage else None,
        attempt=_of(_OPT_INT, row.attempt, "attempt"),
        duration_seconds=_of(_OPT_NUMBER, row.duration_seconds, "duration_seconds"),
        cost=_of(_OPT_NUMBER, row.cost, "cost"),
        error=_of(_OPT_TEXT, row.error, "error"),
    )


# The hot path reads an enum's value as ``member._value_`` (a plain attribute) rather than
# ``.value`` (a descriptor call on Python 3.11), and turns stored text back into a member by a
# dict lookup rather than a call of the enum class: each runs several times per transition.
_STATES: dict[str, WorkflowState] = {s.value: s for s in WorkflowState}
_STAGES: dict[str, Stage] = {s.value: s for s in Stage}


def transition_values(
    story_id: str, seq: int, write: TransitionWrite, now: datetime
) -> dict[str, Any]:
    stage = write.stage
    return {
        "story_id": story_id,
        "seq": seq,
        "trigger": write.trigger._value_,
        "source": write.source._value_,
        "dest": write.dest._value_,
        "iteration": write.iteration,
        "stage": stage._value_ if stage is not None else None,
        "attempt": write.attempt,
        "duration_seconds": write.duration_seconds,
        "cost": write.cost,
        "error": write.error,
        "created_at": now,
        "payload": dumps(write.payload),
    }


def advance_params(
    story_id: str, expected_seq: int, write: TransitionWrite, lease: Lease, now: datetime
) -> dict[str, Any]:
    dest, trigger, failed = write.dest, write.trigger, write.failed_stage
    terminal = dest.is_terminal
    unheld = terminal or write.release_lease
    return {
        "p_story_id": story_id,
        "p_expected_seq": expected_seq,
        "p_held_token": lease.token,
        "p_state": dest._value_,
        "p_seq": expected_seq + 1,
        "p_iteration": write.next_iteration,
        "p_now": now,
        "p_cost": write.cost or 0.0,
        "p_reviews": 1 if trigger is Trigger.REVIEWED else 0,
        "p_polishes": 1 if trigger is Trigger.POLISHED else 0,
        "p_title": write.title,
        "p_script": write.script,
        "p_review_seq": expected_seq + 1 if trigger is Trigger.REVIEWED else None,
        "p_score": write.quality_score,
        "p_decision": write.decision,
        "p_failed_stage": failed._value_ if failed is not None else None,
        "p_error": write.error if dest is WorkflowState.FAILED else None,
        "p_completed_at": now if terminal else None,
        # A terminal state releases the lease: nothing runs until someone resumes or retries.
        "p_lease_owner": None if unheld else lease.owner,
        "p_lease_token": None if unheld else lease.token,
        "p_lease_expires_at": None if unheld else now + timedelta(seconds=lease.seconds),
    }


def creation_values(
    new: NewWorkflow, lease: Lease | None, now: datetime, started: WorkflowSummary | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the new workflow's summary row and its inputs row, as inserted.

    With *started* (the summary after a first edge that only moves the state, like
    ``start``), the row goes in at that state, seq and iteration: one INSERT, no UPDATE.
    """
    inputs = {
        "story_id": new.story_id,
        "initial_title": new.title,
        "initial_script": new.script,
        "audience_context": dumps(new.audience_context),
        "original_idea": new.original_idea,
        "local_review_summary": (
            dumps(new.local_review_summary) if new.local_review_summary is not None else None
        ),
        "config": dumps(new.config),
    }
    values = {
        "story_id": new.story_id,
        "state": WorkflowState.INITIAL.value,
        "seq": 0,
        "iteration": 1,
        "title": new.title,
        "script": new.script,
        "total_reviews": 0,
        "total_polishes": 0,
        "total_cost": 0.0,
        "started_at": now,
        "updated_at": now,
        "lease_owner": lease.owner if lease else None,
        "lease_token": lease.token if lease else None,
        "lease_expires_at": now + timedelta(seconds=lease.seconds) if lease else None,
    }
    if started is not None:
        values.update(state=started.state.value, seq=started.seq, iteration=started.iteration)
    return values, inputs


def planned_row(new: NewWorkflow, lease: Lease | None, now: datetime) -> WorkflowRow:
    """Return the row :func:`creation_values` describe, as the store would read it back.

    Built from *new* directly: its JSON fields were normalized by validation already, so
    no encode/decode is needed (a test compares this with the row mapped from the values).
    """
    summary = WorkflowSummary(
        story_id=new.story_id,
        state=WorkflowState.INITIAL,
        iteration=1,
        seq=0,
        title=new.title,
        last_quality_score=None,
        total_cost=0.0,
        decision=None,
        error=None,
        started_at=now,
        updated_at=now,
        lease_owner=lease.owner if lease else None,
        lease_expires_at=now + timedelta(seconds=lease.seconds) if lease else None,
    )
    return WorkflowRow(
        summary=summary,
        initial_title=new.title,
        initial_script=new.script,
        script=new.script,
        audience_context=new.audience_context,
        original_idea=new.original_idea,
        local_review_summary=new.local_review_summary,
        config=new.config,
        initial_quality_score=None,
        total_reviews=0,
        total_polishes=0,
        failed_stage=None,
        completed_at=None,
        last_review=None,
        lease_token=lease.token if lease else None,
    )


def record_from_write(seq: int, write: TransitionWrite, now: datetime) -> TransitionRecord:
    """Return the record *write* became as row *seq*, without reading it back."""
    return TransitionRecord(
        seq=seq,
        trigger=write.trigger,
        source=write.source,
        dest=write.dest,
        iteration=write.iteration,
        created_at=now,
        payload=write.payload,
        stage=write.stage,
        attempt=write.attempt,
        duration_seconds=write.duration_seconds,
        cost=write.cost,
        error=write.error,
    )


def _coalesce(new: Any, old: Any) -> Any:
    return old if new is None else new


def fold_advance(row: WorkflowRow, params: dict[str, Any], payload: dict[str, Any]) -> WorkflowRow:
    """Return *row* after the summary UPDATE that *params* (:func:`advance_params`) describe.

    The same assignments as the SQL statement, field by field, so a run knows its row without
    reading it back; ``tests/test_orchestrator.py`` compares the two after every scenario.
    """
    s = row.summary
    # Built field by field rather than with dataclasses.replace (which inspects the fields on
    # every call): this runs once per transition.
    summary = WorkflowSummary(
        story_id=s.story_id,
        state=_STATES[params["p_state"]],
        iteration=params["p_iteration"],
        seq=params["p_seq"],
        title=_coalesce(params["p_title"], s.title),
        last_quality_score=_coalesce(params["p_score"], s.last_quality_score),
        total_cost=s.total_cost + params["p_cost"],
        decision=params["p_decision"],
        error=params["p_error"],
        started_at=s.started_at,
        updated_at=params["p_now"],
        lease_owner=params["p_lease_owner"],
        lease_expires_at=params["p_lease_expires_at"],
    )
    failed = params["p_failed_stage"]
    return WorkflowRow(
        summary=summary,
        initial_title=row.initial_title,
        initial_script=row.initial_script,
        script=_coalesce(params["p_script"], row.script),
        audience_context=row.audience_context,
        original_idea=row.original_idea,
        local_review_summary=row.local_review_summary,
        config=row.config,
        initial_quality_score=_coalesce(row.initial_quality_score, params["p_score"]),
        total_reviews=row.total_reviews + params["p_reviews"],
        total_polishes=row.total_polishes + params["p_polishes"],
        failed_stage=_STAGES[failed] if failed else None,
        completed_at=params["p_completed_at"],
        last_review=payload if params["p_review_seq"] is not None else row.last_review,
        lease_token=params["p_lease_token"],
    )


#: What ``create()`` writes as row 0 of every workflow.
SUBMIT_WRITE = TransitionWrite(Trigger.SUBMIT, WorkflowState.INITIAL, WorkflowState.INITIAL, 1, 1)


def submitted_record(row: WorkflowRow) -> TransitionRecord:
    """Return row 0 of *row*'s workflow (the submit record), known without reading it."""
    return record_from_write(0, SUBMIT_WRITE, row.summary.started_at)
