"""`/admin/operations`: live kernels (ended through the overview's action), pools to drain
and resume, failed jobs to retry or discard, feature flags to toggle, and reloading the
lessons with the check report.
Every action is audited before its answer; every form carries the XSRF token."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import tornado.web

from kernels.manager import KernelManager
from server.accounts.limiter import CredentialLimiter
from server.admin import audit, display, flags as feature_flags, operations
from server.admin.flags import FeatureFlags
from server.handlers.admin_pages import AdminPage
from server.handlers.base import Common
from server.library import Shelf
from workers.failed_jobs import FailedJobs, NoSuchJob

log = logging.getLogger("lessonserver.admin")
PAGE = "/admin/operations"


@dataclasses.dataclass(frozen=True)
class Ops:
    """What the operations page steers: given once by the app."""
    manager: KernelManager
    jobs: FailedJobs | None          # None in embedded mode: jobs run in-process, none are kept
    shelf: Shelf
    lessons_dir: Path
    kernels: frozenset[str]          # the installed plugins, which lessons may name
    cache: object | None
    flags: FeatureFlags


class OpsHandler(AdminPage):
    def initialize(self, common: Common, api_token: str | None, limiter: CredentialLimiter,
                   ops: Ops) -> None:
        super().initialize(common, api_token, limiter)
        self.ops = ops

    async def audited(self, actor: str, action: str, target: str, detail: str = "") -> None:
        await audit.record(self.common.engine, actor, action, target, detail,
                           self.request.remote_ip or "")

    async def show(self, reload: operations.Reload | None = None) -> None:
        failed, jobs_error = None, None
        if self.ops.jobs is not None:
            try:
                failed = await self.ops.jobs.listing()
            except Exception as exc:       # Redis away: the rest of the page still helps
                jobs_error = f"The job queues cannot be read now: {exc}"
        manager = self.ops.manager
        self.render("admin_operations.html", kernel_list=sorted(manager.list(),
                                                                 key=lambda k: k.created_at),
                    back=PAGE, pools=operations.pool_rows(manager.pools), failed=failed,
                    jobs_error=jobs_error, reload=reload,
                    lessons=operations.lesson_count(self.ops.shelf.current.catalog),
                    lessons_dir=str(self.ops.lessons_dir), flags=self.ops.flags.states(),
                    refresh=feature_flags.REFRESH, **display.HELPERS)


class OperationsPage(OpsHandler):
    async def get(self) -> None:
        await self.require_admin()
        await self.show()


class PoolAction(OpsHandler):
    """POST /admin/pools/{plugin}/drain|resume."""

    async def post(self, plugin: str, action: str) -> None:
        actor = await self.require_admin()
        pool = self.ops.manager.pools.get(plugin)
        if pool is None:
            raise tornado.web.HTTPError(404, f"There is no pool for the language {plugin!r}.")
        await self.audited(actor, f"{action}-pool", plugin,
                           f"{pool.ready} ready, {pool.starting} starting, size {pool.size}")
        pool.drain() if action == "drain" else pool.resume()
        self.redirect(PAGE)


class JobAction(OpsHandler):
    """POST /admin/jobs/{queue}/retry|discard with the job's id in the form."""

    async def post(self, queue: str, action: str) -> None:
        actor = await self.require_admin()
        if self.ops.jobs is None:
            raise tornado.web.HTTPError(404, "Embedded mode keeps no failed jobs.")
        job_id = self.get_body_argument("job", "")
        await self.audited(actor, f"{action}-job", f"{queue}/{job_id}")
        act = self.ops.jobs.retry if action == "retry" else self.ops.jobs.discard
        try:
            await act(queue, job_id)
        except NoSuchJob as exc:
            raise tornado.web.HTTPError(404, str(exc)) from None
        self.redirect(PAGE)


class ReloadLessons(OpsHandler):
    """POST /admin/lessons/reload: the page again, with the check report."""

    async def post(self) -> None:
        actor = await self.require_admin()
        ops = self.ops
        done = await operations.reload_lessons(ops.shelf, ops.lessons_dir, ops.kernels,
                                               self.common.engine, ops.cache,
                                               force=self.get_body_argument("force", "") == "1")
        outcome = (f"refused: {done.refused}" if done.refused else
                   f"served: {done.after} lessons (were {done.before})")
        await self.audited(actor, "reload-lessons", str(ops.lessons_dir),
                           f"{outcome}; {len(done.report.errors)} errors")
        log.info("lessons reloaded", extra={"fields": {"by": actor, "outcome": outcome}})
        await self.show(reload=done)


class FlagToggle(OpsHandler):
    """POST /admin/flags/{name} with value=on|off."""

    async def post(self, name: str) -> None:
        actor = await self.require_admin()
        try:
            flag, enabled = feature_flags.parse_toggle(name, self.get_body_argument("value", ""))
        except feature_flags.UnknownFlag as exc:
            raise tornado.web.HTTPError(404, exc.args[0]) from None
        except ValueError as exc:
            raise tornado.web.HTTPError(400, str(exc)) from None
        await self.audited(actor, "set-flag", flag.name, "on" if enabled else "off")
        await self.ops.flags.set(flag, enabled, actor)
        self.redirect(PAGE)


def routes(common: Common, api_token: str | None, limiter: CredentialLimiter,
           ops: Ops | None) -> list[tuple]:
    deps = {"common": common, "api_token": api_token, "limiter": limiter, "ops": ops}
    return [(r"/admin/operations", OperationsPage, deps),
            (r"/admin/pools/([a-z0-9_-]{1,64})/(drain|resume)", PoolAction, deps),
            (r"/admin/jobs/([a-z0-9_-]{1,64})/(retry|discard)", JobAction, deps),
            (r"/admin/lessons/reload", ReloadLessons, deps),
            (r"/admin/flags/([a-z0-9_]{1,64})", FlagToggle, deps)]
