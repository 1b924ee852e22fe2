"""pointings shared on the Treasure Map

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pointings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("target_name", sa.String(length=30), nullable=False),
        sa.Column("band", sa.String(length=10), nullable=False),
        sa.Column("camera", sa.String(length=30), nullable=False),
        sa.Column("ra", sa.Float(), nullable=False),
        sa.Column("dec", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("remote_id", sa.BigInteger(), nullable=True),
        sa.Column("planned_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("observed_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("depth", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("event_id", "target_name", "band", name="uq_pointing_key"),
    )
    op.create_index("ix_pointings_event_id", "pointings", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_pointings_event_id", table_name="pointings")
    op.drop_table("pointings")
