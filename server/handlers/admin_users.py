"""The admin users and billing pages, and paid access granted or revoked by hand (audited):
`/admin/users`, `/admin/users/{id}`, `POST /admin/users/{id}/grant|revoke`. Admin only."""
from __future__ import annotations

import datetime as dt
import time

import tornado.web

from server.admin import audit, display, users
from server.handlers.admin_pages import AdminPage
from server.handlers.admin_runs import BadFilter
from server.handlers.base import Common
from server.accounts.limiter import CredentialLimiter
from server.store import grants

USER_ID = r"([0-9a-zA-Z]{1,64})"


class UsersAdmin(AdminPage):
    def access_of(self, line: users.UserLine) -> str:
        return users.access_state(line, time.time(), self.settings_.billing_grace_days)

    def helpers(self) -> dict:
        return {**display.HELPERS, "access_of": self.access_of, "url": users.url,
                "roles": users.ROLES}

    async def show(self, user_id: str, error: str | None = None) -> None:
        line = await users.one(self.common.engine, user_id)
        if line is None:
            raise tornado.web.HTTPError(404, "There is no user with this id.")
        self.render("admin_user.html", user=line, error=error,
                    grant=await grants.get(self.common.engine, user_id),
                    events=await users.billing_events(self.common.engine, user_id),
                    audit_log=await users.audit_of(self.common.engine, user_id),
                    **self.helpers())


class UsersPage(UsersAdmin):
    async def get(self) -> None:
        await self.require_admin()
        args = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        try:
            query = users.parse(args)
        except BadFilter as exc:
            self.set_status(400)
            self.render("admin_users.html", rows=[], args=args, query=None, more=False,
                        error=str(exc), **self.helpers())
            return
        rows, more = await users.search(self.common.engine, query)
        self.render("admin_users.html", rows=rows, args=args, query=query, more=more, error=None,
                    **self.helpers())


class UserPage(UsersAdmin):
    async def get(self, user_id: str) -> None:
        await self.require_admin()
        await self.show(user_id)


class GrantAccess(UsersAdmin):
    """POST until=YYYY-MM-DD[, reason]: paid lessons open for the user until then."""

    async def post(self, user_id: str) -> None:
        actor = await self.require_admin()
        if await users.one(self.common.engine, user_id) is None:
            raise tornado.web.HTTPError(404, "There is no user with this id.")
        try:
            until = users.grant_until(self.get_body_argument("until", ""),
                                      dt.datetime.now(dt.timezone.utc))
        except BadFilter as exc:
            self.set_status(400)
            await self.show(user_id, error=str(exc))
            return
        reason = self.get_body_argument("reason", "").strip()[:500]
        await grants.put(self.common.engine, user_id, until, actor, reason)
        await audit.record(self.common.engine, actor, "grant-access", user_id,
                           f"until {until.isoformat()}" + (f": {reason}" if reason else ""),
                           self.request.remote_ip or "")
        self.redirect(f"/admin/users/{user_id}")


class RevokeAccess(UsersAdmin):
    """POST: the user's grant ends now (a subscription is Stripe's to end)."""

    async def post(self, user_id: str) -> None:
        actor = await self.require_admin()
        if not await grants.delete(self.common.engine, user_id):
            raise tornado.web.HTTPError(404, "This user has no access granted by hand.")
        await audit.record(self.common.engine, actor, "revoke-access", user_id,
                           ip=self.request.remote_ip or "")
        self.redirect(f"/admin/users/{user_id}")


def routes(common: Common, api_token: str | None, limiter: CredentialLimiter) -> list[tuple]:
    deps = {"common": common, "api_token": api_token, "limiter": limiter}
    return [(r"/admin/users", UsersPage, deps),
            (rf"/admin/users/{USER_ID}", UserPage, deps),
            (rf"/admin/users/{USER_ID}/grant", GrantAccess, deps),
            (rf"/admin/users/{USER_ID}/revoke", RevokeAccess, deps)]
