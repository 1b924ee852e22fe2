"""plan versions: each alert of an event makes a numbered version with its difference

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 11:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plan_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("alert_type", sa.String(length=20), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("diff", sa.JSON(), nullable=False),
        sa.Column("probability_gained", sa.Float(), nullable=False),
        sa.Column("covered_probability", sa.Float(), nullable=False),
        sa.Column("observable_probability", sa.Float(), nullable=True),
        sa.Column("hours", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("event_id", "version", name="uq_plan_version"),
    )
    op.create_index("ix_plan_versions_event_id", "plan_versions", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_plan_versions_event_id", table_name="plan_versions")
    op.drop_table("plan_versions")
