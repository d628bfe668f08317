"""The hot path's writes, compiled once per dialect and run on the driver's own cursor.

A transition is two small statements and a COMMIT; SQLAlchemy's per-call execution machinery
(building an execution context, re-checking the compiled cache, wrapping the cursor) costs
more than the database's own work for rows this small. The statements are still built with
SQLAlchemy Core and compiled by it, with its type processors (a test compares the rows with
those written through Core); only their execution skips the per-call layers.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ClauseElement

__all__ = [
    "LostConnection",
    "PreparedWrite",
    "RawTransaction",
    "raw_transaction",
]


class LostConnection(Exception):
    """The driver's connection was found closed by the server (the driver error is the cause)."""


class PreparedWrite:
    """One statement, compiled for one dialect, with its bind processors resolved."""

    def __init__(
        self, stmt: ClauseElement, dialect: sa.Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        compiled: Any = stmt.compile(dialect=dialect, column_keys=list(column_keys or []) or None)
        self.sql = str(compiled)
        #: Parameters whose values the statement carries itself (constants, a LIMIT); not
        #: the ones every call must give (their value is SQLAlchemy's REQUIRED marker).
        self._fixed = {
            key: value
            for key, value in compiled.params.items()
            if value is not None and not compiled.binds[key].required
        }
        processors: dict[str, Callable[[Any], Any]] = {}
        for key, bind in compiled.binds.items():
            # The dialect's own implementation, as Core's execution resolves it: for a
            # TypeDecorator, ``bind_processor`` alone stops at the decorator and hands the
            # driver a value in the generic type (a datetime, which sqlite3 would format with
            # its default adapter: another string than Core's, and deprecated since 3.12).
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[key] = processor
        self._processors = processors
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        # Positional drivers (sqlite3): itemgetter picks the values in C, then only the
        # positions that have a processor are converted. Named drivers (psycopg) get a dict.
        self._pick: Callable[[dict[str, Any]], Any] | None = None
        self._convert: tuple[tuple[int, Callable[[Any], Any]], ...] = ()
        if order is not None:
            self._pick = (
                operator.itemgetter(*order)
                if len(order) > 1
                else lambda values: tuple(values[key] for key in order)
            )
            self._convert = tuple(
                (position, processors[key])
                for position, key in enumerate(order)
                if key in processors
            )

    def params(self, values: dict[str, Any]) -> Any:
        """Return *values* as the driver takes them: processed, positional or named."""
        if self._fixed:
            values = {**self._fixed, **values}
        pick = self._pick
        if pick is not None:
            if not self._convert:
                return pick(values)
            picked = list(pick(values))
            for position, processor in self._convert:
                picked[position] = processor(picked[position])
            return picked
        if self._processors:
            values = dict(values)
            for key, processor in self._processors.items():
                if key in values:
                    values[key] = processor(values[key])
        return values


class RawTransaction:
    """A DBAPI cursor inside one transaction (committed by :func:`raw_transaction`)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, write: PreparedWrite, values: dict[str, Any]) -> int:
        """Run *write* with *values*; return the driver's rowcount."""
        self._cursor.execute(write.sql, write.params(values))
        return int(self._cursor.rowcount)

    def first(self, write: PreparedWrite, values: dict[str, Any]) -> Any:
        """Run *write* (a statement returning rows) with *values*; return its first row."""
        self._cursor.execute(write.sql, write.params(values))
        return self._cursor.fetchone()


@contextmanager
def raw_transaction(engine: sa.Engine, *, autocommit: bool = False) -> Iterator[RawTransaction]:
    """Check a pooled connection out, yield a transaction on it, commit (or roll back).

    With *autocommit* (for a body of exactly one statement) the statement commits on its own:
    on PostgreSQL that saves the BEGIN and COMMIT round trips.

    Driver errors propagate as the driver raised them; the store translates them.
    """
    connection = engine.raw_connection()
    try:
        if autocommit:
            connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
        cursor = connection.cursor()
        try:
            yield RawTransaction(cursor)
            connection.commit()
        except BaseException as exc:
            driver = connection.dbapi_connection
            dbapi = engine.dialect.dbapi
            dead = (
                dbapi is not None
                and isinstance(exc, dbapi.Error)
                and engine.dialect.is_disconnect(exc, driver, cursor)
            )
            if dead:
                connection.invalidate(exc)  # never back into the pool
                raise LostConnection(str(exc)) from exc
            connection.rollback()
            raise
        finally:
            driver = connection.dbapi_connection
            if driver is not None and not getattr(driver, "closed", False):
                cursor.close()
                if autocommit:
                    driver.autocommit = False  # as the pool expects it back
    finally:
        connection.close()  # back to the pool
