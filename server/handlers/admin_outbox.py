"""The admins' outbox: every email recorded, its status and attempts, and in embedded mode
(no LS_SMTP_URL) its text, since nothing was sent."""
from __future__ import annotations

from server.accounts.limiter import CredentialLimiter
from server.handlers.admin_pages import AdminPage
from server.handlers.base import Common
from server.store import emails


class OutboxPage(AdminPage):
    async def get(self) -> None:
        await self.require_admin()
        self.render("admin_outbox.html", emails=await emails.recent(self.common.engine),
                    smtp=self.settings_.smtp_url is not None)


def routes(common: Common, api_token: str | None, limiter: CredentialLimiter) -> list[tuple]:
    return [(r"/admin/outbox", OutboxPage,
             {"common": common, "api_token": api_token, "limiter": limiter})]
