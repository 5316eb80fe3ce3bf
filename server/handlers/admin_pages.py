"""The admins' trace viewer: run search and one run's timeline, as HTML.

Same data as `/api/admin/runs`. An admin signs in once by pasting the API
token (compared in constant time) and gets a short-lived signed, HttpOnly
session cookie; a learner who is marked is_admin in the database gets in too.
"""
from __future__ import annotations

import tornado.escape
import tornado.web

from server.accounts.limiter import CredentialLimiter
from server.accounts.redirects import local_redirect
from server.accounts.rules import Role, role
from server.admin import audit, display, runs as admin_runs_view
from server.handlers.admin_runs import STATUSES, BadFilter, token_verdict
from server.handlers.base import BaseHandler, Common, too_many
from server.tracing import queries

ADMIN_COOKIE = "ls_admin"
ADMIN_ACCOUNT = "admin"      # the account the API token stands for, in rate limits
SESSION_DAYS = 0.5


class AdminPage(BaseHandler):
    route = "admin"

    def initialize(self, common: Common, api_token: str | None,
                   limiter: CredentialLimiter) -> None:
        super().initialize(common)
        self.api_token = api_token
        self.limiter = limiter

    async def require_admin(self) -> str:
        """The admin's name for the audit log (an email, or the token); anyone else is sent to
        the admin sign-in and sees nothing."""
        if self.get_signed_cookie(ADMIN_COOKIE, max_age_days=SESSION_DAYS) == b"1":
            return audit.TOKEN_ACTOR
        user = await self.load_user()
        if role(user) is Role.ADMIN:
            return user.email or f"admin {user.id[:8]}"
        self.redirect("/admin/login?next=" + tornado.escape.url_escape(self.request.uri))
        raise tornado.web.Finish()

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")


class LoginHandler(AdminPage):
    def get(self) -> None:
        self.render("admin_login.html", error=None, next=self._next())

    async def post(self) -> None:
        ip = self.request.remote_ip or "-"
        decision = await self.limiter.attempt(ip, ADMIN_ACCOUNT)
        if not decision.allowed:
            raise too_many(f"Too many sign-in attempts; try again in "
                           f"{decision.retry_after_header} s.", decision.retry_after_header)
        given = self.get_body_argument("token", "")
        if token_verdict(f"token {given}", self.api_token) is not None:
            self.set_status(403)
            self.render("admin_login.html", error="That is not the admin token.", next=self._next())
            return
        await self.limiter.succeeded(ip, ADMIN_ACCOUNT)     # only failures count
        await audit.record(self.common.engine, audit.TOKEN_ACTOR, "sign-in", ip=ip)
        self.set_signed_cookie(ADMIN_COOKIE, "1", expires_days=SESSION_DAYS, httponly=True,
                               samesite="Strict", secure=self.settings_.secure_cookies)
        self.redirect(self._next())

    def _next(self) -> str:
        return local_redirect(self.get_argument("next", ""), default="/admin/runs")


class RunsPage(AdminPage):
    async def get(self) -> None:
        await self.require_admin()
        args = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        try:
            query = admin_runs_view.parse(args)
        except BadFilter as exc:
            # The page again, with the form as sent and what to change; no data.
            self.set_status(400)
            self.render("admin_runs.html", runs=[], args=args, query=None, more=False,
                        error=str(exc), **self.runs_helpers())
            return
        runs, more = await admin_runs_view.search(self.common.engine, query)
        self.render("admin_runs.html", runs=runs, args=args, query=query, more=more, error=None,
                    **self.runs_helpers())

    @staticmethod
    def runs_helpers() -> dict:
        return {**display.HELPERS, "url": admin_runs_view.url, "sort_url": admin_runs_view.sort_url,
                "statuses": (*sorted(STATUSES), *sorted(admin_runs_view.LIMITS)),
                "sizes": admin_runs_view.PAGE_SIZES}


class RunPage(AdminPage):
    async def get(self, run_id: str) -> None:
        await self.require_admin()
        run = await queries.get_run(self.common.engine, run_id)
        if run is None:
            raise tornado.web.HTTPError(404, "There is no traced run with this id.")
        self.render("admin_run.html", run=run,
                    user=await admin_runs_view.user_label(self.common.engine, run["user_id"]),
                    **display.HELPERS)


def routes(common: Common, api_token: str | None, limiter: CredentialLimiter) -> list[tuple]:
    deps = {"common": common, "api_token": api_token, "limiter": limiter}
    return [(r"/admin/login", LoginHandler, deps),
            (r"/admin/runs", RunsPage, deps),
            (r"/admin/runs/([0-9a-f]{32})", RunPage, deps)]
