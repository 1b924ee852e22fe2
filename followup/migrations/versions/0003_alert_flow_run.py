"""alerts remember the follow-up run started for them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 13:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flow_run_id", sa.String(length=36), nullable=True))
        batch_op.create_index("ix_alerts_flow_run_id", ["flow_run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_flow_run_id")
        batch_op.drop_column("flow_run_id")
