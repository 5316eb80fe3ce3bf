"""The whole initial schema: users, the course catalog, progress, traced runs, billing.

Written out by hand (not imported from server.models) so that this revision
keeps creating the same tables when the models change later.

Revision ID: 0001
Revises:
Create Date: 2024-01-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)


def created(name: str) -> sa.Column:
    return sa.Column(name, TIME, nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        created("created_at"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "courses",
        sa.Column("slug", sa.String(200), primary_key=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("position", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "lessons",
        sa.Column("slug", sa.String(200), primary_key=True),
        sa.Column("course_slug", sa.String(200), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("kernel", sa.String(64), nullable=False),
        sa.Column("paid", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("position", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("prerequisites", JSON, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["course_slug"], ["courses.slug"], name="fk_lessons_course_slug_courses"),
    )
    op.create_index("ix_lessons_course_slug", "lessons", ["course_slug"])
    op.create_table(
        "exercises",
        sa.Column("lesson_slug", sa.String(200), primary_key=True),
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("check_kind", sa.String(16), nullable=False),
        sa.Column("position", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.ForeignKeyConstraint(["lesson_slug"], ["lessons.slug"], ondelete="CASCADE",
                                name="fk_exercises_lesson_slug_lessons"),
    )
    op.create_table(
        "progress",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("lesson_slug", sa.String(200), primary_key=True),
        sa.Column("exercise_id", sa.String(200), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("code", sa.Text, nullable=False, server_default=""),
        created("updated_at"),
        sa.CheckConstraint("status IN ('passed', 'failed')", name="ck_progress_status"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_progress_user_id_users"),
    )
    # The trace tables: workers/trace_store.py writes them with plain SQL.
    op.create_table(
        "runs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(64)),
        sa.Column("lesson_slug", sa.String(200)),
        sa.Column("exercise_id", sa.String(200)),
        sa.Column("kernel", sa.String(64)),
        sa.Column("code_hash", sa.String(64)),
        sa.Column("code", sa.Text),
        sa.Column("status", sa.String(16), nullable=False, server_default="running"),
        sa.Column("limit_hit", sa.String(16)),
        sa.Column("verdict", sa.String(16)),
        sa.Column("pool_hit", sa.Boolean),
        sa.Column("container_id", sa.String(128)),
        sa.Column("requested_at", TIME),
        sa.Column("started_at", TIME),
        sa.Column("finished_at", TIME),
        sa.Column("queue_ms", sa.Double),
        sa.Column("start_ms", sa.Double),
        sa.Column("first_output_ms", sa.Double),
        sa.Column("total_ms", sa.Double),
        sa.Column("bytes_out", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("event_count", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.create_table(
        "trace_events",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("ts", TIME, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("data", JSON, nullable=False),
    )
    op.create_index("ix_trace_events_run_seq", "trace_events", ["run_id", "seq"])
    op.create_table(
        "subscriptions",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("stripe_customer_id", sa.String(64)),
        sa.Column("stripe_subscription_id", sa.String(64)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("current_period_end", TIME),
        created("updated_at"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_subscriptions_user_id_users"),
    )
    op.create_index("ix_subscriptions_stripe_customer_id", "subscriptions", ["stripe_customer_id"])
    op.create_table(
        "processed_webhook_events",
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(100), nullable=False),
        created("processed_at"),
    )
    op.create_table(
        "email_log",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32)),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        created("sent_at"),
    )
    op.create_index("ix_email_log_user_id", "email_log", ["user_id"])


def downgrade() -> None:
    for table in ("email_log", "processed_webhook_events", "subscriptions", "trace_events", "runs",
                  "progress", "exercises", "lessons", "courses", "users"):
        op.drop_table(table)
