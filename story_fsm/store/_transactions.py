"""The plumbing under the store's transactions: errors translated, SQLite's writer held.

Driver and SQLAlchemy errors become story_fsm's, and SQLite's kept writer connection is used
under the file's lock. Kept apart from :mod:`story_fsm.store.sql`, so that the store reads as
what it stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import exc as sa_exc

from story_fsm.errors import DatabaseBusyError, StoreError, UnreadableRowError
from story_fsm.store._prepared import RawTransaction

__all__ = [
    "CORE_ERRORS",
    "HeldWrite",
    "driver_error",
    "is_busy",
    "translate",
    "translated",
    "unreadable",
]


def is_busy(error: BaseException) -> bool:
    text = str(getattr(error, "orig", error)).lower()
    return "database is locked" in text or "database is busy" in text


def driver_error(error: BaseException) -> BaseException:
    """The driver's own exception, whether SQLAlchemy wrapped it or not."""
    return getattr(error, "orig", None) or error


def translate(exc: BaseException, story_id: str | None) -> StoreError:
    """Return story_fsm's error for a driver or SQLAlchemy error (raise it ``from exc``)."""
    if is_busy(exc):
        return DatabaseBusyError(
            f"the SQLite database stayed locked past the busy timeout"
            f"{f' while writing story {story_id!r}' if story_id else ''}; another process "
            "holds it: retry, raise busy_timeout_seconds (or the URL's ?timeout=), or use "
            "PostgreSQL for many writers"
        )
    if "readonly database" in str(driver_error(exc)):
        # SQLite's own text ("attempt to write a readonly database") names neither cause.
        return StoreError(
            f"database error: {driver_error(exc)}: the SQLite database was opened read-only "
            "(mode=ro in its URL), or this user may not write its file or its folder"
        )
    return StoreError(f"database error: {driver_error(exc)}")


def unreadable(exc: BaseException, story_id: str | None) -> UnreadableRowError:
    """Return the error for a stored row that story_fsm cannot read back (raise it ``from exc``)."""
    return UnreadableRowError(
        f"a stored row{f' of story {story_id!r}' if story_id else ''} cannot be read "
        f"({type(exc).__name__}: {exc}); was the database changed outside story_fsm?",
        story_id,
    )


CORE_ERRORS: tuple[type[BaseException], ...] = (sa_exc.SQLAlchemyError,)


@contextmanager
def translated(
    story_id: str | None = None, errors: tuple[type[BaseException], ...] = CORE_ERRORS
) -> Iterator[None]:
    """Turn driver errors into story_fsm's, so no ``sqlalchemy.exc`` reaches callers.

    *errors* are the kinds to translate: SQLAlchemy's (the default, for Core), or the store's
    driver errors for the prepared fast path, which meets the driver's own.
    """
    try:
        yield
    except errors as exc:
        raise translate(exc, story_id) from exc


class HeldWrite:
    """One write transaction on SQLite's kept connection (the caller holds the writer lock).

    A class rather than stacked generator context managers: this runs once per transition.
    The connection's cursor is kept with it and reused (a sqlite3 cursor stays usable after
    a commit, a rollback or a failed statement), so a transaction creates no objects of the
    driver's. Driver errors leave it as story_fsm's (:func:`translate`); others pass
    through as raised.

    The writer lock is the caller's own ``with`` statement, not taken here: a Ctrl-C can
    land at the first line of a Python ``__exit__``, before any ``try`` in it, and skip the
    release, while a ``with lock:`` statement releases a ``threading.Lock`` in C. A
    transaction cut short that way (no commit, no rollback) is rolled back when the next one
    starts, so none of its statements can be committed with another's.
    """

    __slots__ = ("_connection", "_cursor", "_errors", "_open", "_story_id")

    def __init__(
        self,
        open_writer: Callable[[], tuple[Any, Any]],
        errors: tuple[type[BaseException], ...],
        story_id: str | None,
    ) -> None:
        self._story_id = story_id
        self._errors = errors
        self._open = open_writer
        self._connection: Any = None
        self._cursor: Any = None

    def __enter__(self) -> RawTransaction:
        try:
            self._connection, self._cursor = self._open()
            if self._connection.in_transaction:  # a transaction that was cut short
                self._connection.rollback()
        except self._errors as exc:
            raise translate(exc, self._story_id) from exc
        return RawTransaction(self._cursor)

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> None:
        try:
            if error is None:
                self._connection.commit()
            else:
                self._connection.rollback()
        except self._errors as exc:
            raise translate(exc, self._story_id) from exc
        if error is not None and isinstance(error, self._errors):
            raise translate(error, self._story_id) from error
