"""A tap on the store's SQLite writer connection: what the engine asks the driver to do.

The hot writes of a SQLite store run on one kept connection (``WorkflowStateManager`` opens
it on first use). :func:`tap_writer` puts a stand-in there that hands each statement (its SQL,
its parameters and how long the driver took) and each COMMIT (its duration) to callbacks:
the ``story_fsm_sql`` variant records them to replay, ``bench/profile_loop.py`` sums them.
Install it before the store's first write: the writer's cursor is made from it then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["tap_writer"]

OnStatement = Callable[[str, Any, float], None]
OnCommit = Callable[[float], None]


class _TappedCursor:
    def __init__(self, cursor: Any, on_statement: OnStatement) -> None:
        self._cursor, self._on_statement = cursor, on_statement

    def execute(self, sql: str, params: Any = ()) -> Any:
        started = time.perf_counter()
        try:
            return self._cursor.execute(sql, params)
        finally:
            self._on_statement(sql, params, time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _TappedConnection:
    def __init__(self, connection: Any, on_statement: OnStatement, on_commit: OnCommit) -> None:
        self._connection = connection
        self._on_statement, self._on_commit = on_statement, on_commit

    @property
    def dbapi_connection(self) -> _TappedConnection:
        """The store's way to the driver's connection: the tap itself, so COMMITs are timed."""
        return self

    def cursor(self) -> _TappedCursor:
        return _TappedCursor(self._connection.cursor(), self._on_statement)

    def commit(self) -> None:
        started = time.perf_counter()
        try:
            self._connection.commit()
        finally:
            self._on_commit(time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def tap_writer(store: Any, on_statement: OnStatement, on_commit: OnCommit) -> None:
    """Route *store*'s SQLite writes through callbacks (statements, then each COMMIT)."""
    store._writer = _TappedConnection(store._writer_connection(), on_statement, on_commit)
