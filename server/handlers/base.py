"""What every handler shares: request ids, metrics, error pages, the learner's identity."""
from __future__ import annotations

import dataclasses
import datetime as dt
import http
import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

import tornado.web
import tornado.websocket
from sqlalchemy.ext.asyncio import AsyncEngine

from kernels.quotas import Tier
from server.accounts.connections import PerIpCap
from server.accounts.limiter import NewLearnerLimiter
from server.config import Settings
from server.metrics import Metrics
from server.store import sessions, users

USER_COOKIE = "ls_user"
SESSION_COOKIE = "ls_session"    # a signed-in account (server/handlers/accounts.py sets it)
# Scripts only from our origin (no inline script anywhere); CodeMirror needs inline
# styles; plots arrive as data: images; kernel HTML lives in sandboxed srcdoc iframes.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def set_security_headers(handler: tornado.web.RequestHandler) -> None:
    """The headers every answer carries: pages, JSON, errors and static files alike."""
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("Referrer-Policy", "same-origin")
    handler.set_header("Content-Security-Policy", CSP)


class HeaderError(tornado.web.HTTPError):
    """An HTTPError that keeps its headers (send_error clears those set before raising)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status, message)
        self.headers = dict(headers or {})


def too_many(message: str, retry_after_header: str) -> HeaderError:
    """A 429 with Retry-After and a plain message, for any rate limit or cap."""
    return HeaderError(429, message, {"Retry-After": retry_after_header})


@dataclasses.dataclass(frozen=True)
class Common:
    """Dependencies every handler takes through initialize()."""
    settings: Settings
    engine: AsyncEngine
    metrics: Metrics
    new_learners: NewLearnerLimiter
    new_rows: users.AnonymousRows


class BaseHandler(tornado.web.RequestHandler):
    route = "other"          # the metrics label; set per handler class
    user: users.User | None = None

    def initialize(self, common: Common) -> None:
        self.common = common
        self.settings_ = common.settings

    def prepare(self) -> None:
        given = self.request.headers.get("X-Request-Id", "")
        self.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
        self.set_header("X-Request-Id", self.request_id)

    def on_finish(self) -> None:
        self.common.metrics.observe_request(self.request.method or "-", self.route,
                                            self.get_status(), self.request.request_time())

    def set_default_headers(self) -> None:
        set_security_headers(self)

    # --- identity: a signed cookie naming a learner. An anonymous visitor costs no row until
    # it does something worth keeping (see persist_user); until then the cookie is its identity.

    persisted = False        # whether self.user has a database row

    async def load_user(self) -> users.User | None:
        """The signed-in account when the session cookie names a live session; else the
        cookie's learner: its row, or a row-less visitor; None without a cookie."""
        session = self.get_signed_cookie(SESSION_COOKIE, max_age_days=self.settings_.session_days)
        if session is not None:
            account = await sessions.user_of(self.common.engine, session.decode(),
                                             dt.timedelta(days=self.settings_.session_days))
            if account is not None:
                self.user, self.persisted = account, True
                return account
        raw = self.get_signed_cookie(USER_COOKIE, max_age_days=365)
        if raw is None:
            return None
        user_id = raw.decode()
        row = await users.get(self.common.engine, user_id)
        self.persisted = row is not None
        self.user = row or users.anonymous(user_id)
        return self.user

    def has_identity(self) -> bool:
        return self.get_cookie(USER_COOKIE) is not None or self.get_cookie(SESSION_COOKIE) is not None

    async def ensure_user(self) -> users.User:
        """The current learner; a new visitor gets a signed cookie, and no row (no write on a read)."""
        if self.user is None and await self.load_user() is None:
            self.user = users.anonymous()
            self.persisted = False
            self.set_signed_cookie(USER_COOKIE, self.user.id, expires_days=365, httponly=True,
                                   samesite="Lax", secure=self.settings_.secure_cookies)
        return self.user

    async def persist_user(self) -> users.User:
        """Give the cookie's visitor its row, keeping its id: on its first act worth keeping
        (a run, a kernel). Each address may create only so many: past that, a 429."""
        user = await self.ensure_user()
        if not self.persisted:
            decision = await self.common.new_learners.admit(self.request.remote_ip or "-")
            if not decision.allowed:
                raise too_many(f"Too many new learners from your address; try again in "
                               f"{decision.retry_after_header} s.", decision.retry_after_header)
            self.user = await self.common.new_rows.create(user.id)
            self.persisted = True
        return self.user

    # --- errors: an HTML page for people, JSON under /api/ ---

    def wants_json(self) -> bool:
        return self.request.path.startswith("/api/")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason or http.HTTPStatus(status_code).phrase
        exc = kwargs.get("exc_info", (None, None, None))[1]
        for name, value in getattr(exc, "headers", {}).items():
            self.set_header(name, value)
        message = exc.log_message if isinstance(exc, tornado.web.HTTPError) and exc.log_message \
            and status_code < 500 else None
        if self.wants_json():
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"error": {"status": status_code, "reason": reason,
                                              "message": message,
                                              "request_id": getattr(self, "request_id", "-")}}))
            return
        self.render("error.html", status=status_code, reason=reason, message=message,
                    request_id=getattr(self, "request_id", "-"))


def owner_tier(user: users.User | None) -> Tier:
    """Kernel quotas by who asks: admins are exempt, anonymous visitors get the least."""
    if user is not None and user.is_admin:
        return Tier.EXEMPT
    return Tier.ANONYMOUS if user is None or user.email is None else Tier.MEMBER
class StaticFiles(tornado.web.StaticFileHandler):
    """/static/ and /favicon.ico with the same security headers as the pages."""

    def set_default_headers(self) -> None:
        set_security_headers(self)


class CappedSocket:
    """Mixed in before tornado's WebSocketHandler: the socket holds one of its address's slots.

    In get(), `await self.upgrade_within(cap, *args)` instead of `await super().get(*args)`;
    in on_close(), `self.release_slot()`. Past the cap the handshake is a 429.
    """
    _slot: tuple[PerIpCap, str] | None = None

    async def upgrade_within(self, cap: PerIpCap, *args: Any) -> None:
        ip = self.request.remote_ip or "-"
        if not cap.acquire(ip):
            raise too_many(f"Too many open connections from your address (at most {cap.limit}); "
                           f"close some tabs and try again.", "5")
        self._slot = (cap, ip)
        await super().get(*args)
        if self.get_status() != 101:      # the handshake was refused: no socket, no slot
            self.release_slot()

    def release_slot(self) -> None:
        if self._slot is not None:
            cap, ip = self._slot
            self._slot = None
            cap.release(ip)


class NotFoundHandler(BaseHandler):
    route = "not_found"

    def prepare(self) -> None:
        super().prepare()
        raise tornado.web.HTTPError(404, "There is no page at this address.")


def json_response(handler: tornado.web.RequestHandler, payload: Any, status: int = 200) -> None:
    handler.set_status(status)
    handler.set_header("Content-Type", "application/json; charset=utf-8")
    handler.finish(json.dumps(payload, default=str))


def now() -> float:
    return time.time()
