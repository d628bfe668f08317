"""The store's leases: claiming a runnable workflow, keeping its lease alive, giving it up.

A lease says which process runs a story, until when; a lapsed one may be claimed by another.
Its end is reckoned when it is written (again, for a write run again after a lost
connection), never from when the call began. The store's clock, :func:`utcnow`, lives here
too: it stamps the rows as well as the leases. Kept apart from the transitions, which
:mod:`story_fsm.store.sql` writes under the lease.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from story_fsm._records import Lease, WorkflowRow
from story_fsm.store._connections import reconnecting
from story_fsm.store._reads import Reads
from story_fsm.store._statements import PreparedStatements
from story_fsm.store._transactions import translated

__all__ = ["Leases", "lease_end", "utcnow"]


def utcnow() -> datetime:
    """Return the current time, aware, in UTC."""
    return datetime.now(UTC)


class Leases(Reads):
    """The claims and leases of :class:`~story_fsm.store.sql.WorkflowStateManager` (a base)."""

    # Set by WorkflowStateManager.__init__.
    _fast: PreparedStatements

    def claim_next(self, lease: Lease, *, scan: int = 8) -> WorkflowRow | None:
        """Take *lease* on the oldest runnable workflow whose lease is free or expired.

        On PostgreSQL the candidates are locked with ``FOR UPDATE SKIP LOCKED``, so concurrent
        workers never wait on each other's picks; on SQLite the single writer serializes the
        claims. Either way the claiming UPDATE re-checks the lease, so a workflow is held by one
        worker at a time. Returns the claimed workflow's row, or None when nothing is runnable.

        The lease counts from the moment the claim is written, not from the call: a claim
        that waited (for the file's lock, for a server that restarts) holds it in full.
        """
        claim_one = self._fast.claim_one
        # PostgreSQL: one statement, committed on its own; a lost reply is settled by the
        # claim's token. (SQLite has no server to drop the connection under a claim.)
        if claim_one is not None:

            def claim() -> list[str]:
                with self._write_lock, self._raw(None, autocommit=True) as tx:
                    # Reckoned at each try: one run again once the server is back must not
                    # write a lease that lapsed while it waited.
                    picked = tx.first(claim_one, _claim_params(lease))
                return [] if picked is None else [picked[0]]

            def landed() -> list[str] | None:
                with self._read() as conn:
                    held = conn.execute(self._sql.held_by, {"p_token": lease.token}).first()
                return None if held is None else [held[0]]

            claimed = self._settled(None, claim, landed)
            return self._load_row(claimed[0]) if claimed else None
        query = self._sql.candidates
        with self._write_lock, translated(), self._begin() as conn:
            params = _claim_params(lease)
            found = conn.execute(query, {"p_now": params["p_now"], "p_limit": scan}).all()
            for story_id, _state in found:
                if conn.execute(self._sql.claim, {**params, "p_story_id": story_id}).rowcount:
                    break
            else:
                return None
            # The claim may have waited for another process's write (SQLite's busy handler):
            # its lease counts from now, the file's lock held.
            conn.execute(self._sql.heartbeat, _beat_params(story_id, lease))
        return self._load_row(story_id)

    @reconnecting
    def heartbeat(self, story_id: str, lease: Lease) -> bool:
        """Extend *lease* on the story; False when it was taken over (stop writing then)."""
        with self._write_lock, translated(story_id), self._begin() as conn:
            # The expiry is reckoned once the lock is held: a beat queued behind the run's own
            # write must not set it earlier than that write just did.
            params = _beat_params(story_id, lease)
            return bool(conn.execute(self._sql.heartbeat, params).rowcount == 1)

    @reconnecting
    def release(self, story_id: str, lease: Lease) -> bool:
        """Give up *lease* so another worker can claim the story at once (False if not held)."""
        with self._write_lock, translated(story_id), self._begin() as conn:
            params = {"p_story_id": story_id, "p_token": lease.token}
            return bool(conn.execute(self._sql.release, params).rowcount == 1)


def _claim_params(lease: Lease) -> dict[str, Any]:
    """A claim's values: *lease*, expiring ``lease.seconds`` from now (and now, to test)."""
    now = utcnow()
    return {
        "p_owner": lease.owner,
        "p_token": lease.token,
        "p_expires": now + timedelta(seconds=lease.seconds),
        "p_now": now,
    }


def lease_end(lease: Lease) -> datetime:
    """When *lease* ends if written now.

    Reckoned again for a write run again once a lost server answers: its first try's end
    may have passed while it waited (an outage longer than the lease), and a lease written
    expired would let another worker claim the story this run goes on with.
    """
    return utcnow() + timedelta(seconds=lease.seconds)


def _beat_params(story_id: str, lease: Lease) -> dict[str, Any]:
    """A heartbeat's values: *lease* on the story, expiring ``lease.seconds`` from now."""
    return {"p_story_id": story_id, "p_token": lease.token, "p_expires": lease_end(lease)}
