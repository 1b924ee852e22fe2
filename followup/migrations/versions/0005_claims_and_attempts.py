"""requests and reports carry a claim (owner and lease); messages count their attempts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CLAIMED = ("requests", "reports")


def upgrade() -> None:
    for table in CLAIMED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))
            batch_op.add_column(
                sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True)
            )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("attempts")
    for table in CLAIMED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("claim_expires_at")
            batch_op.drop_column("claimed_by")
