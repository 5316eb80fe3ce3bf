"""Access granted by hand (an admin opens paid lessons to a user until a date); the index the
learning pages read a lesson's runs by (per exercise and learner, in time order); and the one the
admin users list pages by (newest first).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LESSON_INDEX = ["lesson_slug", "exercise_id", "user_id", "requested_at"]
LESSON_INDEX_READS = ["verdict", "status", "limit_hit", "id"]   # Postgres: an index-only scan


def upgrade() -> None:
    op.create_table(
        "access_grants",
        sa.Column("user_id", sa.String(32), sa.ForeignKey(
            "users.id", ondelete="CASCADE", name="fk_access_grants_user_id_users"), primary_key=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted_by", sa.String(320), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), server_default=sa.func.now(),
                  nullable=False),
        sa.Column("reason", sa.Text, server_default="", nullable=False),
    )
    op.create_index("ix_runs_lesson_learner", "runs", LESSON_INDEX,
                    postgresql_include=LESSON_INDEX_READS)
    op.create_index("ix_users_created", "users", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_users_created", "users")
    op.drop_index("ix_runs_lesson_learner", "runs")
    op.drop_table("access_grants")
