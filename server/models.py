"""The schema as SQLAlchemy 2 declarative rows: plain columns, no methods that do I/O.

The store modules query these tables and hand out frozen dataclasses, never
these objects. Migrations under server/migrations create the same schema;
`tests/test_db_migrations.py` checks that the two agree.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# JSONB on Postgres (indexable, compact); JSON text elsewhere.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class UtcDateTime(sa.TypeDecorator):
    """Aware UTC datetimes in and out on every backend.

    SQLite keeps naive text, which the trace store also writes as naive UTC;
    this puts the zone back on the way out so callers never compare naive
    with aware times.
    """
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # rows written by plain sqlite3
            value = dt.datetime.fromisoformat(value)
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention={
        # Stable constraint names, so batch migrations on SQLite can find them.
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    })


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    email: Mapped[str | None] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), server_default="")
    password_hash: Mapped[str | None] = mapped_column(sa.String(200))
    is_admin: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now())
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    reminders_off_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)   # unsubscribed


class Session(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored here,
    so a leaked table signs nobody in. Deleting the row logs that browser out."""
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now())
    last_seen_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now())
    user_agent: Mapped[str] = mapped_column(sa.String(300), server_default="")
    ip: Mapped[str] = mapped_column(sa.String(64), server_default="")


class AccountToken(Base):
    """A single-use token sent by email (verify, magic link, reset); stored as its SHA-256."""
    __tablename__ = "account_tokens"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    purpose: Mapped[str] = mapped_column(sa.String(16))
    user_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    anonymous_id: Mapped[str | None] = mapped_column(sa.String(32))  # whose progress to carry over
    new_email: Mapped[str | None] = mapped_column(sa.String(320))   # an address change to confirm
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now())
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class Course(Base):
    __tablename__ = "courses"
    slug: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    description: Mapped[str] = mapped_column(sa.Text, server_default="")
    position: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))


class Lesson(Base):
    __tablename__ = "lessons"
    slug: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    course_slug: Mapped[str] = mapped_column(sa.String(200), sa.ForeignKey("courses.slug"), index=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    kernel: Mapped[str] = mapped_column(sa.String(64))
    paid: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    position: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    prerequisites: Mapped[list[str]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(sa.String(64))


class Exercise(Base):
    __tablename__ = "exercises"
    lesson_slug: Mapped[str] = mapped_column(
        sa.String(200), sa.ForeignKey("lessons.slug", ondelete="CASCADE"), primary_key=True)
    id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    check_kind: Mapped[str] = mapped_column(sa.String(16))
    position: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))  # order in the lesson


class Progress(Base):
    """One row per learner and exercise. No foreign key to lessons: progress
    outlives a lesson that is renamed or withdrawn from the course."""
    __tablename__ = "progress"
    user_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    lesson_slug: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    exercise_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    code: Mapped[str] = mapped_column(sa.Text, server_default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now())
    # The latest run as the page showed it (JSON, bounded: server/learning/last_run.py).
    last_run: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    __table_args__ = (sa.CheckConstraint("status IN ('passed', 'failed')", name="ck_progress_status"),)


class AdminAudit(Base):
    """What an admin did: who (an email, or "API token"), what, to what, when. Written by
    server/admin/audit.py, shown on /admin."""
    __tablename__ = "admin_audit"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now(), index=True)
    actor: Mapped[str] = mapped_column(sa.String(320))
    action: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str] = mapped_column(sa.String(200), server_default="")
    detail: Mapped[str] = mapped_column(sa.Text, server_default="")
    ip: Mapped[str] = mapped_column(sa.String(64), server_default="")


class LiveEvent(Base):
    """A scheduled live event: its lesson's kernel pool is grown ahead of it and shrunk after.
    Written by server/admin/live_events.py from /admin/live-events."""
    __tablename__ = "live_events"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    starts_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    minutes: Mapped[int] = mapped_column(sa.Integer)
    lesson_slug: Mapped[str] = mapped_column(sa.String(200))
    learners: Mapped[int] = mapped_column(sa.Integer)
    created_by: Mapped[str] = mapped_column(sa.String(320))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now())
class FeatureFlag(Base):
    """A feature flag an admin set (server/admin/flags.py); a flag without a row has its default."""
    __tablename__ = "feature_flags"
    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now())
    updated_by: Mapped[str] = mapped_column(sa.String(320), server_default="")


class Run(Base):
    """The summary of one traced run; written by workers/trace_store.py (plain SQL).
    No foreign keys: traces arrive in any order and outlive users and lessons."""
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(64))
    lesson_slug: Mapped[str | None] = mapped_column(sa.String(200))
    exercise_id: Mapped[str | None] = mapped_column(sa.String(200))
    kernel: Mapped[str | None] = mapped_column(sa.String(64))
    code_hash: Mapped[str | None] = mapped_column(sa.String(64))
    code: Mapped[str | None] = mapped_column(sa.Text)
    client: Mapped[str | None] = mapped_column(sa.String(16))   # lesson | api
    status: Mapped[str] = mapped_column(sa.String(16), server_default="running")
    limit_hit: Mapped[str | None] = mapped_column(sa.String(16))
    verdict: Mapped[str | None] = mapped_column(sa.String(16))
    pool_hit: Mapped[bool | None] = mapped_column(sa.Boolean)
    container_id: Mapped[str | None] = mapped_column(sa.String(128))
    requested_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    queue_ms: Mapped[float | None] = mapped_column(sa.Double)
    start_ms: Mapped[float | None] = mapped_column(sa.Double)
    first_output_ms: Mapped[float | None] = mapped_column(sa.Double)
    total_ms: Mapped[float | None] = mapped_column(sa.Double)
    bytes_out: Mapped[int] = mapped_column(sa.BigInteger, server_default=sa.text("0"))
    event_count: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    # The admin runs list: newest first, alone or within one user, exercise or status.
    __table_args__ = (sa.Index("ix_runs_requested_at", "requested_at"),
                      sa.Index("ix_runs_user_requested", "user_id", "requested_at"),
                      sa.Index("ix_runs_exercise_requested", "exercise_id", "requested_at"),
                      sa.Index("ix_runs_status_requested", "status", "requested_at"),
                      sa.Index("ix_runs_total_ms", "total_ms"),
                      sa.Index("ix_runs_first_output_ms", "first_output_ms"))


class TraceEvent(Base):
    __tablename__ = "trace_events"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.String(32))
    seq: Mapped[int] = mapped_column(sa.Integer)
    ts: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(sa.String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    __table_args__ = (sa.Index("ix_trace_events_run_seq", "run_id", "seq"),)


class Subscription(Base):
    __tablename__ = "subscriptions"
    user_id: Mapped[str] = mapped_column(
        sa.String(32), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    stripe_customer_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(32))
    current_period_end: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    current_period_start: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # past_due grace from here
    subscription_created: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # the newest one is current
    observed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # when Stripe said this
    access_ended_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # servers close kernels
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now())


class ProcessedWebhookEvent(Base):
    """Every verified Stripe event by id, from its receipt to its processing.

    status: received (a job will process it), processed, or failed (a redelivery
    or the reconciliation processes it again: recorded is not done)."""
    __tablename__ = "processed_webhook_events"
    event_id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    type: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(16), server_default="processed")
    payload: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    error: Mapped[str | None] = mapped_column(sa.Text)
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now())
    processed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class EmailLog(Base):
    """Every email, one row per trigger (the id), so a retried job never sends it twice.
    No body here: only embedded mode keeps one (`outbox`), for the admins' outbox page."""
    __tablename__ = "email_log"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    recipient: Mapped[str] = mapped_column(sa.String(320))
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, server_default=sa.func.now())
    status: Mapped[str] = mapped_column(sa.String(16), server_default="queued")  # queued|sent|failed
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default=sa.text("0"))
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    subject: Mapped[str] = mapped_column(sa.String(300), server_default="")
    outbox: Mapped[str | None] = mapped_column(sa.Text)
