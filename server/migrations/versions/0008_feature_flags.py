"""Feature flags: one row per flag an admin has set; a flag without a row has its default
(server/admin/flags.py declares the flags and their defaults).

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_flags",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("updated_by", sa.String(320), server_default="", nullable=False),
    )


def downgrade() -> None:
    op.drop_table("feature_flags")
