"""Index the summary rows by start time, for listing the newest (or oldest) first.

``story-fsm list --newest`` and ``list_workflows(newest_first=True, limit=20)`` order every
summary row by ``(started_at, story_id)``; without an index that is a full scan and a sort
of the whole table to return a page. ``started_at`` is written once, at submission, and no
later UPDATE sets it, so the index costs one entry per story and nothing per transition.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

from story_fsm.store.migrate import migration_table_prefix

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    p = migration_table_prefix()
    op.create_index(
        op.f(f"ix_{p}workflows_started_at_story_id"),
        f"{p}workflows",
        ["started_at", "story_id"],
    )


def downgrade() -> None:
    p = migration_table_prefix()
    op.drop_index(op.f(f"ix_{p}workflows_started_at_story_id"), table_name=f"{p}workflows")
