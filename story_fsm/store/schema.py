"""story_fsm's tables, as data: one ``MetaData`` per table-name prefix.

Three tables: ``<prefix>workflows`` (one summary row per story, updated in place by every
transition, so kept narrow), ``<prefix>workflow_inputs`` (what the story was submitted with,
written once) and ``<prefix>transitions`` (the append-only history, keyed by
``(story_id, seq)`` so that a second writer of the same step fails on the database's own
constraint). Alembic migrations own the
DDL; :func:`build_schema` is what they, ``alembic check`` and a host application's own alembic
environment compare against.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from story_fsm.errors import InputValidationError
from story_fsm.states import Stage, Trigger, WorkflowState

__all__ = [
    "DEFAULT_TABLE_PREFIX",
    "MAX_PREFIX_BYTES",
    "NAMING_CONVENTION",
    "Schema",
    "UTCDateTime",
    "build_schema",
    "check_prefix_fits",
]

DEFAULT_TABLE_PREFIX = "story_fsm_"

#: Alembic needs every constraint named (and SQLite's batch mode needs it to rebuild tables).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _in_utc(value: datetime) -> datetime:
    """*value* in UTC; a naive datetime is a bug (whose clock?), so it is refused."""
    if value.tzinfo is UTC:  # what story_fsm's own clock gives: nothing to convert
        return value
    if value.tzinfo is None:
        raise ValueError("story_fsm stores timezone-aware datetimes only")
    return value.astimezone(UTC)


#: The last two datetimes :func:`_sqlite_text` formatted, with their text: one for the whole
#: process, since each bind of each compiled statement has a processor of its own. A
#: transition binds the same two datetimes (its time, and its lease's expiry) up to four
#: times across its two statements, and ``isoformat`` of an aware datetime is the dearest
#: call of the bind. A datetime is immutable, so one object always gives the same text. One
#: tuple, replaced whole: threads that format at once read a consistent pair.
_last_texts: tuple[object, str, object, str] = (None, "", None, "")


def _sqlite_text(value: datetime | None) -> str | None:
    """SQLite's stored text of an aware datetime, as SQLAlchemy's chain would write it."""
    global _last_texts  # noqa: PLW0603 - the memo described above
    if value is None:
        return None
    last, text, before, before_text = _last_texts
    if value is last:
        return text
    if value is before:
        return before_text
    # "YYYY-MM-DD HH:MM:SS.ffffff+00:00": the first 26 characters are SQLite's text.
    formatted = _in_utc(value).isoformat(" ", "microseconds")[:26]
    _last_texts = (value, formatted, last, text)
    return formatted


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    PostgreSQL keeps the zone (``timestamptz``); SQLite has no zone type, so the value is stored
    as naive UTC and the zone is put back on read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC (naive on SQLite); naive input is a bug, so it is refused."""
        if value is None:
            return None
        value = _in_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], object] | None:
        """On SQLite, one function from datetime to stored text; elsewhere SQLAlchemy's chain.

        Every transition binds three to five datetimes. The decorator's chain (this class's
        :meth:`process_bind_param`, then the SQLite type's ``%04d-%02d-...`` formatting) costs
        several Python calls each; ``isoformat`` gives the same text in one C call (a test
        compares the two for aware, naive-refused and far-from-now values).
        """
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_text

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _values_check(column: str, enum: type[Stage | Trigger | WorkflowState]) -> str:
    allowed = ", ".join(f"'{member.value}'" for member in enum)
    return f"{column} IN ({allowed})"


@dataclass(frozen=True, slots=True)
class Schema:
    """The tables of one prefix.

    Attributes:
        prefix: The table-name prefix.
        metadata: The ``MetaData`` holding both tables (include it in a host's alembic).
        workflows: One row per story: state, counters, current title/script, lease.
        inputs: One row per story: what it was submitted with (written once).
        transitions: The append-only history, one row per transition or failed attempt.
        version_table: The alembic version table story_fsm keeps for this prefix.
    """

    prefix: str
    metadata: sa.MetaData
    workflows: sa.Table
    inputs: sa.Table
    transitions: sa.Table

    @property
    def version_table(self) -> str:
        """Name of the alembic version table for this prefix."""
        return f"{self.prefix}alembic_version"


def _workflows_table(metadata: sa.MetaData, prefix: str) -> sa.Table:
    return sa.Table(
        f"{prefix}workflows",
        metadata,
        sa.Column("story_id", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("iteration", sa.Integer, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("script", sa.Text, nullable=False),
        sa.Column("last_review_seq", sa.Integer, nullable=True),
        sa.Column("initial_quality_score", sa.Float, nullable=True),
        sa.Column("last_quality_score", sa.Float, nullable=True),
        sa.Column("total_reviews", sa.Integer, nullable=False),
        sa.Column("total_polishes", sa.Integer, nullable=False),
        sa.Column("total_cost", sa.Float, nullable=False),
        sa.Column("decision", sa.String(32), nullable=True),
        sa.Column("failed_stage", sa.String(16), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("completed_at", UTCDateTime, nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime, nullable=True),
        sa.CheckConstraint(_values_check("state", WorkflowState), name="state"),
        sa.CheckConstraint("seq >= 0", name="seq_non_negative"),
        sa.Index(None, "state", "lease_expires_at"),
        # Listing pages in start order (newest first, for operators) reads the index, not a
        # sort of every row; started_at is never updated, so transitions do not touch it.
        sa.Index(None, "started_at", "story_id"),
    )


def _inputs_table(metadata: sa.MetaData, prefix: str) -> sa.Table:
    # Written once per story and never updated: kept out of the summary row, which every
    # transition rewrites, so that UPDATE stays small.
    return sa.Table(
        f"{prefix}workflow_inputs",
        metadata,
        sa.Column(
            "story_id",
            sa.String(200),
            sa.ForeignKey(f"{prefix}workflows.story_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("initial_title", sa.Text, nullable=False),
        sa.Column("initial_script", sa.Text, nullable=False),
        sa.Column("audience_context", sa.Text, nullable=False),
        sa.Column("original_idea", sa.Text, nullable=False),
        sa.Column("local_review_summary", sa.Text, nullable=True),
        sa.Column("config", sa.Text, nullable=False),
    )


def _transitions_table(metadata: sa.MetaData, prefix: str) -> sa.Table:
    return sa.Table(
        f"{prefix}transitions",
        metadata,
        sa.Column(
            "story_id",
            sa.String(200),
            sa.ForeignKey(f"{prefix}workflows.story_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("dest", sa.String(16), nullable=False),
        sa.Column("iteration", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(16), nullable=True),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("duration_seconds", sa.Float, nullable=True),
        sa.Column("cost", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.CheckConstraint(_values_check("trigger", Trigger), name="trigger"),
        sa.CheckConstraint(_values_check("source", WorkflowState), name="source"),
        sa.CheckConstraint(_values_check("dest", WorkflowState), name="dest"),
    )


#: The longest table prefix on PostgreSQL, in UTF-8 bytes: ``<prefix>alembic_version_pkc``
#: (the version table's key, named by alembic and not shortened) must fit its 63. Longer
#: names built from the prefix (the foreign keys') are shortened by SQLAlchemy's naming
#: convention.
MAX_PREFIX_BYTES = 63 - len("alembic_version_pkc")


def build_schema(prefix: str = DEFAULT_TABLE_PREFIX) -> Schema:
    """Return the tables for *prefix* (cached: one ``MetaData`` per prefix per process).

    Raises:
        InputValidationError: *prefix* is not a string of letters, digits and ``_`` that
            starts with a letter.

    Example:
        >>> build_schema("pipeline_").workflows.name
        'pipeline_workflows'
    """
    if (
        not isinstance(prefix, str)
        or not prefix.replace("_", "").isalnum()
        or not prefix[0].isalpha()
    ):
        raise InputValidationError(
            f"table_prefix must start with a letter and hold only letters, digits and '_' "
            f"(got {prefix!r})"
        )
    return _build_schema(prefix)


def check_prefix_fits(prefix: str, dialect: str) -> None:
    """Refuse a prefix too long for *dialect*'s names, before anything is created.

    PostgreSQL's names end at 63 bytes; SQLite has no such limit (a database made there with
    a longer prefix stays usable there).

    Raises:
        InputValidationError: On PostgreSQL, *prefix* is over :data:`MAX_PREFIX_BYTES`.
    """
    size = len(prefix.encode())
    if dialect == "postgresql" and size > MAX_PREFIX_BYTES:
        raise InputValidationError(
            f"table_prefix is {size} bytes; PostgreSQL takes at most {MAX_PREFIX_BYTES} "
            "(its names end at 63 bytes)"
        )


@cache
def _build_schema(prefix: str) -> Schema:
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    return Schema(
        prefix=prefix,
        metadata=metadata,
        workflows=_workflows_table(metadata, prefix),
        inputs=_inputs_table(metadata, prefix),
        transitions=_transitions_table(metadata, prefix),
    )
