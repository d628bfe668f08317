"""The store's SQL statements, built once per schema so each write only binds values."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from story_fsm.states import WorkflowState
from story_fsm.store._prepared import PreparedWrite
from story_fsm.store.schema import Schema

__all__ = ["RUNNABLE_STATES", "STEP_PREFIX", "PreparedStatements", "Statements", "lease_lapsed"]

#: States a worker may pick up: submitted, or interrupted mid-stage (FAILED waits for an
#: operator's ``retry``, which re-queues it in the failed stage's state).
RUNNABLE_STATES = (
    WorkflowState.INITIAL.value,
    WorkflowState.REVIEWING.value,
    WorkflowState.POLISHING.value,
)


class Statements:
    """The hot path's statements, built once per schema so each write only binds values."""

    def __init__(self, schema: Schema) -> None:
        wf, tr, inputs = schema.workflows, schema.transitions, schema.inputs
        p = sa.bindparam
        advance = (
            sa.update(wf)
            .where(wf.c.story_id == p("p_story_id"), wf.c.seq == p("p_expected_seq"))
            .values(
                state=p("p_state"),
                seq=p("p_seq"),
                iteration=p("p_iteration"),
                updated_at=p("p_now"),
                total_cost=wf.c.total_cost + p("p_cost", type_=sa.Float),
                total_reviews=wf.c.total_reviews + p("p_reviews", type_=sa.Integer),
                total_polishes=wf.c.total_polishes + p("p_polishes", type_=sa.Integer),
                title=sa.func.coalesce(p("p_title", type_=sa.Text), wf.c.title),
                script=sa.func.coalesce(p("p_script", type_=sa.Text), wf.c.script),
                last_review_seq=sa.func.coalesce(
                    p("p_review_seq", type_=sa.Integer), wf.c.last_review_seq
                ),
                last_quality_score=sa.func.coalesce(
                    p("p_score", type_=sa.Float), wf.c.last_quality_score
                ),
                initial_quality_score=sa.func.coalesce(
                    wf.c.initial_quality_score, p("p_score", type_=sa.Float)
                ),
                decision=p("p_decision"),
                failed_stage=p("p_failed_stage"),
                error=p("p_error"),
                completed_at=p("p_completed_at"),
                lease_owner=p("p_lease_owner"),
                lease_token=p("p_lease_token"),
                lease_expires_at=p("p_lease_expires_at"),
            )
        )
        #: An explicit resume takes the lease over; every other write must hold it.
        self.takeover = advance
        self.advance = advance.where(wf.c.lease_token == p("p_held_token"))
        self.insert_transition = sa.insert(tr)
        self.insert_workflow = sa.insert(wf)
        self.insert_inputs = sa.insert(inputs)
        self.heartbeat = (
            sa.update(wf)
            .where(wf.c.story_id == p("p_story_id"), wf.c.lease_token == p("p_token"))
            .values(lease_expires_at=p("p_expires"))
        )
        self.release = (
            sa.update(wf)
            .where(wf.c.story_id == p("p_story_id"), wf.c.lease_token == p("p_token"))
            .values(lease_owner=None, lease_token=None, lease_expires_at=None)
        )
        # Asked only when a write's reply was lost: which story a claim's token holds, and
        # when a history row was written (a row never changes once written).
        self.held_by = sa.select(wf.c.story_id).where(wf.c.lease_token == p("p_token")).limit(1)
        self.written_at = sa.select(tr.c.created_at).where(
            tr.c.story_id == p("p_story_id"), tr.c.seq == p("p_seq")
        )
        # Runnable: in a runnable state (an IN list of plain parameters rather than SQLAlchemy's
        # per-call expansion, so that every statement below compiles once to fixed SQL) with
        # its lease free or expired.
        runnable = sa.and_(
            wf.c.state.in_([sa.literal(state) for state in RUNNABLE_STATES]),
            lease_lapsed(wf, p("p_now")),
        )
        self.candidates = (
            sa.select(wf.c.story_id, wf.c.state)
            .where(runnable)
            .order_by(wf.c.updated_at, wf.c.story_id)
            .limit(p("p_limit"))
        )
        take_lease: dict[str, Any] = {
            "lease_owner": p("p_owner"),
            "lease_token": p("p_token"),
            "lease_expires_at": p("p_expires"),
        }
        self.claim = (
            sa.update(wf).where(wf.c.story_id == p("p_story_id"), runnable).values(**take_lease)
        )
        # PostgreSQL: pick and claim in one statement; SKIP LOCKED so that concurrent workers
        # never wait on each other's pick, and the lease is re-checked under the row lock.
        picked = (
            self.candidates.with_only_columns(wf.c.story_id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .cte("picked")
        )
        self.claim_one = (
            sa.update(wf)
            .where(wf.c.story_id == picked.c.story_id, runnable)
            .values(**take_lease)
            .returning(wf.c.story_id)
        )
        review = tr.alias("last_review")
        self.snapshot = (
            sa.select(wf, *_input_columns(inputs), review.c.payload.label("last_review_payload"))
            .select_from(
                wf.join(inputs, inputs.c.story_id == wf.c.story_id).outerjoin(
                    review,
                    sa.and_(
                        review.c.story_id == wf.c.story_id, review.c.seq == wf.c.last_review_seq
                    ),
                )
            )
            .where(wf.c.story_id == p("p_story_id"))
        )
        self.history = sa.select(tr).where(tr.c.story_id == p("p_story_id")).order_by(tr.c.seq)
        self.history_after = self.history.where(tr.c.seq > p("p_after"))
        self.exists = sa.select(wf.c.story_id).where(wf.c.story_id == p("p_story_id"))
        self.step = _recorded(self.advance, tr)
        self.step_takeover = _recorded(self.takeover, tr)


def lease_lapsed(wf: sa.Table, now: Any) -> sa.ColumnElement[bool]:
    """True for a workflow no live process holds: its lease free, or expired by *now*."""
    return sa.or_(wf.c.lease_expires_at.is_(None), wf.c.lease_expires_at < now)


#: Prefix of the history row's parameters in the one-statement transition (:func:`_recorded`).
STEP_PREFIX = "t_"


def _recorded(advance: sa.Update, tr: sa.Table) -> sa.Insert:
    """Return *advance* and the history row's INSERT as one statement (PostgreSQL).

    ``WITH advanced AS (UPDATE ... RETURNING story_id) INSERT INTO transitions SELECT ...
    FROM advanced``: the row is inserted only when the fenced UPDATE matched, so the
    statement's rowcount (0 or 1) says whether the transition was recorded, and a whole
    transition is one round trip that commits on its own (no BEGIN, no COMMIT round trips).
    """
    advanced = advance.returning(advance.table.c.story_id).cte("advanced")
    row = sa.select(
        *[sa.bindparam(STEP_PREFIX + c.key, type_=c.type).label(c.key) for c in tr.columns]
    ).select_from(advanced)
    return sa.insert(tr).from_select([c.key for c in tr.columns], row)


def _input_columns(inputs: sa.Table) -> list[sa.Column[object]]:
    return [c for c in inputs.columns if c.key != "story_id"]


class PreparedStatements:
    """The writes of the hot path (create, advance, takeover), compiled for a dialect."""

    def __init__(self, statements: Statements, schema: Schema, dialect: sa.Dialect) -> None:
        self.advance = PreparedWrite(statements.advance, dialect)
        self.takeover = PreparedWrite(statements.takeover, dialect)
        self.insert_transition = PreparedWrite(
            statements.insert_transition, dialect, [c.key for c in schema.transitions.columns]
        )
        # A new workflow leaves the columns of later transitions NULL.
        filled = [c.key for c in schema.workflows.columns if c.key not in UNSET_AT_CREATE]
        self.insert_workflow = PreparedWrite(statements.insert_workflow, dialect, filled)
        self.insert_inputs = PreparedWrite(
            statements.insert_inputs, dialect, [c.key for c in schema.inputs.columns]
        )
        # PostgreSQL runs the UPDATE and the INSERT as one statement: a network round trip
        # costs more than either. SQLite is in-process: two statements cost next to nothing.
        self.step: PreparedWrite | None = None
        self.step_takeover: PreparedWrite | None = None
        self.claim_one: PreparedWrite | None = None
        if dialect.name == "postgresql":
            self.step = PreparedWrite(statements.step, dialect)
            self.step_takeover = PreparedWrite(statements.step_takeover, dialect)
            self.claim_one = PreparedWrite(statements.claim_one, dialect)


#: Columns a new workflow leaves NULL (their values come with later transitions).
UNSET_AT_CREATE = (
    "last_review_seq",
    "initial_quality_score",
    "last_quality_score",
    "decision",
    "failed_stage",
    "error",
    "completed_at",
)
