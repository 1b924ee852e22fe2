"""targets keep a candidate's vetting, the follow-candidate run started for it, and a claim

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("targets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("vetting", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("follow_run_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("targets", schema=None) as batch_op:
        for column in ("updated_at", "claim_expires_at", "claimed_by", "follow_run_id", "vetting"):
            batch_op.drop_column(column)
