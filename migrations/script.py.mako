"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from story_fsm.store.migrate import migration_table_prefix
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    p = migration_table_prefix()
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    p = migration_table_prefix()
    ${downgrades if downgrades else "pass"}
