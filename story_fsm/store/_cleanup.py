"""The store's deletions: one workflow by id, and the finished ones older than a time.

Both delete a workflow whole (its summary row, its inputs, its history) and only as long as
the condition that chose it still holds when the rows go, so a run or a worker that claims
the story meanwhile keeps it. Kept apart from the writes a run makes, in
:mod:`story_fsm.store.sql`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from story_fsm.errors import InputValidationError, WorkflowLeasedError, WorkflowNotFoundError
from story_fsm.states import WorkflowState
from story_fsm.store._connections import Connections, reconnecting
from story_fsm.store._leases import utcnow
from story_fsm.store._reads import wanted_state
from story_fsm.store._statements import lease_lapsed
from story_fsm.store._transactions import translated
from story_fsm.store.schema import Schema
from story_fsm.validation import validate_story_id

__all__ = ["Cleanup"]


class Cleanup(Connections):
    """The deletions of :class:`~story_fsm.store.sql.WorkflowStateManager` (one of its bases)."""

    # Set by WorkflowStateManager.__init__.
    schema: Schema

    def delete_workflow(self, story_id: str) -> None:
        """Delete the workflow of *story_id*: its summary row, its inputs and its history.

        Any state may be deleted (an interrupted story too), but not one a live process is
        running: its lease must be free or expired, checked by the statements that delete
        (on PostgreSQL with the row locked), so a run or a worker that claims the story
        meanwhile keeps it.
        Not retried on a dropped connection: after a lost reply, call it again (a deletion
        that had landed then reports :class:`WorkflowNotFoundError`).

        Raises:
            InputValidationError: *story_id* is no usable id; nothing was read.
            WorkflowNotFoundError: No workflow for *story_id*.
            WorkflowLeasedError: A live process holds the workflow; nothing was deleted.
        """
        story_id = validate_story_id(story_id)
        wf = self.schema.workflows
        holder = sa.select(wf.c.lease_owner, wf.c.lease_expires_at).where(wf.c.story_id == story_id)
        while True:
            now = utcnow()
            with self._write_lock, translated(story_id), self._begin() as conn:
                # Locked (PostgreSQL) until the deletion commits, so no claim slips in.
                held = conn.execute(holder.with_for_update()).first()
                if held is None:
                    raise WorkflowNotFoundError(story_id)
                if _delete_rows(conn, self.schema, [story_id], lease_lapsed(wf, now)):
                    return
            # Held (the claims' own test of a lapsed lease said no): say by whom, unless the
            # lease was given up since the read (then try again).
            if held.lease_expires_at is not None and held.lease_expires_at >= now:
                raise WorkflowLeasedError(story_id, held.lease_owner, held.lease_expires_at)

    def prune_workflows(
        self,
        finished_before: datetime,
        *,
        state: WorkflowState | str | None = None,
        dry_run: bool = False,
    ) -> int:
        """Delete the finished workflows (COMPLETE or FAILED) last written before a time.

        A workflow's last write is its ``updated_at``: for a finished one, when it finished.
        Unfinished workflows are never pruned (delete one by id with :meth:`delete_workflow`).
        The deletion goes in batches of a few hundred stories, each its own transaction, so
        running stories are never kept waiting long; a prune cut short leaves whole
        workflows, deleted or not. A batch whose connection dropped is run again once the
        server answers (within ``reconnect_seconds``).

        Args:
            finished_before: An aware datetime; workflows that finished earlier go.
            state: Only COMPLETE or only FAILED ones (default: both).
            dry_run: Count what would go, delete nothing.

        Returns:
            How many workflows were deleted (with *dry_run*: would be).

        Raises:
            InputValidationError: A naive datetime (its ``utcoffset()`` None) or one with no
                UTC time, or a *state* that is not a finished one; nothing was read.
        """
        finished_before = _aware_in_utc(finished_before)
        wanted = wanted_state(state)
        if wanted is not None and not wanted.is_terminal:
            raise InputValidationError(
                f"only finished workflows are pruned (complete or failed), not {wanted.value!r}"
            )
        states = [wanted] if wanted is not None else [s for s in WorkflowState if s.is_terminal]
        wf = self.schema.workflows
        finished = sa.and_(
            wf.c.state.in_([s.value for s in states]), wf.c.updated_at < finished_before
        )
        if dry_run:
            return self._count_where(finished)
        deleted = 0
        while True:
            found, pruned = self._prune_batch(finished)
            deleted += pruned
            if not found:
                return deleted

    @reconnecting
    def _count_where(self, where: Any) -> int:
        """Count the workflows *where* selects."""
        wf = self.schema.workflows
        with self._read() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(wf).where(where)).scalar_one()
            )

    @reconnecting
    def _prune_batch(self, finished: Any) -> tuple[int, int]:
        """Delete one batch of the workflows *finished* selects.

        Returns how many it found, and how many of those still matched and went (a requeue
        may take one away in between).
        """
        wf = self.schema.workflows
        # Locked in one order (PostgreSQL locks the rows as the sorted scan returns them), so
        # two prunes of the same rows wait for each other instead of deadlocking.
        batch = (
            sa.select(wf.c.story_id)
            .where(finished)
            .order_by(wf.c.story_id)
            .limit(_PRUNE_BATCH)
            .with_for_update()
        )
        with self._write_lock, translated(), self._begin() as conn:
            ids = list(conn.execute(batch).scalars())
            return len(ids), _delete_rows(conn, self.schema, ids, finished) if ids else 0


#: Workflows deleted per transaction by :meth:`WorkflowStateManager.prune_workflows`.
_PRUNE_BATCH = 500


def _delete_rows(conn: sa.Connection, schema: Schema, story_ids: list[str], where: Any) -> int:
    """Delete those workflows of *story_ids* that *where* still selects, with their rows.

    Every statement checks *where* again. PostgreSQL: the caller locked the rows
    (``FOR UPDATE``), so it holds throughout. SQLite: the first DELETE takes the file's
    write lock, and nothing changes under the statements after it; the SELECT that
    found *story_ids* took no lock, so a claim or a requeue may have come in between.
    Returns how many workflows went.
    """
    wf, tr, inputs = schema.workflows, schema.transitions, schema.inputs
    doomed = sa.select(wf.c.story_id).where(wf.c.story_id.in_(story_ids), where)
    # The children first: ON DELETE CASCADE would do it, but an engine the host made
    # may run SQLite without foreign keys.
    conn.execute(sa.delete(tr).where(tr.c.story_id.in_(doomed)))
    conn.execute(sa.delete(inputs).where(inputs.c.story_id.in_(doomed)))
    gone = conn.execute(sa.delete(wf).where(wf.c.story_id.in_(story_ids), where))
    return int(gone.rowcount)


def _aware_in_utc(moment: object) -> datetime:
    # Aware as Python says: a tzinfo whose utcoffset() is None leaves a datetime naive.
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise InputValidationError(
            f"finished_before must be a timezone-aware datetime, got {moment!r}"
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # datetime.max west of UTC: no such time in UTC
        raise InputValidationError(
            f"finished_before is out of range once in UTC: {moment!r}"
        ) from None
