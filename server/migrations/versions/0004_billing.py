"""Billing: subscriptions remember when Stripe said what, and webhook events are kept from
receipt to processing (a recorded event is not a processed one).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

TIME = sa.DateTime(timezone=True)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SUBSCRIPTION_TIMES = ("current_period_start", "subscription_created", "observed_at", "access_ended_at")


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        for name in SUBSCRIPTION_TIMES:
            batch.add_column(sa.Column(name, TIME))
    with op.batch_alter_table("processed_webhook_events") as batch:
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="processed"))
        batch.add_column(sa.Column("payload", sa.Text))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")))
        batch.add_column(sa.Column("error", sa.Text))
        batch.add_column(sa.Column("received_at", TIME, nullable=False,
                                   server_default=sa.func.now()))
        batch.alter_column("processed_at", existing_type=TIME, nullable=True,
                           server_default=None)


def downgrade() -> None:
    op.execute("DELETE FROM processed_webhook_events WHERE processed_at IS NULL")
    with op.batch_alter_table("processed_webhook_events") as batch:
        batch.alter_column("processed_at", existing_type=TIME, nullable=False,
                           server_default=sa.func.now())
        for name in ("received_at", "error", "attempts", "payload", "status"):
            batch.drop_column(name)
    with op.batch_alter_table("subscriptions") as batch:
        for name in reversed(SUBSCRIPTION_TIMES):
            batch.drop_column(name)
