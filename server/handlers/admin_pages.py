"""The admins' trace viewer: run search and one run's timeline, as HTML.

Same data as `/api/admin/runs`. An admin signs in once by pasting the API
token (compared in constant time) and gets a short-lived signed, HttpOnly
session cookie; a learner who is marked is_admin in the database gets in too.
"""
from __future__ import annotations

import urllib.parse

import tornado.escape
import tornado.web

from server.accounts.limiter import CredentialLimiter
from server.accounts.redirects import local_redirect
from server.handlers.admin_runs import BadFilter, parse_filter, token_verdict
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

    async def require_admin(self) -> None:
        if self.get_signed_cookie(ADMIN_COOKIE, max_age_days=SESSION_DAYS) == b"1":
            return
        user = await self.load_user()
        if user is not None and user.is_admin:
            return
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
            run_filter = parse_filter(args)
        except BadFilter as exc:
            raise tornado.web.HTTPError(400, str(exc)) from None
        runs = await queries.search_runs(self.common.engine, run_filter)
        older = urllib.parse.urlencode({**args, "offset": run_filter.offset + run_filter.limit}) \
            if len(runs) == run_filter.limit else None
        self.render("admin_runs.html", runs=runs, args=args, older=older)


class RunPage(AdminPage):
    async def get(self, run_id: str) -> None:
        await self.require_admin()
        run = await queries.get_run(self.common.engine, run_id)
        if run is None:
            raise tornado.web.HTTPError(404, "There is no traced run with this id.")
        self.render("admin_run.html", run=run)


def routes(common: Common, api_token: str | None, limiter: CredentialLimiter) -> list[tuple]:
    deps = {"common": common, "api_token": api_token, "limiter": limiter}
    return [(r"/admin/login", LoginHandler, deps),
            (r"/admin/runs", RunsPage, deps),
            (r"/admin/runs/([0-9a-f]{32})", RunPage, deps)]
