"""Move the write-once inputs out of the summary row into workflow_inputs.

Every transition rewrites the summary row; with the initial script, the audience, the idea
and the config in it, that row outgrew a page and each UPDATE rewrote an overflow page too.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from story_fsm.store.migrate import migration_table_prefix

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_MOVED = (
    "initial_title",
    "initial_script",
    "audience_context",
    "original_idea",
    "local_review_summary",
    "config",
)
_NULLABLE = {"local_review_summary"}


def _quoted(table: str) -> str:
    """*table* as the dialect names it in SQL text: quoted where SQLAlchemy quotes it.

    SQLAlchemy quotes a name with capitals ("MyApp_workflows") when it creates the table;
    written bare in a statement, PostgreSQL would fold it to lower case and miss it.
    """
    return str(op.get_bind().dialect.identifier_preparer.quote(table))


def upgrade() -> None:
    p = migration_table_prefix()
    op.create_table(
        f"{p}workflow_inputs",
        sa.Column("story_id", sa.String(200), nullable=False),
        *(sa.Column(name, sa.Text, nullable=name in _NULLABLE) for name in _MOVED),
        sa.ForeignKeyConstraint(
            ["story_id"],
            [f"{p}workflows.story_id"],
            name=op.f(f"fk_{p}workflow_inputs_story_id_{p}workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("story_id", name=op.f(f"pk_{p}workflow_inputs")),
    )
    columns = ", ".join(("story_id", *_MOVED))
    inputs, workflows = _quoted(f"{p}workflow_inputs"), _quoted(f"{p}workflows")
    op.execute(f"INSERT INTO {inputs} ({columns}) SELECT {columns} FROM {workflows}")
    with op.batch_alter_table(f"{p}workflows") as batch:
        for name in _MOVED:
            batch.drop_column(name)


def downgrade() -> None:
    p = migration_table_prefix()
    with op.batch_alter_table(f"{p}workflows") as batch:
        for name in _MOVED:
            batch.add_column(sa.Column(name, sa.Text, nullable=True))
    inputs, workflows = _quoted(f"{p}workflow_inputs"), _quoted(f"{p}workflows")
    for name in _MOVED:
        op.execute(
            f"UPDATE {workflows} SET {name} = (SELECT i.{name} FROM {inputs} i "
            f"WHERE i.story_id = {workflows}.story_id)"
        )
    with op.batch_alter_table(f"{p}workflows") as batch:
        for name in _MOVED:
            if name not in _NULLABLE:
                batch.alter_column(name, existing_type=sa.Text, nullable=False)
    op.drop_table(f"{p}workflow_inputs")
