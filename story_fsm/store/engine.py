"""Creating a SQLAlchemy engine from a URL, with each backend's settings for durable writes."""

from __future__ import annotations

import re
import threading
import urllib.parse
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.pool import StaticPool

from story_fsm.errors import InputValidationError

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "DEFAULT_BUSY_TIMEOUT_SECONDS",
    "absent_sqlite_database",
    "empty_sqlite_file",
    "in_memory_sqlite",
    "make_engine",
    "missing_sqlite_file",
    "shown_url",
    "sqlite_path",
    "with_driver",
    "writer_lock",
]

_SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")

#: SQLite takes its busy timeout as a C int of milliseconds: about 24 days at most.
_MAX_BUSY_TIMEOUT_SECONDS = 2_000_000

#: How long a SQLite writer waits for the file's lock when neither ``busy_timeout_seconds``
#: nor the URL's ``?timeout=`` says.
DEFAULT_BUSY_TIMEOUT_SECONDS = 30.0

#: How long a new PostgreSQL connection may take, unless the URL sets ``connect_timeout``:
#: without a bound, a server that accepts the connection and never answers (a half-dead
#: host, a firewall that swallows packets) would hang every command and worker forever.
CONNECT_TIMEOUT_SECONDS = 10


def _sqlite_engine(url: sa.URL, busy_timeout_seconds: float | None, synchronous: str) -> sa.Engine:
    _check_sqlite_options(url)
    busy_timeout_seconds = _busy_timeout(url, busy_timeout_seconds)
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_seconds}}
    path = sqlite_path(url)
    if path is None:
        # One shared connection, or every pooled connection would see its own empty database.
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"]["check_same_thread"] = False
    else:
        if not _is_uri(url):
            # "~" as a shell would read it: SQLite itself opens the path as written, so a file
            # under a folder literally named "~" would not be the one every check looked at.
            url = url.set(database=str(path))
        if not path.resolve().parent.is_dir():
            raise InputValidationError(
                f"the folder of the SQLite file {str(path)!r} does not exist"
            )
    try:
        # The driver's options in the query (?timeout=, ?detect_types=) are converted by
        # SQLAlchemy (when the engine is made, or at the first connection in some versions):
        # a value of the wrong kind would fail as a bare ValueError.
        engine = sa.create_engine(url, **kwargs)
        engine.dialect.create_connect_args(engine.url)
    except (ValueError, TypeError) as exc:
        raise InputValidationError(
            f"the SQLite URL {shown_url(url)!r} has an option of the wrong kind: {exc}"
        ) from exc
    busy_ms = int(busy_timeout_seconds * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the one writer; the busy timeout makes a second writer
        # wait for the lock instead of failing at once; FULL makes a commit survive power loss.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _busy_timeout(url: sa.URL, given: float | None) -> float:
    """The busy timeout a SQLite engine uses: *given*, else the URL's ``?timeout=``, else 30 s.

    The URL's option is the one way to set it from the command line. Both are applied to
    every connection (the driver's ``timeout`` and ``PRAGMA busy_timeout``), so two values
    that disagree are refused rather than one silently winning.
    """
    raw = url.query.get("timeout")
    if raw is None:
        return DEFAULT_BUSY_TIMEOUT_SECONDS if given is None else given
    if not isinstance(raw, str):  # ?timeout=1&timeout=2, which SQLAlchemy cannot convert
        raise InputValidationError(
            f"the SQLite URL {shown_url(url)!r} gives timeout more than once: give it once"
        )
    text = raw
    try:
        from_url = float(text)
    except ValueError:
        from_url = float("nan")  # refused just below, with the URL in the message
    if not 0 <= from_url <= _MAX_BUSY_TIMEOUT_SECONDS:
        raise InputValidationError(
            f"the SQLite URL {shown_url(url)!r} has timeout={text!r}: it must be a number of "
            f"seconds from 0 to {_MAX_BUSY_TIMEOUT_SECONDS:,}"
        )
    if given is not None and given != from_url:
        raise InputValidationError(
            f"busy_timeout_seconds={given!r} and the SQLite URL's timeout={text!r} disagree: "
            "give the busy timeout in one place"
        )
    return from_url


def shown_url(url: str | sa.URL) -> str:
    """*url* as an error message may show it: with any password masked (``***``).

    Also for a URL that does not parse, whose password would otherwise be printed whole.

    >>> shown_url("postgresql://app:s3cret@db:99999/x")
    'postgresql://app:***@db:99999/x'
    """
    if isinstance(url, sa.URL):
        url = url.render_as_string(hide_password=False)  # masked below, the query's too
    # The userinfo of ``scheme://user:password@host`` (the password runs to the last "@"),
    # and a ``password=`` in the query, which libpq reads too.
    return _QUERY_PASSWORD.sub(r"\1***", _PASSWORD.sub(r"\1***@", url))


_PASSWORD = re.compile(r"^([^:/?#]+://[^/?#@:]*:)[^/?#]*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def _sqlite_url(url: str) -> sa.URL | None:
    """*url* parsed, when it names a SQLite database; None for another one or a bad URL."""
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return None  # the store reports a bad URL with its own message
    return parsed if parsed.get_backend_name() == "sqlite" else None


def _named_sqlite_file(url: str) -> Path | None:
    """The path of the file a SQLite *url* names; None for another database or a bad URL."""
    parsed = _sqlite_url(url)
    return None if parsed is None else sqlite_path(parsed)


def in_memory_sqlite(url: str) -> bool:
    """True when *url* names an in-memory SQLite database (``sqlite://``, ``mode=memory``)."""
    parsed = _sqlite_url(url)
    return parsed is not None and sqlite_path(parsed) is None


def missing_sqlite_file(url: str) -> Path | None:
    """Return the path of the SQLite file *url* names when that file does not exist yet."""
    path = _named_sqlite_file(url)
    return None if path is None or path.exists() else path


def empty_sqlite_file(url: str) -> Path | None:
    """Return the path of the SQLite file *url* names when that file exists and is empty.

    SQLite takes a 0-byte file for an empty database, and opening it as story_fsm does writes
    the database's first page (WAL mode is recorded there): a command that only reads, or
    finds nothing to do, must look at the size instead of opening it.
    """
    path = _named_sqlite_file(url)
    try:
        empty = path is not None and path.is_file() and path.stat().st_size == 0
    except OSError:  # unreadable: the store reports why when it opens the file
        return None
    return path if empty else None


def absent_sqlite_database(url: str) -> Path | None:
    """The path of the SQLite file *url* names when it holds no database: missing or empty.

    What a command that only reads finds there is nothing, and it must not open the file to
    see it (opening creates a missing file, and writes to an empty one).
    """
    return missing_sqlite_file(url) or empty_sqlite_file(url)


#: The options of a ``sqlite://`` URL's query that the driver (``sqlite3.connect``) takes;
#: with ``uri=true`` any other goes to SQLite in its URI filename (``mode=ro``, ``cache``, ...).
_DRIVER_OPTIONS = frozenset(
    ("uri", "timeout", "isolation_level", "detect_types", "check_same_thread", "cached_statements")
)


def _is_uri(url: sa.URL) -> bool:
    value = url.query.get("uri", "false")
    # A key given twice (?uri=true&uri=false) comes as a tuple; the driver reads the last one.
    try:
        return bool(sa.util.asbool(value if isinstance(value, str) else value[-1]))
    except ValueError:
        raise InputValidationError(
            f"the SQLite URL {shown_url(url)!r} has uri={value!r}: use uri=true or uri=false"
        ) from None


def _check_sqlite_options(url: sa.URL) -> None:
    # Without uri=true, SQLAlchemy drops the options SQLite reads from a URI filename (with a
    # warning at most): 'sqlite:///x.db?mode=ro' would open the file for writing.
    ignored = sorted(set(url.query) - _DRIVER_OPTIONS)
    if ignored and not _is_uri(url):
        raise InputValidationError(
            f"the SQLite URL {shown_url(url)!r} has option(s) {', '.join(ignored)} that only a "
            "URI filename takes: add uri=true (e.g. sqlite:///file:story_fsm.db?mode=ro&uri=true)"
        )


def sqlite_path(url: sa.URL) -> Path | None:
    """Return the file a ``sqlite://`` URL opens, or None for an in-memory database.

    ``~`` is expanded in a plain path, as a shell would; a URI filename (``uri=true``:
    ``sqlite:///file:PATH?mode=ro&uri=true``) is read the way SQLite reads it: its
    ``file:`` scheme, an empty or ``localhost`` authority, percent-escapes and ``mode=memory``.
    """
    database = url.database or ""
    if _is_uri(url) and database.startswith("file:"):
        if url.query.get("mode") == "memory":
            return None
        rest = database[len("file:") :]
        if rest.startswith("//"):
            authority, _, rest = rest[2:].partition("/")
            if authority not in ("", "localhost"):
                raise InputValidationError(
                    f"the SQLite URI {database!r} names a host ({authority!r}): "
                    "only a local file (file:PATH or file:///PATH) can be opened"
                )
            rest = "/" + rest
        database = urllib.parse.unquote(rest.partition("#")[0])
        return None if database in ("", ":memory:") else Path(database)
    if database in ("", ":memory:"):
        return None
    try:
        return Path(database).expanduser()
    except RuntimeError:  # "~name/..." for a user this machine does not know, or no $HOME
        raise InputValidationError(
            f"the SQLite path {database!r} starts with a home folder that cannot be found; "
            "give the folder itself"
        ) from None


def with_driver(url: sa.URL) -> sa.URL:
    """Return *url* naming the driver story_fsm uses: a plain ``postgresql://`` means psycopg 3.

    (SQLAlchemy 2.0 would pick psycopg2, which story_fsm does not depend on.)
    """
    if url.drivername == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    return url


def make_engine(
    url: str | sa.URL,
    *,
    busy_timeout_seconds: float | None = None,
    sqlite_synchronous: str = "FULL",
) -> sa.Engine:
    """Return an engine for *url*: a SQLite file (WAL, busy timeout, foreign keys) or PostgreSQL.

    SQLite's busy timeout is *busy_timeout_seconds*, else the URL's ``?timeout=`` (seconds),
    else :data:`DEFAULT_BUSY_TIMEOUT_SECONDS`.

    A plain ``postgresql://`` URL uses psycopg 3; a connection attempt gives up after
    :data:`CONNECT_TIMEOUT_SECONDS` unless the URL sets ``connect_timeout``.

    Raises:
        InputValidationError: The URL cannot be parsed, names an unsupported database, gives
            an option more than once, or gives PostgreSQL an option libpq refuses; or
            ``busy_timeout_seconds`` (or a SQLite URL's ``timeout``) or
            ``sqlite_synchronous`` is out of range; or
            ``busy_timeout_seconds`` and the URL's ``timeout`` disagree.
    """
    if not isinstance(url, str | sa.URL):
        raise InputValidationError(
            f"a database URL must be a string or a sqlalchemy URL, got {type(url).__name__}"
        )
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError) as exc:
        raise InputValidationError(f"not a database URL: {shown_url(url)!r}") from exc
    synchronous = sqlite_synchronous.upper() if isinstance(sqlite_synchronous, str) else None
    if synchronous not in _SYNCHRONOUS_LEVELS:
        raise InputValidationError(
            f"sqlite_synchronous must be one of {_SYNCHRONOUS_LEVELS} (got {sqlite_synchronous!r})"
        )
    if busy_timeout_seconds is not None and (
        isinstance(busy_timeout_seconds, bool)
        or not isinstance(busy_timeout_seconds, int | float)
        # A plain comparison: false for NaN; the upper bound keeps SQLite's milliseconds an int.
        or not 0 <= busy_timeout_seconds <= _MAX_BUSY_TIMEOUT_SECONDS
    ):
        raise InputValidationError(
            "busy_timeout_seconds must be a number of seconds from 0 to "
            f"{_MAX_BUSY_TIMEOUT_SECONDS:,} (got {busy_timeout_seconds!r})"
        )
    # A key given twice comes as a tuple, which each driver reads its own way (the last one,
    # a ValueError at the first connection, a tuple's text sent to the server): refused.
    twice = sorted(key for key, value in parsed.query.items() if not isinstance(value, str))
    if twice:
        raise InputValidationError(
            f"the database URL {shown_url(url)!r} gives {', '.join(twice)} more than once: "
            "give each option once"
        )
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed, busy_timeout_seconds, synchronous)
        if backend == "postgresql":
            return _postgres_engine(with_driver(parsed), url)
    except (sa.exc.ArgumentError, ImportError) as exc:  # a driver not installed (+aiosqlite)
        raise InputValidationError(f"cannot use database URL {shown_url(url)!r}: {exc}") from exc
    raise InputValidationError(
        f"unsupported database {backend!r} in {shown_url(url)!r}; "
        "use sqlite:///FILE or postgresql://..."
    )


def _postgres_engine(url: sa.URL, given: str | sa.URL) -> sa.Engine:
    _check_postgres_options(url, given)
    # No ping before each checkout: it would cost a round trip per transition. A connection
    # the server dropped fails at its first statement instead, and the store then renews
    # the pool and runs that transaction again (_connections.reconnecting).
    connect_args = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return sa.create_engine(url, connect_args=connect_args)


def _check_postgres_options(url: sa.URL, given: str | sa.URL) -> None:
    """Refuse a PostgreSQL URL whose options libpq would refuse, before any connection.

    A misspelt option (``?sslmod=...``), a port past 65535 or a ``connect_timeout`` that is not
    a number is the URL's fault, not the server's: it gets the usage error (exit 2 in the CLI),
    not the database error that a script may retry. libpq parses the options itself here
    (``conninfo_to_dict``), so the check accepts exactly the options the installed libpq knows.
    An option's *value* that libpq only checks when it connects (``sslmode=bogus``) still
    fails there, as a database error.
    """
    if url.port is not None and not 1 <= url.port <= 65535:
        raise InputValidationError(
            f"cannot use database URL {shown_url(given)!r}: port {url.port} is not from 1 to 65535"
        )
    # The options as the psycopg dialect hands them to libpq: the URL's parts and its query.
    options: dict[str, Any] = dict(url.translate_connect_args(username="user", database="dbname"))
    options.update({key: value for key, value in url.query.items() if isinstance(value, str)})
    # Imported here: psycopg costs about a tenth of a second to import, which a SQLite user
    # (and every CLI command on SQLite) need not pay.
    import psycopg
    from psycopg import conninfo

    try:
        conninfo.conninfo_to_dict(conninfo.make_conninfo("", **options))
    except psycopg.ProgrammingError as exc:
        raise InputValidationError(f"cannot use database URL {shown_url(given)!r}: {exc}") from exc
    timeout = options.get("connect_timeout")
    if timeout is not None:
        try:
            float(timeout)
        except ValueError:
            raise InputValidationError(
                f"cannot use database URL {shown_url(given)!r}: connect_timeout must be a "
                f"number of seconds (got {timeout!r})"
            ) from None


_sqlite_locks: dict[str, threading.Lock] = {}
_sqlite_locks_guard = threading.Lock()


def writer_lock(engine: sa.Engine) -> AbstractContextManager[Any]:
    """Return the lock this process takes around each write transaction on *engine*.

    SQLite has one writer per file; threads of one process that collide on its lock wait in
    SQLite's busy handler, which sleeps in coarse steps (up to 100 ms). Queuing them on one
    in-process lock per file instead hands the file over as soon as it is free. Other
    processes still meet SQLite's own lock and busy timeout. PostgreSQL needs no such lock.
    """
    if engine.dialect.name != "sqlite":
        return nullcontext()
    path = sqlite_path(engine.url)
    key = ":memory:" if path is None else str(path.resolve())
    with _sqlite_locks_guard:
        return _sqlite_locks.setdefault(key, threading.Lock())
