"""`serve --dev` only: a lesson page long-polls here and reloads itself when its lesson changes."""
from __future__ import annotations

from server.dev_reload import DevReload
from server.handlers.base import BaseHandler, Common, json_response

LONG_POLL_SECONDS = 25.0   # under the usual 30-60 s idle timeouts of proxies


class LessonVersionHandler(BaseHandler):
    """GET /_dev/lessons/<slug>/version?known=V: answers {"version": W} as soon as W != V."""
    route = "dev_version"

    def initialize(self, common: Common, reload: DevReload) -> None:
        super().initialize(common)
        self.reload = reload

    async def get(self, slug: str) -> None:
        known = self.get_query_argument("known", "")
        version = await self.reload.wait_for_change(slug, known, LONG_POLL_SECONDS)
        self.set_header("Cache-Control", "no-store")
        json_response(self, {"version": version})


def routes(common: Common, reload: DevReload | None) -> list:
    if reload is None:
        return []
    return [(r"/_dev/lessons/([A-Za-z0-9_-]+)/version", LessonVersionHandler,
             {"common": common, "reload": reload})]
