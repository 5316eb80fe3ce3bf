"""Scheduled live events, whose lessons' kernel pools grow ahead of them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
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
        "live_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("minutes", sa.Integer, nullable=False),
        sa.Column("lesson_slug", sa.String(200), nullable=False),
        sa.Column("learners", sa.Integer, nullable=False),
        sa.Column("created_by", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
    )
    op.create_index("ix_live_events_starts_at", "live_events", ["starts_at"])


def downgrade() -> None:
    op.drop_index("ix_live_events_starts_at", "live_events")
    op.drop_table("live_events")
