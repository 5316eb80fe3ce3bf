"""The admins' live events: schedule one (its lesson's kernel pool grows ahead of it), see the
coming ones and the pools' sizes now, cancel one. Every change is in the audit log."""
from __future__ import annotations

import datetime as dt

import tornado.web

from server.accounts.limiter import CredentialLimiter
from server.admin import audit, live_events
from server.admin.live_events import LivePools
from server.handlers.admin_pages import AdminPage
from server.handlers.base import Common
from server.library import Shelf


class LiveEventsAdmin(AdminPage):
    def initialize(self, common: Common, api_token: str | None, limiter: CredentialLimiter,
                   library: Shelf, live: LivePools) -> None:
        super().initialize(common, api_token, limiter)
        self.library = library
        self.live = live


class LiveEventsPage(LiveEventsAdmin):
    async def get(self) -> None:
        await self.require_admin()
        await self.page(error=None, form={})

    async def post(self) -> None:
        actor = await self.require_admin()
        form = {name: self.get_body_argument(name, "")
                for name in ("starts_at", "minutes", "lesson", "learners")}
        now = dt.datetime.now(dt.timezone.utc)
        try:
            event = live_events.parse(form, lambda slug: self.library.current.catalog.lesson(slug)
                                      is not None, now)
        except live_events.BadEvent as exc:
            self.set_status(400)
            await self.page(error=str(exc), form=form)
            return
        event_id = await live_events.schedule(self.common.engine, event, actor)
        await audit.record(self.common.engine, actor, "live-event scheduled", f"event {event_id}",
                           f"{event.lesson_slug} at {event.starts_at.isoformat()} for "
                           f"{event.minutes} min, {event.learners} learners",
                           self.request.remote_ip or "")
        self.live.poke()
        self.redirect("/admin/live-events")

    async def page(self, error: str | None, form: dict[str, str]) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        self.render("admin_live_events.html", error=error, form=form, now=now,
                    events=await live_events.not_over(self.common.engine, now),
                    lessons=[lesson for course in self.library.current.catalog.courses
                             for lesson in course.lessons],
                    pools={name: (pool.size, pool.ready)
                           for name, pool in self.live.manager.pools.items()},
                    lead_minutes=self.live.lead / 60)


class CancelLiveEvent(LiveEventsAdmin):
    async def post(self, event_id: str) -> None:
        actor = await self.require_admin()
        event = await live_events.cancel(self.common.engine, int(event_id))
        if event is None:
            raise tornado.web.HTTPError(404, "There is no live event with this id.")
        await audit.record(self.common.engine, actor, "live-event cancelled", f"event {event.id}",
                           f"{event.lesson_slug} at {event.starts_at.isoformat()}",
                           self.request.remote_ip or "")
        self.live.poke()
        self.redirect("/admin/live-events")


def routes(common: Common, api_token: str | None, limiter: CredentialLimiter, library: Shelf,
           live: LivePools) -> list[tuple]:
    deps = {"common": common, "api_token": api_token, "limiter": limiter, "library": library,
            "live": live}
    return [(r"/admin/live-events", LiveEventsPage, deps),
            (r"/admin/live-events/([0-9]{1,12})/cancel", CancelLiveEvent, deps)]
