"""structlog output for the command line: the only place story_fsm configures logging.

Logs go to stderr (stdout carries the command's data, e.g. ``--json``), rendered for people,
in colour only when stderr is a terminal. The library's loggers pick this configuration up
because it calls ``structlog.get_logger`` once ``structlog.is_configured()``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from story_fsm.cli._output import write_stderr

__all__ = ["SHOWN_BY_CLI", "configure_logging", "level_for", "one_line_exception"]

#: Library events the command line shows in its own words (the progress view shows retries,
#: the error line a failed workflow); at the default level they are not logged a second time.
SHOWN_BY_CLI = frozenset({"stage_retry", "workflow_failed"})


class _StderrLogger:
    """Writes each rendered event to the *current* ``sys.stderr``.

    Looked up per call, not captured once: a live progress display swaps ``sys.stderr`` for a
    proxy that prints above it, and test runners swap it for a buffer.
    """

    def msg(self, message: str) -> None:
        """Write one rendered event line (dropped when stderr refuses it)."""
        write_stderr(message + "\n")

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class _StderrHandler(logging.Handler):
    """Writes other libraries' log records (SQLAlchemy's, alembic's) to the current stderr.

    Without it, Python's last-resort handler prints their warnings raw, tracebacks and all
    (SQLAlchemy's "Exception closing connection" when a second Ctrl-C lands in a close).
    """

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record, rendered like story_fsm's own events."""
        try:
            write_stderr(self.format(record) + "\n")  # a stderr that refuses it: dropped
        except Exception:  # as logging.StreamHandler does: a record that will not format
            self.handleError(record)


_HANDLER_NAME = "story-fsm-cli"


def _route_stdlib(level: int, renderer: Any) -> None:
    """Render the warnings of libraries that log through ``logging`` as story_fsm's are.

    Their INFO and DEBUG lines (alembic's migration steps, SQLAlchemy's pool) stay out even
    with ``-vv``: the library's own events say what happened, in its terms.
    """
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _StderrHandler(level=max(level, logging.WARNING))
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)  # configured again (tests, a host calling main() twice)
    root.addHandler(handler)


def _factory(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


def _drop_shown(_logger: Any, _method: str, event_dict: Any) -> Any:
    if event_dict.get("event") in SHOWN_BY_CLI:
        raise structlog.DropEvent
    return event_dict


def one_line_exception(sio: TextIO, exc_info: Any) -> None:
    """Render a logged exception as one line: its type and message, no traceback.

    The default for the command line: an operator's stderr (often a journal) should say what
    failed, not print a traceback per heartbeat; ``--debug`` shows the tracebacks.
    """
    _kind, error, _tb = exc_info
    text = " ".join(str(error).split())  # a driver's message may run over several lines
    sio.write(f"\n  {type(error).__name__}: {text} (--debug shows the traceback)")


def _exception_formatter(level: int) -> Any:
    if level > logging.DEBUG:
        return one_line_exception
    # Never the frames' local variables: they hold connection parameters, passwords included.
    return structlog.dev.RichTracebackFormatter(
        show_locals=False, color_system="truecolor" if sys.stderr.isatty() else None
    )


def level_for(verbosity: int, *, debug: bool = False) -> int:
    """Return the log level: WARNING by default, INFO for ``-v``, DEBUG for ``-vv`` or --debug."""
    if debug or verbosity >= 2:
        return logging.DEBUG
    return logging.INFO if verbosity == 1 else logging.WARNING


def configure_logging(level: int) -> None:
    """Send structlog events at *level* and above to stderr, rendered for people.

    Below INFO (the default, WARNING) the events in :data:`SHOWN_BY_CLI` are dropped. Other
    libraries' warnings (through ``logging``) are rendered the same way.
    """
    dedupe = [_drop_shown] if level > logging.INFO else []
    renderer = structlog.dev.ConsoleRenderer(
        colors=sys.stderr.isatty(), exception_formatter=_exception_formatter(level)
    )
    structlog.configure(
        processors=[
            *dedupe,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_factory,
        cache_logger_on_first_use=False,
    )
    _route_stdlib(level, renderer)
