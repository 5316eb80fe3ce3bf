"""`/admin`: the overview (kernels, pools, runs, verdicts, limits, errors, queues, health and
the audit log), and the one action on it, ending a kernel, which is audited."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence

import tornado.web

from kernels.manager import KernelManager, UnknownKernel
from server.accounts.limiter import CredentialLimiter
from server.accounts.redirects import local_redirect
from server.admin import audit, display, figures, overview
from server.cache.cache import Cache
from server.handlers.admin_pages import AdminPage
from server.handlers.base import Common
from server.handlers.health import run_check

Check = Callable[[], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Sources:
    """What the overview reads, beyond the database: given once by the app."""
    manager: KernelManager
    checks: Mapping[str, Check]
    redis: object | None            # redis.asyncio client, or None in embedded mode
    queues: Sequence[str]
    figures: Cache                  # the run figures, computed once per TTL for every admin


class WithSources(AdminPage):
    def initialize(self, common: Common, api_token: str | None, limiter: CredentialLimiter,
                   sources: Sources) -> None:
        super().initialize(common, api_token, limiter)
        self.sources = sources


class OverviewPage(WithSources):
    async def get(self) -> None:
        await self.require_admin()
        try:
            range_name = overview.parse_range(self.get_query_argument("range", None))
        except overview.BadRange as exc:
            raise tornado.web.HTTPError(400, str(exc)) from None
        now = dt.datetime.now(dt.timezone.utc)
        names = list(self.sources.checks)
        health = dict(zip(names, await asyncio.gather(
            *(run_check(self.sources.checks[n]) for n in names))))
        queues = None
        if self.sources.redis is not None and health.get("redis") == "ok":
            queues = await overview.queue_depths(self.sources.redis, self.sources.queues)
        runs = await figures.run_stats(self.sources.figures, self.common.engine, range_name)
        stats = runs.value
        manager = self.sources.manager
        self.render("admin_overview.html", range_name=range_name, ranges=list(overview.RANGES),
                    now=now.isoformat(), stats_at=runs.computed_at.isoformat(),
                    kernels=overview.kernels_by(manager.list()),
                    kernel_list=sorted(manager.list(), key=lambda k: k.created_at),
                    pools={name: (pool.ready, pool.starting) for name, pool in manager.pools.items()},
                    stats=stats, chart=overview.bars(stats.buckets), health=health, queues=queues,
                    audit_log=await audit.recent(self.common.engine), percent=overview.percent,
                    **display.HELPERS)


class EndKernel(WithSources):
    """POST /admin/kernels/{id}/end: shut a kernel down (its owner's page gets a new one)."""

    async def post(self, kernel_id: str) -> None:
        actor = await self.require_admin()
        kernel = self.sources.manager.get(kernel_id)
        if kernel is None:
            raise tornado.web.HTTPError(404, "There is no live kernel with this id.")
        await audit.record(self.common.engine, actor, "end-kernel", kernel_id,
                           f"{kernel.plugin} kernel of owner {kernel.owner[:8]}",
                           self.request.remote_ip or "")
        try:
            await self.sources.manager.shutdown(kernel_id, f"ended by admin {actor}")
        except UnknownKernel:
            pass                     # it ended on its own meanwhile: the same outcome
        self.redirect(local_redirect(self.get_body_argument("next", ""), default="/admin"))


def routes(common: Common, api_token: str | None, limiter: CredentialLimiter,
           sources: Sources) -> list[tuple]:
    deps = {"common": common, "api_token": api_token, "limiter": limiter, "sources": sources}
    return [(r"/admin", OverviewPage, deps),
            (r"/admin/kernels/([0-9a-zA-Z-]{1,64})/end", EndKernel, deps)]
