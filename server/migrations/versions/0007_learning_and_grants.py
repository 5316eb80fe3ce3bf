"""The index the learning pages read a lesson's runs by (per exercise and learner, in time order).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""
from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

LESSON_INDEX = ["lesson_slug", "exercise_id", "user_id", "requested_at", "verdict"]


def upgrade() -> None:
    op.create_index("ix_runs_lesson_learner", "runs", LESSON_INDEX)


def downgrade() -> None:
    op.drop_index("ix_runs_lesson_learner", "runs")
