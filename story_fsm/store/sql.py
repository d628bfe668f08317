"""WorkflowStateManager: the SQL store behind every workflow (SQLite file or PostgreSQL).

A transition is one small UPDATE of the story's summary row, fenced on the expected ``seq`` and
the lease token, and one INSERT of the history row, in one transaction, with no SELECT before
the write. The database decides races: the fenced UPDATE matches no row for a writer that lost,
and the ``(story_id, seq)`` primary key refuses a duplicate step.

This module keeps those writes (a creation, a transition) and the manager's construction. Its
other methods come from its bases, one concern each: the connections, and what a lost one
means (:mod:`~story_fsm.store._connections`), the reads (:mod:`~story_fsm.store._reads`),
claims and leases (:mod:`~story_fsm.store._leases`), and deletions
(:mod:`~story_fsm.store._cleanup`).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from story_fsm._records import Lease, NewWorkflow, TransitionWrite, WorkflowRow
from story_fsm.errors import (
    ConcurrentAdvanceError,
    StoreError,
    WorkflowExistsError,
    WorkflowNotFoundError,
)
from story_fsm.models import TransitionRecord
from story_fsm.states import WorkflowState
from story_fsm.store._cleanup import Cleanup
from story_fsm.store._leases import Leases, lease_end, utcnow
from story_fsm.store._prepared import RawTransaction
from story_fsm.store._rows import (
    SUBMIT_WRITE,
    advance_params,
    creation_values,
    fold_advance,
    planned_row,
    record_from_write,
    transition_values,
)
from story_fsm.store._statements import STEP_PREFIX, PreparedStatements, Statements
from story_fsm.store._transactions import translated
from story_fsm.store.migrate import ensure_schema
from story_fsm.store.schema import DEFAULT_TABLE_PREFIX, build_schema, check_prefix_fits

__all__ = ["WorkflowStateManager", "utcnow"]


class WorkflowStateManager(Leases, Cleanup):
    """The SQL store of story workflows.

    Args:
        database_url_or_engine: A SQLAlchemy URL (``sqlite:///story_fsm.db``,
            ``postgresql://user@host/db``) or an ``Engine`` the caller owns.
        table_prefix: Prefix of the table names (default ``story_fsm_``).
        auto_migrate: Create or upgrade the schema on first use (default True).
        busy_timeout_seconds: SQLite only: how long a writer waits for the file's lock
            (default: the URL's ``?timeout=``, else 30 seconds).
        sqlite_synchronous: SQLite only: ``FULL`` (default; a committed transition survives
            power loss) or ``NORMAL`` (survives a process crash; faster).
        reconnect_seconds: After a connection turned out dead, how long the store keeps
            trying to reach the server again (a restart, a failover) before it raises
            :class:`StoreError` (default 30).

    Raises:
        InputValidationError: The URL cannot be parsed or names an unsupported database, or
            an option is out of range (a table prefix, the busy timeout, the synchronous
            level, the reconnect window), or the busy timeout is given both here and in the
            URL with two values; nothing was connected to.
        SchemaVersionError: The database's schema is unknown or newer than this story_fsm.

    Example:
        >>> with WorkflowStateManager("sqlite:///:memory:") as store:
        ...     store.list_workflows()
        []
    """

    def __init__(
        self,
        database_url_or_engine: str | sa.Engine,
        *,
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        auto_migrate: bool = True,
        busy_timeout_seconds: float | None = None,
        sqlite_synchronous: str = "FULL",
        reconnect_seconds: float = 30.0,
    ) -> None:
        self.schema = build_schema(table_prefix)  # a bad prefix is refused before connecting
        super().__init__(
            database_url_or_engine,
            busy_timeout_seconds=busy_timeout_seconds,
            sqlite_synchronous=sqlite_synchronous,
            reconnect_seconds=reconnect_seconds,
        )
        check_prefix_fits(table_prefix, self._engine.dialect.name)  # before connecting
        self._sql = Statements(self.schema)
        self._fast = PreparedStatements(self._sql, self.schema, self._engine.dialect)
        try:
            with translated():
                ensure_schema(self._engine, prefix=table_prefix, auto_migrate=auto_migrate)
        except BaseException:
            # A refused schema (or a lost server) must not leave the pool's connections open:
            # the caller never gets a store to close.
            if self._owns_engine:
                self._engine.dispose()
            raise

    # -- writes -------------------------------------------------------------------------------

    def create(self, new: NewWorkflow, lease: Lease | None) -> WorkflowRow:
        """Insert a workflow in INITIAL with its ``submit`` record (seq 0); return its row.

        With a *lease* the caller holds it from the start; without, any worker may claim it.

        Raises:
            WorkflowExistsError: The story id is taken; nothing was written.
        """
        return self.create_with_record(new, lease)[0]

    def create_with_record(
        self, new: NewWorkflow, lease: Lease | None, first: TransitionWrite | None = None
    ) -> tuple[WorkflowRow, list[TransitionRecord]]:
        """Like :meth:`create`, and also return the records written.

        With *first* (the run's first edge, e.g. ``start``), that transition is written in the
        same transaction as row 1: a new run commits once before its first stage, not twice.
        The returned row is then the row after it.
        """
        now = utcnow()
        writes = [SUBMIT_WRITE] if first is None else [SUBMIT_WRITE, first]
        # What is written, known before writing it (no SELECT on the hot path): with a first
        # edge, the row after it, which is also the row inserted (no UPDATE).
        row = planned_row(new, lease, now)
        if first is not None:
            assert lease is not None, "a run that writes its first edge holds the lease"
            # Only state, seq and iteration go in changed: refuse an edge that changes more.
            assert first.source is WorkflowState.INITIAL and not first.dest.is_terminal
            assert first.stage is None and first.cost is None and first.title is None
            assert first.script is None and first.quality_score is None
            params = advance_params(new.story_id, 0, first, lease, now)
            row = fold_advance(row, params, first.payload)
        values, inputs = creation_values(new, lease, now, row.summary if first else None)

        def insert() -> bool:
            with self._write_lock, self._raw(new.story_id) as tx:
                tx.execute(self._fast.insert_workflow, values)
                tx.execute(self._fast.insert_inputs, inputs)
                for seq, write in enumerate(writes):
                    tx.execute(
                        self._fast.insert_transition,
                        transition_values(new.story_id, seq, write, now),
                    )
            return True

        def insert_again() -> bool:
            if lease is not None:
                values["lease_expires_at"] = lease_end(lease)
            return insert()

        try:
            self._settled(
                new.story_id,
                insert,
                lambda: self._row_written_at(new.story_id, 0, now),
                insert_again,
            )
        except StoreError as exc:
            # A refused key means the story exists, unless the refusal came from elsewhere
            # (a constraint or trigger of the host's): look before saying which.
            if self._is_integrity(exc.__cause__) and self.load_row(new.story_id) is not None:
                raise WorkflowExistsError(new.story_id) from exc.__cause__
            raise
        expires = values["lease_expires_at"]
        if expires != row.summary.lease_expires_at:  # reckoned again by a write run again
            row = replace(row, summary=replace(row.summary, lease_expires_at=expires))
        return row, [record_from_write(seq, write, now) for seq, write in enumerate(writes)]

    def _advance(
        self, tx: RawTransaction, params: dict[str, Any], values: dict[str, Any], takeover: bool
    ) -> None:
        """The summary's fenced UPDATE and the history row's INSERT, inside *tx*."""
        fast = self._fast
        step = fast.step_takeover if takeover else fast.step
        if step is not None:  # one statement: the row is inserted only if the UPDATE matched
            if tx.execute(step, {**params, **prefixed(values)}) != 1:
                raise _LostRace
            return
        if tx.execute(fast.takeover if takeover else fast.advance, params) != 1:
            raise _LostRace
        tx.execute(fast.insert_transition, values)

    def append(
        self,
        story_id: str,
        expected_seq: int,
        write: TransitionWrite,
        lease: Lease,
        current: WorkflowRow | None = None,
    ) -> tuple[WorkflowRow, TransitionRecord] | None:
        """Persist one transition as row ``expected_seq + 1``, with the summary's update.

        With *current* (the row as the caller holds it), return the row after this write and
        the record written, both derived in memory (no read on the hot path).

        Raises:
            ConcurrentAdvanceError: The story moved past *expected_seq*, or its lease is held
                by someone else now; nothing was written.
            WorkflowNotFoundError: The story has no workflow.
        """
        now = utcnow()
        params = advance_params(story_id, expected_seq, write, lease, now)
        values = transition_values(story_id, expected_seq + 1, write, now)
        # On PostgreSQL the transition is one statement, so it commits on its own.
        single = self._fast.step is not None

        def advance() -> bool:
            with self._write_lock, self._raw(story_id, autocommit=single) as tx:
                self._advance(tx, params, values, write.takeover)
            return True

        def advance_again() -> bool:
            if params["p_lease_expires_at"] is not None:  # None: the write frees the lease
                params["p_lease_expires_at"] = lease_end(lease)
            return advance()

        try:
            self._settled(
                story_id,
                advance,
                lambda: self._row_written_at(story_id, expected_seq + 1, now),
                advance_again,
            )
        except _LostRace:
            raise self._why_lost(story_id, expected_seq, lease) from None
        except StoreError as exc:
            # A refused key means another writer recorded this step, unless the refusal came
            # from elsewhere (a NOT NULL, a host's constraint or trigger): look before saying
            # which, so that such a refusal keeps the database's own message.
            if self._is_integrity(exc.__cause__):
                row = self.load_row(story_id)
                if row is None:
                    raise WorkflowNotFoundError(story_id) from exc
                if row.summary.seq != expected_seq:
                    raise ConcurrentAdvanceError(
                        story_id,
                        f"expected step {expected_seq}, the database is at {row.summary.seq}",
                    ) from exc
            raise
        if current is None:
            return None
        record = record_from_write(expected_seq + 1, write, now)
        return fold_advance(current, params, write.payload), record

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

    def _row_written_at(self, story_id: str, seq: int, now: datetime) -> bool | None:
        """True when history row *seq* of the story was written at *now*, else None.

        How a write whose reply was lost recognizes its own row: by its time, to the
        microsecond. The history row rather than the summary, because by now another process
        may have moved the story on (a worker claiming a submission or a re-queued story), but
        a written row never changes.
        """
        key = {"p_story_id": story_id, "p_seq": seq}
        with self._read(story_id) as conn:
            written = conn.execute(self._sql.written_at, key).scalar()
        return True if written == now else None


def prefixed(values: dict[str, Any]) -> dict[str, Any]:
    """Name the history row's values as the one-statement transition binds them."""
    return {STEP_PREFIX + key: value for key, value in values.items()}


class _LostRace(Exception):
    """The fenced UPDATE matched no row (internal signal, never escapes)."""
