"""Worker: many processes on many machines finish stories through one PostgreSQL database.

Each worker runs ``concurrency`` threads; each thread claims one runnable workflow at a time
(``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL), holds its lease with a heartbeat while a
stage runs, and advances it. A crashed worker's leases expire and other workers take those
stories over; a worker whose lease was taken over is fenced off its next write. There is no
coordinator: the database is the only shared thing.
"""

from __future__ import annotations

import secrets
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import FrameType
from typing import Any

from story_fsm._log import get_logger
from story_fsm._records import Lease
from story_fsm.config import WorkflowConfig
from story_fsm.engine import StoryWorkflowOrchestrator, default_owner
from story_fsm.errors import (
    ConcurrentAdvanceError,
    DatabaseBusyError,
    InputValidationError,
    StageFailedError,
    StoreError,
    UnreadableRowError,
)
from story_fsm.events import ProgressCallback
from story_fsm.stages import StoryPolisher, StoryReviewer
from story_fsm.states import Stage
from story_fsm.store.sql import WorkflowStateManager
from story_fsm.validation import validate_name, validate_seconds

__all__ = ["MAX_CONCURRENCY", "Worker", "WorkerStats"]

#: The most threads one worker runs: each holds a stack and a database connection, and past
#: a few hundred a process gains nothing (run more worker processes instead).
MAX_CONCURRENCY = 1024


@dataclass
class WorkerStats:
    """What a worker did, returned by :meth:`Worker.run`.

    Attributes:
        claimed: Workflows it claimed.
        completed: Claimed workflows it took to COMPLETE.
        failed: Claimed workflows that went to FAILED.
        lost: Claims another process took over (fenced writes).
        released: Claims it handed back while draining.
        errors: Claims that ended in an unexpected error (logged as ``workflow_error``); each
            is left to expire, so the story is tried again after ``lease_seconds``.
        busy: Polls (a claim, or the check for unfinished work) that found the SQLite file
            locked past its busy timeout (logged as ``worker_database_busy``); each is tried
            again after ``poll_seconds``.
    """

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    released: int = 0
    errors: int = 0
    busy: int = 0

    def __post_init__(self) -> None:
        # Not a field: asdict(), copy and pickle see the counts only.
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, int]:
        """The counts (the lock is not state: a copy gets a lock of its own)."""
        # Read off the fields, so that a new counter is copied (and logged) too.
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __setstate__(self, state: dict[str, int]) -> None:
        """Restore the counts, with a new lock."""
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def to_dict(self) -> dict[str, int]:
        """Return the counts as a JSON-serializable dict."""
        return self.__getstate__()

    def add(self, name: str) -> None:
        """Count one more *name* (thread-safe)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)


class Worker:
    """Claims runnable workflows from the store and advances them, ``concurrency`` at a time.

    Runnable means: submitted (INITIAL), interrupted in REVIEWING/POLISHING with an expired
    (or no) lease, or FAILED and re-queued by an operator (``story-fsm retry``). Several
    workers, in one or many processes and machines, may share one PostgreSQL database.

    Args:
        reviewer: Implements :class:`~story_fsm.StoryReviewer` (shared by the threads).
        polisher: Implements :class:`~story_fsm.StoryPolisher` (shared by the threads).
        state_manager: The store to claim from.
        config: Overrides each workflow's stored config when given.
        concurrency: Workflows advanced at once (threads); stages are I/O-bound.
        lease_seconds: How long a claim lasts without a heartbeat or a write.
        worker_id: Name recorded as lease owner (default ``host:pid``).
        poll_seconds: Wait between claims when nothing is runnable.
        rate_limits: Optional per-stage caps in calls per minute, e.g. ``{"review": 60}``.
        progress_callback: Receives every workflow's progress events.

    Example::

        worker = Worker(reviewer, polisher, WorkflowStateManager(url), concurrency=8)
        worker.install_signal_handlers()  # SIGTERM/SIGINT drain, then run() returns
        worker.run()
    """

    def __init__(
        self,
        reviewer: StoryReviewer,
        polisher: StoryPolisher,
        state_manager: WorkflowStateManager,
        config: WorkflowConfig | None = None,
        *,
        concurrency: int = 4,
        lease_seconds: float = 30.0,
        worker_id: str | None = None,
        poll_seconds: float = 1.0,
        rate_limits: Mapping[Stage | str, int] | None = None,
        progress_callback: ProgressCallback | None = None,
    ) -> None:
        if (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_CONCURRENCY
        ):
            raise InputValidationError(
                f"concurrency must be an integer from 1 to {MAX_CONCURRENCY}, got {concurrency!r}"
            )
        if reviewer is None or polisher is None:
            raise InputValidationError("a worker needs a reviewer and a polisher (got None)")
        self.worker_id = validate_name("worker_id", worker_id) if worker_id else default_owner()
        self.concurrency = concurrency
        self.lease_seconds = validate_seconds("lease_seconds", lease_seconds)
        self.poll_seconds = validate_seconds("poll_seconds", poll_seconds)
        self.state_manager = state_manager
        self.stats = WorkerStats()
        self._orchestrator = StoryWorkflowOrchestrator(
            reviewer,
            polisher,
            state_manager,
            config,
            owner=self.worker_id,
            lease_seconds=lease_seconds,
            rate_limits=rate_limits,
        )
        self._progress = progress_callback
        self._stopping = threading.Event()
        self._fatal: BaseException | None = None
        self._fatal_lock = threading.Lock()
        self._log = get_logger(worker_id=self.worker_id)
        #: The handlers install_signal_handlers() replaced, put back when run() ends.
        self._replaced_handlers: dict[int, Any] = {}

    def stop(self) -> None:
        """Ask the worker to drain and return from :meth:`run`.

        Stages in flight finish and are recorded; no new stage starts; claims are released
        (except those of runs that ended in an unexpected error: they are left to expire).
        """
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called (or a fatal database error happened)."""
        return self._stopping.is_set()

    def install_signal_handlers(self) -> None:
        """Make SIGTERM and SIGINT drain the worker (call from the main thread).

        The handlers the two signals had are put back once :meth:`run` returns or raises, so
        that afterwards a Ctrl-C in the host program does what it did before, instead of
        asking a finished worker to stop.
        """

        def handler(signum: int, frame: FrameType | None) -> None:
            self._log.info("worker_draining", signal=signal.Signals(signum).name)
            self.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            before = signal.signal(signum, handler)
            self._replaced_handlers.setdefault(signum, before)

    def _restore_signal_handlers(self) -> None:
        """Put back the handlers :meth:`install_signal_handlers` replaced (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal.signal works in the main thread only; they stay until then
        replaced, self._replaced_handlers = self._replaced_handlers, {}
        for signum, before in replaced.items():
            if before is not None:  # None: a handler set outside Python, not ours to restore
                signal.signal(signum, before)

    def run(self, stop_when_idle: bool = False) -> WorkerStats:
        """Claim and advance workflows until stopped.

        With *stop_when_idle*, also return once no unfinished workflow is left in the database.

        Raises:
            StoreError: The database was lost; the message says what failed.
            Exception: Whatever else stopped a worker thread outside a story's run (every
                thread stops then; claims expire and other workers take them over).
            BaseException: What interrupted the calling thread (``KeyboardInterrupt`` when no
                signal handlers are installed), once the worker drained as on :meth:`stop`.
        """
        self._log.info("worker_started", concurrency=self.concurrency)
        ended = [threading.Event() for _ in range(self.concurrency)]
        for i, done in enumerate(ended):
            threading.Thread(
                target=self._loop, args=(stop_when_idle, done), name=f"story-fsm-worker-{i}"
            ).start()
        try:
            _wait(ended)
        except BaseException:
            # The caller's thread was interrupted (Ctrl-C with no handlers installed): left
            # running, the threads would go on claiming and paying for stages behind its back,
            # and keep the process from exiting. Drain them first (a second Ctrl-C ends the
            # wait; the threads still stop after the stage in flight).
            self._log.info("worker_draining", signal="interrupted")
            self.stop()
            _wait(ended)
            raise
        finally:
            self._restore_signal_handlers()
            self._log.info("worker_stopped", **self.stats.to_dict())
        if self._fatal is not None:
            raise self._fatal
        return self.stats

    def _loop(self, stop_when_idle: bool, done: threading.Event) -> None:
        try:
            self._claim_and_advance(stop_when_idle)
        finally:
            done.set()

    def _claim_and_advance(self, stop_when_idle: bool) -> None:
        try:
            while not self._stopping.is_set():
                lease = Lease(self.worker_id, secrets.token_hex(16), self.lease_seconds)
                try:
                    row = self.state_manager.claim_next(lease)
                    if row is None and stop_when_idle and not self.state_manager.has_unfinished():
                        return
                except UnreadableRowError as exc:  # claimed, and then unreadable
                    self.stats.add("claimed")
                    self._unrunnable(exc, self._log.bind(story_id=exc.story_id), lease)
                    continue
                except DatabaseBusyError as exc:
                    self._busy(exc)
                    continue
                if row is not None:
                    self.stats.add("claimed")
                    self._advance(row, lease)
                else:
                    self._stopping.wait(self.poll_seconds)
        except StoreError as exc:
            # A lost database stops the whole worker: its claims will expire and be taken over.
            self._log.error("worker_database_lost", error=str(exc))
            self._fail(exc)
        except BaseException as exc:
            # Anything else that escapes the loop (outside any one story's run) would end this
            # thread alone and leave a worker that claims nothing but exits 0: stop them all.
            self._log.error("worker_failed", error=f"{type(exc).__name__}: {exc}")
            self._fail(exc)

    def _busy(self, error: DatabaseBusyError) -> None:
        # Another process held the SQLite file's lock past the busy timeout while this thread
        # polled: the database is there, only taken for now, so poll again after a while
        # instead of stopping the worker. (A claim written whose read then found the file
        # busy is held until its lease expires, like any claim of a thread that went away.)
        self._log.warning(
            "worker_database_busy", error=str(error), retry_after_seconds=self.poll_seconds
        )
        self.stats.add("busy")
        self._stopping.wait(self.poll_seconds)

    def _fail(self, error: BaseException) -> None:
        """Stop every thread; :meth:`run` raises the first error (the others follow from it)."""
        with self._fatal_lock:
            if self._fatal is None:
                self._fatal = error
        self._stopping.set()

    def _advance(self, row: Any, lease: Lease) -> None:
        log = self._log.bind(story_id=row.summary.story_id)
        try:
            result = self._orchestrator.advance_claimed(
                row, lease, progress_callback=self._progress, should_stop=self._stopping.is_set
            )
        except StageFailedError:
            self.stats.add("failed")
        except ConcurrentAdvanceError as exc:
            self.stats.add("lost")
            log.warning("workflow_taken_over", error=str(exc))
        except UnreadableRowError as exc:
            self._unrunnable(exc, log, lease)
        except StoreError:
            raise
        except Exception as exc:  # a bug or bad data in one workflow must not stop the rest
            self._unrunnable(exc, log, lease)
        else:
            self.stats.add("released" if result is None else "completed")

    def _unrunnable(self, error: Exception, log: Any, lease: Lease) -> None:
        # A bug or bad data in one workflow (a row changed outside story_fsm among them) must
        # not stop the rest. The claim is kept until it expires, not released: released, the
        # same story would be claimed again at once and fail the same way, in a loop of paid
        # calls. Expiring, it is tried again once per lease period.
        log.exception("workflow_error", error=str(error), retry_after_seconds=lease.seconds)
        self.stats.add("errors")


def _wait(ended: list[threading.Event]) -> None:
    """Wait until every thread set its event.

    Timed waits keep the calling thread responsive to signals. Events rather than
    ``Thread.join``: on Python 3.11 and 3.12 a join cut by ``KeyboardInterrupt`` can leave
    ``is_alive()`` False for a thread that still runs.
    """
    for done in ended:
        while not done.wait(0.2):
            pass
