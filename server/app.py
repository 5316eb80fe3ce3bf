"""Start-up as a flat sequence of steps, the route table, and a clean shutdown."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import tornado.httpserver
import tornado.web
from sqlalchemy.ext.asyncio import AsyncEngine

from server import db, logs
from server.accounts.client_ip import Network, client_ip, client_scheme
from server.accounts.connections import PerIpCap
from server.accounts.deletion import AccountDeletion
from server.accounts.limiter import CredentialLimiter, CredentialRules, NewLearnerLimiter
from server.accounts.redis_rates import open_rate_store
from server.admin import figures
from server.admin.live_events import LivePools
from server.admin.flags import FeatureFlags
from server.cache import keys as cache_keys
from server.cache.cache import Cache
from server.cache.freshness import Policy
from server.cache.local import LocalStore
from server.cache.shared import RedisStore
from server.billing.intake import Intake
from server.billing.provider import BillingProvider, open_billing
from server.billing.watch import AccessWatch, kernel_closer
from server.config import PROJECT_ROOT, Settings
from server.course.loader import load_catalog
from server.course.model import Bounds, Catalog
from kernels.manager import KernelManager
from kernels.plugins import Plugin, discover
from kernels.sandbox import create_sandbox
from kernels.settings import KernelSettings
from server.learning.exercise_runner import ExerciseRunner
from server.handlers import (accounts, admin_learning, admin_live_events, admin_ops, admin_outbox,
                             admin_overview, admin_pages, admin_runs, admin_users,
                             billing as billing_pages, dev as dev_pages, kernels_api)
from server.handlers.base import Common, NotFoundHandler, StaticFiles
from server.handlers.exercise_ws import ExerciseSocket
from server.learning.lesson_sessions import LessonSessions
from server.learning.pending_progress import SPOOL_DIR as PROGRESS_SPOOL, PendingProgress
from server.handlers.health import HealthHandler, MetricsHandler, docker_ping
from server.handlers.pages import CatalogHandler, LessonHandler, LessonsApiHandler
from server.handlers.shared_pages import SharedPages
from server.dev_reload import DevReload
from server.library import Library, Shelf, build_library
from server.mail.mailer import Mailer
from server.metrics import Metrics
from server.secrets import Secrets, load_secrets
from server.store import catalog as catalog_store
from server.store import users
from server.tracing.buffer import TraceBuffer
from server.tracing.tracer import KernelEventRouter
from workers import job_metrics
from workers.failed_jobs import FailedJobs
from workers.queue import QUEUES, open_jobs

log = logging.getLogger("lessonserver")
TEMPLATES = Path(__file__).parent / "templates"
STATIC = PROJECT_ROOT / "static"


@dataclasses.dataclass
class Runtime:
    """Everything `serve` started, so that it can be stopped in reverse order."""
    settings: Settings
    secrets: Secrets
    engine: AsyncEngine
    metrics: Metrics
    library: Shelf                 # the served course; a reload swaps it (admin operations)
    plugins: tuple[Plugin, ...] = ()
    manager: KernelManager | None = None
    runner: ExerciseRunner | None = None
    sessions: LessonSessions | None = None
    mailer: Mailer | None = None
    redis: object | None = None
    flags: FeatureFlags | None = None
    cache: Cache | None = None
    figures: Cache | None = None   # the dashboard's aggregates: the same store, a shorter TTL
    billing: BillingProvider | None = None
    intake: Intake | None = None
    jobs: object | None = None
    traces: TraceBuffer | None = None
    progress: PendingProgress | None = None
    live: LivePools | None = None
    dev: DevReload | None = None
    closers: list[Callable[[], Awaitable[None]]] = dataclasses.field(default_factory=list)

    async def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                await closer()
            except Exception:  # keep closing the rest; the failure is logged
                log.exception("error during shutdown")


def load_library(settings: Settings, plugins: tuple[Plugin, ...]) -> Library:
    """Parse the course; a broken lesson is logged with file and line and left out."""
    catalog: Catalog = load_catalog(settings.lessons_dir, frozenset(p.name for p in plugins),
                                    Bounds.of(settings))
    for error in catalog.errors:
        log.error("lesson skipped", extra={"fields": {"error": str(error)}})
    lessons = sum(len(course.lessons) for course in catalog.courses)
    log.info("course loaded", extra={"fields": {"dir": settings.lessons_dir, "lessons": lessons,
                                                "errors": len(catalog.errors)}})
    return build_library(catalog)


async def start_runtime(settings: Settings) -> Runtime:
    secrets = load_secrets(settings)
    if settings.database_url is None:
        # Embedded mode creates its SQLite schema itself; a shared Postgres is
        # migrated by the operator with `lessonserver db upgrade` before rollout.
        await asyncio.to_thread(db.upgrade, settings)
    engine = db.create_engine(settings)
    plugins = discover()
    runtime = Runtime(settings, secrets, engine, Metrics(backend=settings.sandbox),
                      Shelf(load_library(settings, plugins)), plugins)
    runtime.closers.append(engine.dispose)
    try:
        await catalog_store.sync_catalog(
            engine, catalog_store.entries_from(runtime.library.current.catalog))
        if settings.redis_url:
            import redis.asyncio
            runtime.redis = redis.asyncio.from_url(settings.redis_url)
            runtime.closers.append(runtime.redis.aclose)
        await start_cache(runtime)
        runtime.flags = FeatureFlags(engine)
        await runtime.flags.start()
        runtime.closers.append(runtime.flags.close)
        await start_kernels(runtime)
        start_live_events(runtime)
        await start_billing(runtime)
        if settings.dev:
            await start_dev_reload(runtime)
    except BaseException:
        await runtime.close()
        raise
    return runtime


async def start_cache(runtime: Runtime) -> None:
    """Redis behind an in-process tier when there is Redis; the in-process tier alone when not."""
    settings = runtime.settings
    policy = Policy(ttl=settings.cache_ttl, grace=settings.cache_grace)
    figures_policy = figures.policy(settings.cache_ttl, settings.cache_grace)
    if runtime.redis is None:
        runtime.cache = Cache.embedded(policy, runtime.metrics)
        runtime.figures = Cache.embedded(figures_policy, runtime.metrics)
    else:
        store = RedisStore(runtime.redis, f"lessonserver:{settings.instance}:cache:",
                           tombstone_seconds=settings.cache_ttl + settings.cache_grace)
        runtime.cache = Cache(policy, store, runtime.metrics, near=LocalStore())
        runtime.figures = Cache(figures_policy, store, runtime.metrics, near=LocalStore())
    runtime.closers += [runtime.cache.close, runtime.figures.close]
    await cache_keys.catalog_changed(runtime.cache)   # this process may serve a new course


async def start_kernels(runtime: Runtime) -> None:
    """Trace pipeline first (the manager reports into it), then sandbox, manager and pools."""
    settings = runtime.settings
    jobs = runtime.jobs = open_jobs(settings)
    await jobs.start()
    runtime.closers.append(jobs.close)
    runtime.mailer = Mailer(runtime.engine, jobs.send_email, settings.public_url)
    traces = TraceBuffer.for_settings(settings, jobs.send_trace_batch)
    await traces.start()
    runtime.closers.append(traces.close)
    emails = job_metrics.EmailStatsReader(settings.instance, runtime.redis)
    await emails.start()
    runtime.closers.append(emails.close)
    runtime.metrics.watch_emails(emails.current, job_metrics.SECONDS_BUCKETS)

    def emit(event) -> None:             # every trace event, and the first output's time
        runtime.metrics.observe_trace(event)
        traces.emit(event)
    kernel_settings = KernelSettings.of(settings)     # the kernel layer's part, and no more
    sandbox = create_sandbox(kernel_settings)
    runtime.closers.append(sandbox.close)
    router = KernelEventRouter(emit)   # also traces the runs of Jupyter clients
    runtime.manager = KernelManager(kernel_settings, sandbox, runtime.plugins,
                                    on_event=[router, runtime.metrics.observe_kernel_event])
    runtime.metrics.watch_kernels(lambda: len(runtime.manager.list()),
                                  lambda: runtime.manager.queue_length,
                                  lambda: {n: p.ready for n, p in runtime.manager.pools.items()})
    await runtime.manager.startup()
    runtime.closers.append(runtime.manager.close)
    runtime.traces = traces
    runtime.progress = PendingProgress(runtime.engine, settings.data_dir / PROGRESS_SPOOL)
    await runtime.progress.start()
    runtime.closers.append(runtime.progress.close)
    runtime.runner = ExerciseRunner(runtime.manager, emit, router,
                                    runtime.metrics, commit=traces.commit, progress=runtime.progress)
    runtime.sessions = LessonSessions(runtime.manager, grace=settings.reconnect_grace)
    runtime.manager.observers.append(runtime.sessions.observe)
    runtime.closers.append(runtime.sessions.close)


def start_live_events(runtime: Runtime) -> None:
    """Scheduled live events size the kernel pools ahead of them (server/admin/live_events.py)."""
    def kernel_of(slug: str) -> str | None:
        lesson = runtime.library.current.catalog.lesson(slug)
        return lesson.kernel if lesson is not None else None

    runtime.live = LivePools(runtime.engine, runtime.manager, kernel_of,
                             runtime.settings.live_lead, runtime.settings.live_every)
    runtime.live.start()
    runtime.closers.append(runtime.live.close)


async def start_dev_reload(runtime: Runtime) -> None:
    """`serve --dev`: a changed lesson file is served within a second, without a restart."""
    async def swapped(library: Library) -> None:
        await cache_keys.catalog_changed(runtime.cache)
        await catalog_store.sync_catalog(runtime.engine, catalog_store.entries_from(library.catalog))

    runtime.dev = DevReload(runtime.library, runtime.settings.lessons_dir,
                            lambda: load_library(runtime.settings, runtime.plugins), swapped)
    await runtime.dev.start()
    runtime.closers.append(runtime.dev.close)


async def start_billing(runtime: Runtime) -> None:
    """Webhook intake when Stripe is configured; the watch that closes kernels when access ends."""
    runtime.billing = open_billing(runtime.settings)
    if runtime.billing is None:
        return
    runtime.intake = Intake(runtime.engine, runtime.billing, runtime.jobs.send_billing_events)
    watch = AccessWatch(runtime.engine, kernel_closer(runtime.manager),
                        runtime.settings.billing_grace_days)
    await watch.start()
    runtime.closers.append(watch.close)


def health_checks(runtime: Runtime) -> dict[str, Callable[[], Awaitable[None]]]:
    checks: dict[str, Callable[[], Awaitable[None]]] = {"database": lambda: db.ping(runtime.engine)}
    if runtime.redis is not None:
        checks["redis"] = runtime.redis.ping
    if runtime.settings.sandbox == "docker":
        # The same engine the sandbox uses: Docker's own DOCKER_HOST convention.
        checks["docker"] = docker_ping(os.environ.get("DOCKER_HOST"))
    return checks


def operations(runtime: Runtime) -> admin_ops.Ops:
    """What the operations page steers; failed jobs are kept only where RQ runs them."""
    jobs = None
    if not runtime.settings.embedded:
        jobs = FailedJobs(runtime.settings.redis_url, QUEUES)
        runtime.closers.append(jobs.close)
    return admin_ops.Ops(runtime.manager, jobs, runtime.library, runtime.settings.lessons_dir,
                         frozenset(p.name for p in runtime.plugins), runtime.cache, runtime.flags)


def degraded_parts(runtime: Runtime) -> dict[str, str]:
    """What is working around an outage now, in words, for /healthz."""
    parts = {}
    if runtime.progress is not None and runtime.progress.waiting:
        parts["progress"] = (f"{runtime.progress.waiting} progress writes wait for the database; "
                             "runs go on")
    if runtime.traces is not None and runtime.traces.spooling:
        parts["traces"] = "trace batches are kept on local disk until the queue takes them again"
    return parts


class LessonApp(tornado.web.Application):
    """The Tornado app, with each request's client address read as LS_TRUSTED_PROXIES allows.

    Tornado's own `xheaders` believes X-Forwarded-For from anyone; here the
    peer's address stands unless the peer is one of our proxies.
    """

    def __init__(self, *args, trusted_proxies: tuple[Network, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.trusted_proxies = trusted_proxies
        self.shared_pages = SharedPages(self.settings)

    def find_handler(self, request, **kwargs):
        peer = request.remote_ip
        request.remote_ip = client_ip(peer, request.headers, self.trusted_proxies)
        request.protocol = client_scheme(peer, request.protocol, request.headers,
                                         self.trusted_proxies)
        return super().find_handler(request, **kwargs)


def make_app(runtime: Runtime) -> tornado.web.Application:
    settings = runtime.settings
    # One budget for every `serve` process when there is Redis (server/accounts/redis_rates.py).
    rates = open_rate_store(settings.redis_url, settings.instance)
    runtime.closers.append(rates.close)
    common = Common(settings, runtime.engine, runtime.metrics,
                    NewLearnerLimiter(rates, settings.new_learners_per_ip),
                    users.AnonymousRows(runtime.engine))
    pages = {"common": common, "library": runtime.library}
    cached = {**pages, "cache": runtime.cache}
    limiter = CredentialLimiter(rates,
                                CredentialRules(settings.auth_per_ip, settings.auth_per_account))
    ws_cap = PerIpCap(settings.ws_per_ip)
    routes = [
        (r"/", CatalogHandler, cached),
        (r"/lessons/([A-Za-z0-9_-]+)", LessonHandler, cached),
        (r"/lessons/([A-Za-z0-9_-]+)/ws", ExerciseSocket,
         {**pages, "manager": runtime.manager, "runner": runtime.runner,
          "sessions": runtime.sessions, "ws_cap": ws_cap, "flags": runtime.flags}),
        (r"/api/lessons", LessonsApiHandler, cached),
        *billing_pages.routes(common, runtime.billing, runtime.intake),
        *dev_pages.routes(common, runtime.dev),
        *admin_runs.routes(api_token=runtime.secrets.api_token, engine=runtime.engine),
        *admin_pages.routes(common, runtime.secrets.api_token, limiter),
        *admin_outbox.routes(common, runtime.secrets.api_token, limiter),
        *admin_live_events.routes(common, runtime.secrets.api_token, limiter, runtime.library,
                                  runtime.live),
        *admin_learning.routes(common, runtime.secrets.api_token, limiter, runtime.library,
                               runtime.figures),
        *admin_users.routes(common, runtime.secrets.api_token, limiter),
        *admin_overview.routes(common, runtime.secrets.api_token, limiter, admin_overview.Sources(
            runtime.manager, health_checks(runtime), runtime.redis, QUEUES, runtime.figures)),
        *admin_ops.routes(common, runtime.secrets.api_token, limiter, operations(runtime)),
        *accounts.routes(common, limiter, runtime.mailer, AccountDeletion(
            runtime.engine, kernel_closer(runtime.manager),
            runtime.jobs.send_subscription_cancel if runtime.billing else None), runtime.flags),
        *kernels_api.routes(runtime.manager, runtime.plugins, common, runtime.secrets.api_token,
                            limiter, ws_cap),
        (r"/healthz", HealthHandler, {"common": common, "checks": health_checks(runtime),
                                      "degraded": lambda: degraded_parts(runtime)}),
        (r"/metrics", MetricsHandler, {"common": common, "token": settings.metrics_token}),
    ]
    return LessonApp(
        routes,
        trusted_proxies=settings.trusted_proxies,
        template_path=str(TEMPLATES),
        static_path=str(STATIC),
        static_handler_class=StaticFiles,   # also serves /favicon.ico and /robots.txt from static/
        cookie_secret=runtime.secrets.cookie_secret,
        xsrf_cookies=True,
        xsrf_cookie_kwargs={"samesite": "Strict", "secure": settings.secure_cookies},
        log_function=logs.log_request,
        default_handler_class=NotFoundHandler,
        default_handler_args={"common": common},
        compress_response=True,
    )


def http_server(app: tornado.web.Application, settings: Settings) -> tornado.httpserver.HTTPServer:
    """Bounded connections: a client that stalls in its headers, its body or between requests is
    dropped, and oversized requests are refused. X-Forwarded-* is read by LessonApp, not here."""
    return tornado.httpserver.HTTPServer(
        app, xheaders=False,
        idle_connection_timeout=settings.http_idle_timeout,   # also the header timeout
        body_timeout=settings.http_body_timeout,
        max_header_size=settings.http_max_header_bytes,
        max_body_size=settings.http_max_body_bytes)


async def run_server(settings: Settings, ready: Callable[[int], None] | None = None,
                     stop: asyncio.Event | None = None) -> None:
    """Serve until `stop` is set (by SIGINT/SIGTERM when not given)."""
    runtime = await start_runtime(settings)
    try:
        server = http_server(make_app(runtime), settings)
        sockets = tornado.netutil.bind_sockets(settings.port, settings.host)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        stop = stop or _stop_on_signals()
        log.info("listening", extra={"fields": {"url": f"http://{settings.host}:{port}/",
                                                "sandbox": settings.sandbox,
                                                "mode": "embedded" if settings.embedded else "production"}})
        if runtime.secrets.api_token_file:
            log.info("API token generated", extra={"fields": {"file": runtime.secrets.api_token_file}})
        if ready:
            ready(port)
        await stop.wait()
        await stop_serving(runtime, server)
    finally:
        await runtime.close()   # runs still going are cancelled; their traces end `interrupted`


async def stop_serving(runtime: Runtime, server: tornado.httpserver.HTTPServer) -> None:
    """No new connections or runs; the runs in flight get LS_SHUTDOWN_GRACE to finish."""
    grace = runtime.settings.shutdown_grace
    log.info("stopping", extra={"fields": {"grace_s": grace}})
    server.stop()
    if runtime.sessions is not None:
        runtime.sessions.stop_accepting()
        left = await runtime.sessions.drain(grace)
        if left:
            log.warning("runs interrupted by the shutdown", extra={"fields": {"runs": left}})
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(server.close_all_connections(), 5)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def serve(settings: Settings) -> None:
    logs.setup(settings.log_level)
    asyncio.run(run_server(settings))
    log.info("stopped")     # after asyncio.run finished its executors: the process ends now
