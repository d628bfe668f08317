"""The store's reads: a workflow's row, its history, its result, and the list of workflows.

Each read runs on a connection of its own (:meth:`Connections._read`: in autocommit on
PostgreSQL, and behind the writes only on a database in memory, whose one connection they
share), and runs again after a lost connection. Kept apart from the writes, which
:mod:`story_fsm.store.sql` keeps.
"""

from __future__ import annotations

import sqlalchemy as sa

from story_fsm._records import WorkflowRow
from story_fsm.errors import InputValidationError, WorkflowNotFoundError
from story_fsm.models import TransitionRecord, WorkflowResult, WorkflowSummary, build_result
from story_fsm.states import WorkflowState
from story_fsm.store._connections import Connections, reconnecting
from story_fsm.store._rows import record_from_row, summary_from_row, workflow_from_row
from story_fsm.store._statements import RUNNABLE_STATES, Statements
from story_fsm.store.schema import Schema
from story_fsm.validation import validate_story_id

__all__ = ["Reads", "wanted_state"]


class Reads(Connections):
    """The reads of :class:`~story_fsm.store.sql.WorkflowStateManager` (one of its bases)."""

    # Set by WorkflowStateManager.__init__.
    schema: Schema
    _sql: Statements

    @reconnecting
    def has_unfinished(self) -> bool:
        """Return True while any workflow is submitted or mid-loop (held or not)."""
        wf = self.schema.workflows
        query = sa.select(wf.c.story_id).where(wf.c.state.in_(RUNNABLE_STATES)).limit(1)
        with self._read() as conn:
            return conn.execute(query).first() is not None

    def load_row(self, story_id: str) -> WorkflowRow | None:
        """Return the workflow's summary row and its last review: one query, any history.

        Raises:
            InputValidationError: *story_id* is no id a workflow can have.
        """
        return self._load_row(validate_story_id(story_id))

    @reconnecting
    def _load_row(self, story_id: str) -> WorkflowRow | None:
        # Unchecked: also for an id read from the database itself (a claim), which a host
        # may have written by other rules; refusing it there would stop the worker.
        with self._read(story_id) as conn:
            row = conn.execute(self._sql.snapshot, {"p_story_id": story_id}).first()
            return workflow_from_row(row) if row is not None else None

    @reconnecting
    def history(self, story_id: str, *, after: int | None = None) -> list[TransitionRecord]:
        """Return every record of the story's workflow, in order (seq 0 first).

        Args:
            story_id: The story.
            after: Only the records past this seq (an empty list when there are none yet),
                to follow a workflow as it goes on.

        Raises:
            WorkflowNotFoundError: The story has no workflow.
            InputValidationError: *story_id* is no id a workflow can have, or *after* is no
                integer of 0 or more.
        """
        validate_story_id(story_id)
        if after is not None:
            after = _count("after", after, 0)
        with self._read(story_id) as conn:
            if after is None:
                rows = conn.execute(self._sql.history, {"p_story_id": story_id}).all()
            else:
                params = {"p_story_id": story_id, "p_after": after}
                rows = conn.execute(self._sql.history_after, params).all()
                if not rows and conn.execute(self._sql.exists, params).first() is not None:
                    return []
            if not rows:
                raise WorkflowNotFoundError(story_id)
            return [record_from_row(r) for r in rows]

    def load_state(self, story_id: str) -> WorkflowResult | None:
        """Return the workflow's result as stored (COMPLETE, FAILED or mid-run), or None.

        Read while a run goes on, it is the workflow as of one committed step. None too for
        a workflow deleted between the two reads.
        """
        row = self.load_row(story_id)
        if row is None:
            return None
        # Two reads: a run may commit a step between them, and its history row would then
        # run ahead of the summary (an iteration the counts do not know yet). The summary,
        # read first, says which step the result is of; later rows are left out.
        seq = row.summary.seq
        try:
            records = self.history(story_id)
        except WorkflowNotFoundError:
            return None  # deleted (delete_workflow, prune_workflows) after the first read
        return build_result(row, [r for r in records if r.seq <= seq])

    @reconnecting
    def list_workflows(
        self,
        state: WorkflowState | str | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        newest_first: bool = False,
    ) -> list[WorkflowSummary]:
        """Return summaries of the workflows (optionally in one *state*), oldest first.

        Args:
            state: Only workflows in this state.
            limit: At most this many (>= 1; default: all of them).
            offset: Skip this many first (>= 0), for paging with *limit*.
            newest_first: Order by start time, latest first (``limit=20, newest_first=True``:
                the 20 latest). Ties are ordered by story id, so pages do not overlap.

        Raises:
            InputValidationError: An unknown *state*, or a *limit* or *offset* that is no
                integer in range; nothing was read.
        """
        wanted = wanted_state(state)
        limit = None if limit is None else _count("limit", limit, 1)
        offset = _count("offset", offset, 0)
        wf = self.schema.workflows
        order = (wf.c.started_at, wf.c.story_id)
        query = sa.select(wf).order_by(*(c.desc() for c in order) if newest_first else order)
        if wanted is not None:
            query = query.where(wf.c.state == wanted.value)
        if limit is not None or offset:
            query = query.limit(limit).offset(offset)
        with self._read() as conn:
            return [summary_from_row(r) for r in conn.execute(query)]


#: The largest LIMIT or OFFSET both databases take (a signed 64-bit integer).
_MAX_COUNT = 2**63 - 1


def wanted_state(state: WorkflowState | str | None) -> WorkflowState | None:
    """The state a read or a prune asks for, as the enum (None: any state).

    Raises:
        InputValidationError: *state* is no state's value.
    """
    if state is None:
        return None
    try:
        return WorkflowState(state)
    except ValueError:
        names = ", ".join(s.value for s in WorkflowState)
        raise InputValidationError(f"unknown state {state!r}; use one of {names}") from None


def _count(name: str, value: object, least: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and least <= value <= _MAX_COUNT:
        return value
    raise InputValidationError(
        f"{name} must be an integer from {least} to {_MAX_COUNT} (2**63 - 1), got {value!r}"
    )
