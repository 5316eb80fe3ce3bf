"""Accounts and emails: verified addresses, reminder opt-outs, server-side sessions, single-use email tokens,
and an email log that records status and attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email_verified_at", TIME))
        batch.add_column(sa.Column("reminders_off_at", TIME))
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("created_at", TIME, nullable=False, server_default=sa.func.now()),
        sa.Column("last_seen_at", TIME, nullable=False, server_default=sa.func.now()),
        sa.Column("user_agent", sa.String(300), nullable=False, server_default=""),
        sa.Column("ip", sa.String(64), nullable=False, server_default=""),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_sessions_user_id_users"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "account_tokens",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("anonymous_id", sa.String(32)),
        sa.Column("new_email", sa.String(320)),
        sa.Column("created_at", TIME, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TIME, nullable=False),
        sa.Column("used_at", TIME),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_account_tokens_user_id_users"),
    )
    op.create_index("ix_account_tokens_user_id", "account_tokens", ["user_id"])
    with op.batch_alter_table("email_log") as batch:
        batch.alter_column("sent_at", existing_type=TIME, nullable=True, server_default=None)
        batch.add_column(sa.Column("created_at", TIME, nullable=False, server_default=sa.func.now()))
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="queued"))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")))
        batch.add_column(sa.Column("last_error", sa.String(500)))
        batch.add_column(sa.Column("subject", sa.String(300), nullable=False, server_default=""))
        batch.add_column(sa.Column("outbox", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("email_log") as batch:
        for column in ("outbox", "subject", "last_error", "attempts", "status", "created_at"):
            batch.drop_column(column)
        batch.alter_column("sent_at", existing_type=TIME, nullable=False,
                           server_default=sa.func.now())
    op.drop_table("account_tokens")
    op.drop_table("sessions")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("reminders_off_at")
        batch.drop_column("email_verified_at")
