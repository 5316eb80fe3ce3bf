"""The admin users and billing pages: the list's URL parameters as a frozen value, the paged
SQL behind it, one user's subscription, grant and billing events, and the grant rules.

Every parameter lives in the URL; searching, filtering and paging happen in SQL."""
from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.learning import access
from server.accounts.rules import Role
from server.admin.audit import Entry
from server.billing.events import BadEvent, parse_event
from server.handlers.admin_runs import BadFilter, parse_count
from server.models import (AccessGrant as GrantRow, AdminAudit, ProcessedWebhookEvent as EventRow,
                           Subscription as SubscriptionRow, User as UserTable)

PAGE_SIZE = 50
PARAMS = ("q", "role", "page")
ROLES = ("accounts", "admins", "anonymous", "all")     # accounts: anyone with an address
MAX_GRANT_DAYS = 3660
EVENTS_SHOWN = 50


@dataclasses.dataclass(frozen=True)
class UsersQuery:
    q: str | None = None            # part of an email address, any case
    role: str = "accounts"
    page: int = 1

    @property
    def offset(self) -> int:
        return (self.page - 1) * PAGE_SIZE


def parse(args: Mapping[str, str]) -> UsersQuery:
    unknown = sorted(set(args) - set(PARAMS))
    if unknown:
        raise BadFilter(f"unknown parameter {unknown[0]!r}; this page takes {', '.join(PARAMS)}")
    who = args.get("role") or "accounts"
    if who not in ROLES:
        raise BadFilter(f"role {who!r}: use one of {', '.join(ROLES)}")
    q = (args.get("q") or "").strip().lower() or None
    if q is not None and len(q) > 320:
        raise BadFilter("q: an email address has at most 320 characters")
    return UsersQuery(q, who, parse_count(args, "page", 1, 1, None))


def url(args: Mapping[str, str], **changes: Any) -> str:
    merged = {**args, **{k: (None if v is None else str(v)) for k, v in changes.items()}}
    query = urllib.parse.urlencode({k: v for k, v in merged.items() if k in PARAMS and v})
    return "/admin/users" + (f"?{query}" if query else "")


@dataclasses.dataclass(frozen=True)
class UserLine:
    """One line of the list (and the head of a user's page)."""
    id: str
    email: str | None
    is_admin: bool
    created_at: dt.datetime | None
    status: str | None              # Stripe's subscription status, if any
    period_start: dt.datetime | None
    updated_at: dt.datetime | None
    period_end: dt.datetime | None
    granted_until: dt.datetime | None

    @property
    def role(self) -> Role:
        if self.is_admin:
            return Role.ADMIN
        return Role.ANONYMOUS if self.email is None else Role.LEARNER


def access_state(row: UserLine, now: float, grace_days: float) -> str:
    """The user's paid access in words: by subscription, by grant, or none (and why)."""
    subscribed = row.status is not None and access.subscribed(
        row.status, row.period_start, row.updated_at, now, grace_days)
    if subscribed:
        return f"paid: subscription {row.status}"
    if access.paid_access(False, row.granted_until, now):
        return f"paid: granted until {row.granted_until:%Y-%m-%d %H:%M} UTC"
    if row.granted_until is not None:
        return "free: grant ended"
    return "free" if row.status is None else f"free: subscription {row.status}"


def grant_until(raw: str | None, now: dt.datetime) -> dt.datetime:
    """The end of a grant from the form: a date (access to the end of that day, UTC) or an ISO
    time; in the future and within ten years. BadFilter names the field."""
    text = (raw or "").strip()
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"until {text!r}: give a date such as 2027-01-31") from None
    if len(text) == 10:                               # a date alone: through that whole day
        when = when + dt.timedelta(days=1)
    when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    if when <= now:
        raise BadFilter(f"until {text}: that is not in the future")
    if when > now + dt.timedelta(days=MAX_GRANT_DAYS):
        raise BadFilter(f"until {text}: grants last at most ten years")
    return when


LIST_COLUMNS = (UserTable.id, UserTable.email, UserTable.is_admin, UserTable.created_at,
                SubscriptionRow.status, SubscriptionRow.current_period_start,
                SubscriptionRow.updated_at, SubscriptionRow.current_period_end, GrantRow.until)


def _joined(users_from: Any) -> sa.Select:
    """Each user in `users_from` with their subscription and grant, if any."""
    return sa.select(*LIST_COLUMNS).select_from(
        users_from.outerjoin(SubscriptionRow, SubscriptionRow.user_id == UserTable.id)
        .outerjoin(GrantRow, GrantRow.user_id == UserTable.id))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search(engine: AsyncEngine, q: UsersQuery) -> tuple[list[UserLine], bool]:
    """One page of users, newest first, and whether a next page exists. The page's ids come
    first (ix_users_created, walked backwards), and only its rows are joined to billing."""
    page = sa.select(UserTable.id)
    if q.role == "accounts":
        page = page.where(UserTable.email.is_not(None))
    elif q.role == "admins":
        page = page.where(UserTable.is_admin.is_(True))
    elif q.role == "anonymous":
        page = page.where(UserTable.email.is_(None), UserTable.is_admin.is_(False))
    if q.q:      # addresses are stored lower-cased
        page = page.where(UserTable.email.like(f"%{_escape_like(q.q)}%", escape="\\"))
    newest = (UserTable.created_at.desc(), UserTable.id.desc())
    page = page.order_by(*newest).limit(PAGE_SIZE + 1).offset(q.offset).subquery()
    query = _joined(UserTable.__table__.join(page, page.c.id == UserTable.id)).order_by(*newest)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [UserLine(*row) for row in rows[:PAGE_SIZE]], len(rows) > PAGE_SIZE


async def one(engine: AsyncEngine, user_id: str) -> UserLine | None:
    async with engine.connect() as conn:
        row = (await conn.execute(_joined(UserTable.__table__).where(UserTable.id == user_id))
               ).first()
    return None if row is None else UserLine(*row)


@dataclasses.dataclass(frozen=True)
class BillingEvent:
    event_id: str
    type: str
    status: str                     # received | processed | failed
    received_at: dt.datetime
    processed_at: dt.datetime | None
    error: str | None


def events_of(stored: list[tuple[Any, ...]], user_id: str, customer_id: str | None) -> list[BillingEvent]:
    """The webhook events that are this user's: those whose payload names them or their Stripe
    customer (the SQL narrowed by text; this reads each payload to be sure)."""
    out = []
    for event_id, kind, status, payload, received_at, processed_at, error in stored:
        try:
            event = parse_event(payload or "")
        except BadEvent:
            continue
        if event.user_id == user_id or (customer_id and event.customer_id == customer_id):
            out.append(BillingEvent(event_id, kind, status, received_at, processed_at, error))
    return out


async def billing_events(engine: AsyncEngine, user_id: str) -> list[BillingEvent]:
    """Newest first: this user's Stripe webhook events as received and processed."""
    async with engine.connect() as conn:
        customer = (await conn.execute(sa.select(SubscriptionRow.stripe_customer_id)
                                       .where(SubscriptionRow.user_id == user_id))).scalar()
        names = [user_id] + ([customer] if customer else [])
        rows = (await conn.execute(
            sa.select(EventRow.event_id, EventRow.type, EventRow.status, EventRow.payload,
                      EventRow.received_at, EventRow.processed_at, EventRow.error)
            .where(sa.or_(*(EventRow.payload.like(f'%"{_escape_like(n)}"%', escape="\\")
                            for n in names)))
            .order_by(EventRow.received_at.desc()).limit(EVENTS_SHOWN))).all()
    return events_of(rows, user_id, customer)


async def audit_of(engine: AsyncEngine, user_id: str, limit: int = 50) -> list[Entry]:
    """What admins did to this user, newest first."""
    columns = (AdminAudit.at, AdminAudit.actor, AdminAudit.action, AdminAudit.target,
               AdminAudit.detail, AdminAudit.ip)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(*columns).where(AdminAudit.target == user_id)
                                   .order_by(AdminAudit.at.desc(), AdminAudit.id.desc())
                                   .limit(limit))).all()
    return [Entry(*row) for row in rows]
