"""The admins' audit log: who did what, to what, when; and the indexes the admin runs list
sorts and filters by (newest first, alone or within a user, an exercise or a status).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"   # 0005 (last run) landed on main first
branch_labels = None
depends_on = None

RUN_INDEXES = {"ix_runs_requested_at": ["requested_at"],
               "ix_runs_user_requested": ["user_id", "requested_at"],
               "ix_runs_exercise_requested": ["exercise_id", "requested_at"],
               "ix_runs_status_requested": ["status", "requested_at"],
               "ix_runs_total_ms": ["total_ms"],
               "ix_runs_first_output_ms": ["first_output_ms"]}


def upgrade() -> None:
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), server_default="", nullable=False),
        sa.Column("detail", sa.Text, server_default="", nullable=False),
        sa.Column("ip", sa.String(64), server_default="", nullable=False),
    )
    op.create_index("ix_admin_audit_at", "admin_audit", ["at"])
    for name, columns in RUN_INDEXES.items():
        op.create_index(name, "runs", columns)


def downgrade() -> None:
    for name in RUN_INDEXES:
        op.drop_index(name, "runs")
    op.drop_index("ix_admin_audit_at", "admin_audit")
    op.drop_table("admin_audit")
