"""How the library logs: structlog, without ever configuring anything globally.

A host that configured structlog gets our events through its own processors. A host that did
not gets them routed into the standard ``logging`` module under the ``story_fsm`` logger (which
carries a NullHandler, as libraries should), so nothing reaches stdout unless the host asks.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["debug_enabled", "get_logger"]

LOGGER_NAME = "story_fsm"

logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())

_STDLIB_PROCESSORS: list[Any] = [
    # Cheap early exit: nothing below runs when the stdlib logger would drop the event anyway.
    structlog.stdlib.filter_by_level,
    structlog.processors.add_log_level,
    structlog.processors.format_exc_info,
    structlog.processors.KeyValueRenderer(key_order=["event"], sort_keys=True),
]


def get_logger(**context: Any) -> Any:
    """Return a structlog logger bound to *context* (story_id, iteration, stage, ...)."""
    if structlog.is_configured():
        return structlog.get_logger(LOGGER_NAME, **context)
    # Built directly, not through ``structlog.wrap_logger``: its lazy proxy would build a
    # bound logger again on every call, and a run takes a logger per story; with the
    # processors given here it has no configuration left to resolve.
    return structlog.stdlib.BoundLogger(
        logging.getLogger(LOGGER_NAME), _STDLIB_PROCESSORS, dict(context)
    )


def debug_enabled() -> bool:
    """Return False when a debug line would be dropped anyway (so it need not be built).

    A host that configured structlog decides with its own processors: then always True.
    """
    if structlog.is_configured():
        return True
    return logging.getLogger(LOGGER_NAME).isEnabledFor(logging.DEBUG)
