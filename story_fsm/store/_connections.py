"""The store's connections: the engine, SQLite's kept writer, and reconnecting after a loss.

Every transaction of :class:`~story_fsm.store.sql.WorkflowStateManager` is opened here: the
hot writes on the prepared fast path (on SQLite one kept connection, on PostgreSQL a pooled
one), the slower writes and the reads on pooled connections, each with its errors translated.
A connection the server dropped is noticed at its first statement; the pool is then renewed
and the work run again once the server answers (:func:`reconnecting`,
:meth:`Connections._settled`). The store's other parts are built on this class, so their
methods stay the manager's own and the hot path calls them with no layer in between.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Self, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import StaticPool
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from story_fsm._log import get_logger
from story_fsm.errors import StoreError, StoryFSMError
from story_fsm.store._prepared import LostConnection, RawTransaction, raw_transaction
from story_fsm.store._transactions import HeldWrite, translated, unreadable
from story_fsm.store.engine import make_engine, writer_lock
from story_fsm.validation import validate_seconds

__all__ = ["MAX_RECONNECT_SECONDS", "Connections", "reconnecting"]


#: The longest ``reconnect_seconds`` a store accepts: an hour.
MAX_RECONNECT_SECONDS = 3600.0


_Method = TypeVar("_Method", bound=Callable[..., Any])
_T = TypeVar("_T")
#: What a write found in the database after its reply was lost: its result, or None.
_Landed = Callable[[], _T | None]


def reconnecting(method: _Method) -> _Method:
    """Run a store method again when the database connection turned out to be dead.

    Connections are not pinged before each use (a round trip per transition); a connection the
    server dropped (a restart, an idle timeout) fails at its first statement instead. Then the
    pool is replaced and the method runs again, until the server answers, for up to the
    store's ``reconnect_seconds`` (:meth:`Connections._after_lost`). It wraps the reads and
    the writes that are idempotent (a heartbeat, a release): run twice, they change nothing
    more. One quirk: a release whose reply was lost reports False the second time, the lease
    being free already.
    The writes that must not run twice (a transition, a creation, a claim) are settled by
    :meth:`Connections._settled` instead, which first reads whether they landed.
    """

    @functools.wraps(method)
    def wrapper(self: Connections, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StoreError as exc:
            if not self._unreachable(exc):
                raise
            return self._after_lost(exc, lambda: method(self, *args, **kwargs))

    return cast(_Method, wrapper)


class Connections:
    """The connections of one store, and what a lost one means (the manager's base class).

    Nothing is connected here: the pool connects on first use.
    """

    def __init__(
        self,
        database_url_or_engine: str | sa.Engine,
        *,
        busy_timeout_seconds: float | None,
        sqlite_synchronous: str,
        reconnect_seconds: float,
    ) -> None:
        self._reconnect_seconds = validate_seconds(
            "reconnect_seconds", reconnect_seconds, MAX_RECONNECT_SECONDS
        )
        if isinstance(database_url_or_engine, sa.Engine):
            self._engine, self._owns_engine = database_url_or_engine, False
        else:
            self._engine = make_engine(
                database_url_or_engine,
                busy_timeout_seconds=busy_timeout_seconds,
                sqlite_synchronous=sqlite_synchronous,
            )
            self._owns_engine = True
        self._write_lock = writer_lock(self._engine)
        # SQLite has one writer per file and this process queues its writes on one lock, so
        # the hot writes keep one connection instead of a pool checkout per transition.
        self._keeps_writer = self._engine.dialect.name == "sqlite"
        # Each read is one SELECT: on PostgreSQL, run it in autocommit, so it costs one round
        # trip instead of three (BEGIN, SELECT, and the ROLLBACK when the connection returns).
        self._reads = (
            self._engine
            if self._keeps_writer
            else self._engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        # A database in memory is one connection that every thread shares (StaticPool): a read
        # handing it back to the pool rolls it back, which would cut another thread's write in
        # half. There, reads queue on the writer lock too.
        self._read_lock: AbstractContextManager[Any] = (
            self._write_lock if isinstance(self._engine.pool, StaticPool) else nullcontext()
        )
        self._writer: Any = None
        self._writer_cursor: Any = None
        self._writer_driver: Any = None
        self._closed = False
        dbapi = self._engine.dialect.dbapi
        self._driver_errors: tuple[type[BaseException], ...] = (
            sa_exc.SQLAlchemyError,
            LostConnection,
            # Text a driver cannot encode; validation refuses it first, so this is a last net.
            UnicodeError,
            *((dbapi.Error,) if dbapi is not None else ()),
        )

    def _raw(
        self, story_id: str | None, *, autocommit: bool = False
    ) -> AbstractContextManager[RawTransaction]:
        """One write transaction on the prepared fast path, errors translated.

        The caller holds ``self._write_lock`` around it, in its own ``with`` statement
        (:class:`HeldWrite` says why).
        """
        if self._keeps_writer:
            raw: AbstractContextManager[RawTransaction] = HeldWrite(
                self._kept_writer, self._driver_errors, story_id
            )
        else:
            raw = self._pooled_write(story_id, autocommit)
        return self._after_close(raw, writer=True) if self._closed else raw

    def _begin(self) -> AbstractContextManager[sa.Connection]:
        """A pooled transaction (the slower writes: heartbeat, release, SQLite's claim)."""
        begun = self._engine.begin()
        return self._after_close(begun, writer=False) if self._closed else begun

    @contextmanager
    def _after_close(self, used: AbstractContextManager[_T], *, writer: bool) -> Iterator[_T]:
        """Use a closed store once, on connections given back right after.

        ``close()`` is for the caller that is done; a run it left in flight (a Ctrl-C inside a
        ``with`` block) still commits the answer it paid for, and nothing stays open after.
        """
        if isinstance(self._engine.pool, StaticPool):  # closing dropped the database itself
            raise StoreError("the store is closed, and its database in memory with it")
        try:
            with used as value:
                yield value
        finally:
            if writer:  # under the write lock, which the caller holds
                self._drop_writer()
            if self._owns_engine:
                self._engine.dispose()

    @contextmanager
    def _pooled_write(self, story_id: str | None, autocommit: bool) -> Iterator[RawTransaction]:
        with (
            translated(story_id, self._driver_errors),
            raw_transaction(self._engine, autocommit=autocommit) as tx,
        ):
            yield tx

    def _read(self, story_id: str | None = None) -> AbstractContextManager[sa.Connection]:
        """A connection for one read, errors translated (queued behind writes in memory)."""
        read = self._read_on(story_id)
        return self._after_close(read, writer=False) if self._closed else read

    @contextmanager
    def _read_on(self, story_id: str | None) -> Iterator[sa.Connection]:
        with self._read_lock, translated(story_id), self._reads.connect() as conn:
            try:
                yield conn
            except StoryFSMError:
                raise
            except (ValueError, TypeError, KeyError) as exc:
                # A row story_fsm would never write (a date that is no date, a payload that
                # is no JSON): the driver's or the mapping's error, said as the store's.
                raise unreadable(exc, story_id) from exc

    def _writer_connection(self) -> Any:
        """SQLite: the connection the hot writes keep (opened on first use; under the lock)."""
        if self._writer is None:
            self._writer = self._engine.raw_connection()
        return self._writer

    def _kept_writer(self) -> tuple[Any, Any]:
        """SQLite: the kept connection and its cursor, which every write reuses (under the lock)."""
        writer = self._writer_connection()
        if self._writer_cursor is None:
            self._writer_cursor = writer.cursor()
            # The driver's own connection, for each transaction's in_transaction, commit
            # and rollback: the pool's proxy forwards those through a __getattr__ that runs
            # only once a normal lookup failed (an AttributeError built and dropped per use).
            self._writer_driver = writer.dbapi_connection
        return self._writer_driver, self._writer_cursor

    def _renew_pool(self, error: StoreError) -> None:
        """Drop the pool after a connection turned out dead: its siblings may be dead too."""
        get_logger().warning("database_reconnect", error=str(error))
        self._engine.dispose(close=False)

    def _unreachable(self, error: BaseException) -> bool:
        """True when *error* says the server did not answer, rather than refuse the work.

        A connection the server had closed, or a connection that could not be made while
        PostgreSQL restarts or fails over ("the database system is shutting down",
        "connection refused"): the driver's OperationalError with no SQLSTATE (a client-side
        failure) or one of classes 08 (connection exception) and 57P (operator intervention).
        A server that answers with an error (a constraint, a timeout, a deadlock) is not this.
        """
        if not isinstance(error, StoreError):
            return False
        cause = error.__cause__
        if isinstance(cause, LostConnection):
            return True
        if isinstance(cause, sa_exc.DBAPIError):
            if cause.connection_invalidated:
                return True
            cause = cause.orig  # Core wraps the driver's error; the fast path meets it bare
        dbapi = self._engine.dialect.dbapi
        if self._keeps_writer or dbapi is None or not isinstance(cause, dbapi.OperationalError):
            return False  # SQLite's OperationalError is the file's (locked, read-only ...)
        state = getattr(cause, "sqlstate", None)
        return state is None or str(state).startswith(("08", "57P"))

    def _after_lost(self, error: StoreError, again: Callable[[], _T]) -> _T:
        """Run *again* once the server answers, after *error* found it not answering.

        At once first (a connection the server closed while it stayed up); then, while the
        server does not answer (a restart, a failover), with growing waits up to 2 s, for up
        to ``reconnect_seconds`` in all, after which the last error is raised.
        """
        self._renew_pool(error)
        retrying = Retrying(
            stop=stop_after_delay(self._reconnect_seconds),
            wait=wait_exponential(multiplier=0.05, max=2.0),
            retry=retry_if_exception(self._unreachable),
            before_sleep=lambda state: self._engine.dispose(close=False),
            reraise=True,
        )
        return retrying(again)

    def _settled(
        self,
        story_id: str | None,
        write: Callable[[], _T],
        landed: _Landed[_T],
        again: Callable[[], _T] | None = None,
    ) -> _T:
        """Run the write transaction *write*; if its connection dies, look before a second run.

        A connection that dies while a COMMIT is on its way leaves the outcome unknown: the
        server may have committed before the reply was lost. Running the write again would then
        be refused (by the fence or the unique key) although the row is this caller's own. So
        *landed*, a read, is asked first: it returns the write's result when the write is in
        the database, or None; only then is the write run again, once (as *again* when given:
        the write with what must be reckoned afresh after the wait, like a lease's end).
        """
        try:
            return write()
        except StoreError as exc:
            if not self._unreachable(exc):
                raise
            lost = exc

        def look_then_write() -> _T:
            # Asked again on each try: a write cut again on its way may have landed too.
            found = landed()
            if found is not None:
                get_logger().info("write_landed", story_id=story_id)
                return found
            return (again or write)()

        return self._after_lost(lost, look_then_write)

    def _is_integrity(self, error: BaseException | None) -> bool:
        dbapi = self._engine.dialect.dbapi
        kinds = (sa_exc.IntegrityError, dbapi.IntegrityError) if dbapi else (sa_exc.IntegrityError,)
        return isinstance(error, kinds)

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine in use."""
        return self._engine

    @property
    def dialect(self) -> str:
        """The database kind: ``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Return the store's connections; dispose of the pool if this store made the engine.

        A run still in flight on the store may go on writing: each later use opens a
        connection and gives it back at once, so nothing is left open (an in-memory database
        is gone with the close, and its later use raises :class:`StoreError`).
        """
        with self._write_lock:
            self._closed = True
            self._drop_writer()
        if self._owns_engine:
            self._engine.dispose()

    def _drop_writer(self) -> None:
        """SQLite: give the kept writer connection back (under the write lock)."""
        if self._writer_cursor is not None:
            self._writer_cursor.close()
            self._writer_cursor = None
            self._writer_driver = None
        if self._writer is not None:
            self._writer.close()  # back to the pool
            self._writer = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
