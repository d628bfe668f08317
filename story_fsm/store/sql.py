"""WorkflowStateManager: the SQL store behind every workflow (SQLite file or PostgreSQL).

A transition is one small UPDATE of the story's summary row, fenced on the expected ``seq`` and
the lease token, and one INSERT of the history row, in one transaction, with no SELECT before
the write. The database decides races: the fenced UPDATE matches no row for a writer that lost,
and the ``(story_id, seq)`` primary key refuses a duplicate step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from story_fsm.errors import (
    ConcurrentAdvanceError,
    DatabaseBusyError,
    InputValidationError,
    StoreError,
    WorkflowExistsError,
    WorkflowNotFoundError,
)
from story_fsm.models import (
    Lease,
    NewWorkflow,
    TransitionRecord,
    TransitionWrite,
    WorkflowResult,
    WorkflowRow,
    WorkflowSummary,
    build_result,
)
from story_fsm.states import Stage, Trigger, WorkflowState
from story_fsm.store.engine import make_engine
from story_fsm.store.migrate import ensure_schema
from story_fsm.store.schema import DEFAULT_TABLE_PREFIX, Schema, build_schema

__all__ = ["WorkflowStateManager"]


def utcnow() -> datetime:
    """Return the current time, aware, in UTC."""
    return datetime.now(UTC)


def _is_busy(error: sa_exc.DBAPIError) -> bool:
    text = str(error.orig).lower()
    return "database is locked" in text or "database is busy" in text


@contextmanager
def _translated(story_id: str | None = None) -> Iterator[None]:
    """Turn driver errors into story_fsm's, so no ``sqlalchemy.exc`` reaches callers."""
    try:
        yield
    except sa_exc.OperationalError as exc:
        if _is_busy(exc):
            raise DatabaseBusyError(
                f"the SQLite database stayed locked past the busy timeout"
                f"{f' while writing story {story_id!r}' if story_id else ''}; another process "
                "holds it: retry, raise busy_timeout_seconds, or use PostgreSQL for many writers"
            ) from exc
        raise StoreError(f"database error: {exc.orig}") from exc
    except sa_exc.SQLAlchemyError as exc:
        raise StoreError(f"database error: {exc}") from exc


#: States a worker may pick up: submitted, or interrupted mid-stage (FAILED waits for an
#: operator's ``retry``, which re-queues it in the failed stage's state).
RUNNABLE_STATES = (
    WorkflowState.INITIAL.value,
    WorkflowState.REVIEWING.value,
    WorkflowState.POLISHING.value,
)


class _Statements:
    """The hot path's statements, built once per schema so each write only binds values."""

    def __init__(self, schema: Schema) -> None:
        wf, tr = schema.workflows, schema.transitions
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
        runnable = sa.or_(wf.c.lease_expires_at.is_(None), wf.c.lease_expires_at < p("p_now"))
        self.candidates = (
            sa.select(wf.c.story_id, wf.c.state)
            .where(wf.c.state.in_(RUNNABLE_STATES), runnable)
            .order_by(wf.c.updated_at, wf.c.story_id)
            .limit(p("p_limit"))
        )
        self.claim = (
            sa.update(wf)
            .where(wf.c.story_id == p("p_story_id"), wf.c.state.in_(RUNNABLE_STATES), runnable)
            .values(
                lease_owner=p("p_owner"),
                lease_token=p("p_token"),
                lease_expires_at=p("p_expires"),
            )
        )
        review = tr.alias("last_review")
        self.snapshot = (
            sa.select(wf, review.c.payload.label("last_review_payload"))
            .select_from(
                wf.outerjoin(
                    review,
                    sa.and_(
                        review.c.story_id == wf.c.story_id, review.c.seq == wf.c.last_review_seq
                    ),
                )
            )
            .where(wf.c.story_id == p("p_story_id"))
        )
        self.history = sa.select(tr).where(tr.c.story_id == p("p_story_id")).order_by(tr.c.seq)


def _summary(row: Any) -> WorkflowSummary:
    return WorkflowSummary(
        story_id=row.story_id,
        state=WorkflowState(row.state),
        iteration=row.iteration,
        seq=row.seq,
        title=row.title,
        last_quality_score=row.last_quality_score,
        total_cost=row.total_cost,
        decision=row.decision,
        error=row.error,
        started_at=row.started_at,
        updated_at=row.updated_at,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
    )


def _workflow_row(row: Any) -> WorkflowRow:
    review_payload = getattr(row, "last_review_payload", None)
    return WorkflowRow(
        summary=_summary(row),
        initial_title=row.initial_title,
        initial_script=row.initial_script,
        script=row.script,
        audience_context=json.loads(row.audience_context),
        original_idea=row.original_idea,
        local_review_summary=(
            json.loads(row.local_review_summary) if row.local_review_summary else None
        ),
        config=json.loads(row.config),
        initial_quality_score=row.initial_quality_score,
        total_reviews=row.total_reviews,
        total_polishes=row.total_polishes,
        failed_stage=Stage(row.failed_stage) if row.failed_stage else None,
        completed_at=row.completed_at,
        last_review=json.loads(review_payload) if review_payload else None,
        lease_token=row.lease_token,
    )


def _record(row: Any) -> TransitionRecord:
    return TransitionRecord(
        seq=row.seq,
        trigger=Trigger(row.trigger),
        source=WorkflowState(row.source),
        dest=WorkflowState(row.dest),
        iteration=row.iteration,
        created_at=row.created_at,
        payload=json.loads(row.payload),
        stage=Stage(row.stage) if row.stage else None,
        attempt=row.attempt,
        duration_seconds=row.duration_seconds,
        cost=row.cost,
        error=row.error,
    )


def _transition_values(
    story_id: str, seq: int, write: TransitionWrite, now: datetime
) -> dict[str, Any]:
    return {
        "story_id": story_id,
        "seq": seq,
        "trigger": write.trigger.value,
        "source": write.source.value,
        "dest": write.dest.value,
        "iteration": write.iteration,
        "stage": write.stage.value if write.stage else None,
        "attempt": write.attempt,
        "duration_seconds": write.duration_seconds,
        "cost": write.cost,
        "error": write.error,
        "created_at": now,
        "payload": write.payload_json,
    }


def _advance_params(
    story_id: str, expected_seq: int, write: TransitionWrite, lease: Lease, now: datetime
) -> dict[str, Any]:
    terminal = write.dest.is_terminal
    unheld = terminal or write.release_lease
    return {
        "p_story_id": story_id,
        "p_expected_seq": expected_seq,
        "p_held_token": lease.token,
        "p_state": write.dest.value,
        "p_seq": expected_seq + 1,
        "p_iteration": write.next_iteration,
        "p_now": now,
        "p_cost": write.cost or 0.0,
        "p_reviews": int(write.trigger is Trigger.REVIEWED),
        "p_polishes": int(write.trigger is Trigger.POLISHED),
        "p_title": write.title,
        "p_script": write.script,
        "p_review_seq": expected_seq + 1 if write.trigger is Trigger.REVIEWED else None,
        "p_score": write.quality_score,
        "p_decision": write.decision,
        "p_failed_stage": write.failed_stage.value if write.failed_stage else None,
        "p_error": write.error if write.dest is WorkflowState.FAILED else None,
        "p_completed_at": now if terminal else None,
        # A terminal state releases the lease: nothing runs until someone resumes or retries.
        "p_lease_owner": None if unheld else lease.owner,
        "p_lease_token": None if unheld else lease.token,
        "p_lease_expires_at": None if unheld else now + timedelta(seconds=lease.seconds),
    }


class WorkflowStateManager:
    """The SQL store of story workflows.

    Args:
        database_url_or_engine: A SQLAlchemy URL (``sqlite:///story_fsm.db``,
            ``postgresql://user@host/db``) or an ``Engine`` the caller owns.
        table_prefix: Prefix of the table names (default ``story_fsm_``).
        auto_migrate: Create or upgrade the schema on first use (default True).
        busy_timeout_seconds: SQLite only: how long a writer waits for the file's lock.
        sqlite_synchronous: SQLite only: ``FULL`` (default; a committed transition survives
            power loss) or ``NORMAL`` (survives a process crash; faster).

    Raises:
        InputValidationError: The URL cannot be parsed or names an unsupported database.
        SchemaVersionError: The database's schema is unknown or newer than this story_fsm.

    Example:
        >>> store = WorkflowStateManager("sqlite:///:memory:")
        >>> store.list_workflows()
        []
    """

    def __init__(
        self,
        database_url_or_engine: str | sa.Engine,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        auto_migrate: bool = True,
        busy_timeout_seconds: float = 30.0,
        sqlite_synchronous: str = "FULL",
    ) -> None:
        if isinstance(database_url_or_engine, sa.Engine):
            self._engine, self._owns_engine = database_url_or_engine, False
        else:
            self._engine = make_engine(
                database_url_or_engine,
                busy_timeout_seconds=busy_timeout_seconds,
                sqlite_synchronous=sqlite_synchronous,
            )
            self._owns_engine = True
        self.schema = build_schema(table_prefix)
        self._sql = _Statements(self.schema)
        with _translated():
            ensure_schema(self._engine, prefix=table_prefix, auto_migrate=auto_migrate)

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine in use."""
        return self._engine

    @property
    def dialect(self) -> str:
        """The database kind: ``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Release the connection pool (only when this store created the engine)."""
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> WorkflowStateManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writes -------------------------------------------------------------------------------

    def create(self, new: NewWorkflow, lease: Lease | None) -> WorkflowRow:
        """Insert a workflow in INITIAL with its ``submit`` record (seq 0).

        With a *lease* the caller holds it from the start; without, any worker may claim it.

        Raises:
            WorkflowExistsError: The story id is taken; nothing was written.
        """
        now = utcnow()
        values = {
            "story_id": new.story_id,
            "state": WorkflowState.INITIAL.value,
            "seq": 0,
            "iteration": 1,
            "title": new.title,
            "script": new.script,
            "initial_title": new.title,
            "initial_script": new.script,
            "audience_context": json.dumps(new.audience_context),
            "original_idea": new.original_idea,
            "local_review_summary": (
                json.dumps(new.local_review_summary)
                if new.local_review_summary is not None
                else None
            ),
            "config": json.dumps(new.config),
            "total_reviews": 0,
            "total_polishes": 0,
            "total_cost": 0.0,
            "started_at": now,
            "updated_at": now,
            "lease_owner": lease.owner if lease else None,
            "lease_token": lease.token if lease else None,
            "lease_expires_at": now + timedelta(seconds=lease.seconds) if lease else None,
        }
        submit = TransitionWrite(Trigger.SUBMIT, WorkflowState.INITIAL, WorkflowState.INITIAL, 1, 1)
        try:
            with _translated(new.story_id), self._engine.begin() as conn:
                conn.execute(self._sql.insert_workflow, values)
                conn.execute(
                    self._sql.insert_transition, _transition_values(new.story_id, 0, submit, now)
                )
        except StoreError as exc:
            if isinstance(exc.__cause__, sa_exc.IntegrityError):
                raise WorkflowExistsError(new.story_id) from exc.__cause__
            raise
        row = self.load_row(new.story_id)
        assert row is not None
        return row

    def append(
        self, story_id: str, expected_seq: int, write: TransitionWrite, lease: Lease
    ) -> None:
        """Persist one transition as row ``expected_seq + 1``, with the summary's update.

        Raises:
            ConcurrentAdvanceError: The story moved past *expected_seq*, or its lease is held
                by someone else now; nothing was written.
            WorkflowNotFoundError: The story has no workflow.
        """
        now = utcnow()
        params = _advance_params(story_id, expected_seq, write, lease, now)
        stmt = self._sql.takeover if write.takeover else self._sql.advance
        try:
            with _translated(story_id), self._engine.begin() as conn:
                if conn.execute(stmt, params).rowcount != 1:
                    raise _LostRace
                conn.execute(
                    self._sql.insert_transition,
                    _transition_values(story_id, expected_seq + 1, write, now),
                )
        except _LostRace:
            raise self._why_lost(story_id, expected_seq, lease) from None
        except StoreError as exc:
            if isinstance(exc.__cause__, sa_exc.IntegrityError):
                raise ConcurrentAdvanceError(story_id, "step already recorded") from exc
            raise

    def _why_lost(self, story_id: str, expected_seq: int, lease: Lease) -> Exception:
        row = self.load_row(story_id)
        if row is None:
            return WorkflowNotFoundError(story_id)
        if row.summary.seq != expected_seq:
            return ConcurrentAdvanceError(
                story_id, f"expected step {expected_seq}, the database is at {row.summary.seq}"
            )
        return ConcurrentAdvanceError(
            story_id,
            f"the lease is held by {row.summary.lease_owner or 'nobody'}, not {lease.owner}",
        )

    def heartbeat(self, story_id: str, lease: Lease) -> bool:
        """Extend *lease* on the story; False when it was taken over (stop writing then)."""
        params = {
            "p_story_id": story_id,
            "p_token": lease.token,
            "p_expires": utcnow() + timedelta(seconds=lease.seconds),
        }
        with _translated(story_id), self._engine.begin() as conn:
            return bool(conn.execute(self._sql.heartbeat, params).rowcount == 1)

    def release(self, story_id: str, lease: Lease) -> bool:
        """Give up *lease* so another worker can claim the story at once (False if not held)."""
        with _translated(story_id), self._engine.begin() as conn:
            params = {"p_story_id": story_id, "p_token": lease.token}
            return bool(conn.execute(self._sql.release, params).rowcount == 1)

    def claim_next(self, lease: Lease, *, scan: int = 8) -> WorkflowRow | None:
        """Take *lease* on the oldest runnable workflow whose lease is free or expired.

        On PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED``, so concurrent
        workers never wait on each other's picks; on SQLite the single writer serializes the
        claims. Either way the claiming UPDATE re-checks the lease, so a workflow is held by one
        worker at a time. Returns the claimed workflow's row, or None when nothing is runnable.
        """
        now = utcnow()
        query = self._sql.candidates
        if self.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        params = {
            "p_owner": lease.owner,
            "p_token": lease.token,
            "p_expires": now + timedelta(seconds=lease.seconds),
            "p_now": now,
        }
        with _translated(), self._engine.begin() as conn:
            for story_id, _state in conn.execute(query, {"p_now": now, "p_limit": scan}).all():
                if conn.execute(self._sql.claim, {**params, "p_story_id": story_id}).rowcount:
                    break
            else:
                return None
        return self.load_row(story_id)

    def has_unfinished(self) -> bool:
        """Return True while any workflow is submitted or mid-loop (held or not)."""
        wf = self.schema.workflows
        query = sa.select(wf.c.story_id).where(wf.c.state.in_(RUNNABLE_STATES)).limit(1)
        with _translated(), self._engine.connect() as conn:
            return conn.execute(query).first() is not None

    # -- reads --------------------------------------------------------------------------------

    def load_row(self, story_id: str) -> WorkflowRow | None:
        """Return the workflow's summary row and its last review: one query, any history."""
        with _translated(story_id), self._engine.connect() as conn:
            row = conn.execute(self._sql.snapshot, {"p_story_id": story_id}).first()
        return _workflow_row(row) if row is not None else None

    def history(self, story_id: str) -> list[TransitionRecord]:
        """Return every record of the story's workflow, in order (seq 0 first).

        Raises:
            WorkflowNotFoundError: The story has no workflow.
        """
        with _translated(story_id), self._engine.connect() as conn:
            rows = conn.execute(self._sql.history, {"p_story_id": story_id}).all()
        if not rows:
            raise WorkflowNotFoundError(story_id)
        return [_record(r) for r in rows]

    def load_state(self, story_id: str) -> WorkflowResult | None:
        """Return the workflow's result as stored (COMPLETE, FAILED or mid-run), or None."""
        row = self.load_row(story_id)
        if row is None:
            return None
        return build_result(row, self.history(story_id))

    def list_workflows(self, state: WorkflowState | str | None = None) -> list[WorkflowSummary]:
        """Return summaries of all workflows (optionally in one *state*), oldest first."""
        wf = self.schema.workflows
        query = sa.select(wf).order_by(wf.c.started_at, wf.c.story_id)
        if state is not None:
            try:
                wanted = WorkflowState(state)
            except ValueError:
                names = ", ".join(s.value for s in WorkflowState)
                raise InputValidationError(f"unknown state {state!r}; use one of {names}") from None
            query = query.where(wf.c.state == wanted.value)
        with _translated(), self._engine.connect() as conn:
            return [_summary(r) for r in conn.execute(query)]


class _LostRace(Exception):
    """The fenced UPDATE matched no row (internal signal, never escapes)."""
