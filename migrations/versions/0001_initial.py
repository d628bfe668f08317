"""Initial schema: workflows (one summary row per story) and transitions (the history).

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from story_fsm.store.migrate import migration_table_prefix

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_STATES = "'initial', 'reviewing', 'polishing', 'complete', 'failed'"
_TRIGGERS = "'submit', 'start', 'reviewed', 'polished', 'attempt_failed', 'fail', 'retry', 'resume'"


def upgrade() -> None:
    p = migration_table_prefix()
    op.create_table(
        f"{p}workflows",
        sa.Column("story_id", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("iteration", sa.Integer, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("script", sa.Text, nullable=False),
        sa.Column("initial_title", sa.Text, nullable=False),
        sa.Column("initial_script", sa.Text, nullable=False),
        sa.Column("audience_context", sa.Text, nullable=False),
        sa.Column("original_idea", sa.Text, nullable=False),
        sa.Column("local_review_summary", sa.Text, nullable=True),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("last_review_seq", sa.Integer, nullable=True),
        sa.Column("initial_quality_score", sa.Float, nullable=True),
        sa.Column("last_quality_score", sa.Float, nullable=True),
        sa.Column("total_reviews", sa.Integer, nullable=False),
        sa.Column("total_polishes", sa.Integer, nullable=False),
        sa.Column("total_cost", sa.Float, nullable=False),
        sa.Column("decision", sa.String(32), nullable=True),
        sa.Column("failed_stage", sa.String(16), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"state IN ({_STATES})", name=op.f(f"ck_{p}workflows_state")),
        sa.CheckConstraint("seq >= 0", name=op.f(f"ck_{p}workflows_seq_non_negative")),
        sa.PrimaryKeyConstraint("story_id", name=op.f(f"pk_{p}workflows")),
    )
    op.create_index(
        op.f(f"ix_{p}workflows_state_lease_expires_at"),
        f"{p}workflows",
        ["state", "lease_expires_at"],
    )
    op.create_table(
        f"{p}transitions",
        sa.Column("story_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("dest", sa.String(16), nullable=False),
        sa.Column("iteration", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(16), nullable=True),
        sa.Column("attempt", sa.Integer, nullable=True),
        sa.Column("duration_seconds", sa.Float, nullable=True),
        sa.Column("cost", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.CheckConstraint(f"trigger IN ({_TRIGGERS})", name=op.f(f"ck_{p}transitions_trigger")),
        sa.CheckConstraint(f"source IN ({_STATES})", name=op.f(f"ck_{p}transitions_source")),
        sa.CheckConstraint(f"dest IN ({_STATES})", name=op.f(f"ck_{p}transitions_dest")),
        sa.ForeignKeyConstraint(
            ["story_id"],
            [f"{p}workflows.story_id"],
            name=op.f(f"fk_{p}transitions_story_id_{p}workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("story_id", "seq", name=op.f(f"pk_{p}transitions")),
    )


def downgrade() -> None:
    p = migration_table_prefix()
    op.drop_table(f"{p}transitions")
    op.drop_index(op.f(f"ix_{p}workflows_state_lease_expires_at"), table_name=f"{p}workflows")
    op.drop_table(f"{p}workflows")
