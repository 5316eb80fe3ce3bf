"""`/healthz` for load balancers and `/metrics` for Prometheus."""
from __future__ import annotations

import asyncio
import hmac
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping

import tornado.web

from server.handlers.base import BaseHandler, Common, json_response
from server.metrics import CONTENT_TYPE

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT = 2.0


async def run_check(check: Check) -> str:
    """"ok", or what went wrong, in a line."""
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
        return "ok"
    except asyncio.TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:.0f}s"
    except Exception as exc:  # the check's failure is the report, whatever it is
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


# Dependencies this process works around while they are away. The database is shared by every
# server process: when it is away it is away for all of them, and a 503 would take every
# process out of the load balancer at once, although each still serves lessons and verdicts
# (progress waits in its spool, traces in the write-ahead log). So its absence is a 200 whose
# status is "degraded". The Docker engine is this host's alone: without it no run can start
# here, and a 503 sends learners to a process whose host can run their code. Redis stays a
# 503 until each of its users (cache, rate limits, jobs) is shown to work around its absence.
WORKED_AROUND = frozenset({"database"})


def health(results: Mapping[str, str], degraded: Mapping[str, str]) -> tuple[int, dict]:
    """The HTTP status and body for check `results` ("ok" or what failed) and the parts
    `degraded` (in words): 503 only when a dependency this process cannot do without is down."""
    down = [name for name, outcome in results.items() if outcome != "ok"]
    fatal = [name for name in down if name not in WORKED_AROUND]
    body = {"status": "down" if fatal else "degraded" if down or degraded else "ok",
            "down": down, "checks": dict(results)}
    if degraded:
        body["degraded"] = dict(degraded)
    return (503 if fatal else 200), body


class HealthHandler(BaseHandler):
    """200 when every dependency answers or is worked around (see WORKED_AROUND); 503
    naming them when one this process cannot do without is down.

    `degraded` names the parts working around an outage (progress kept for the
    database, traces spooled for Redis), in words, while they do.
    """
    route = "healthz"

    def initialize(self, common: Common, checks: Mapping[str, Check],
                   degraded: Callable[[], Mapping[str, str]] = dict) -> None:
        super().initialize(common)
        self.checks = checks
        self.degraded = degraded

    async def get(self) -> None:
        names = list(self.checks)
        outcomes = await asyncio.gather(*(run_check(self.checks[n]) for n in names))
        status, body = health(dict(zip(names, outcomes)), self.degraded())
        self.set_header("Cache-Control", "no-store")
        json_response(self, body, status=status)



DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def docker_address(docker_host: str | None) -> tuple[str, str | int]:
    """Where the Docker engine listens, from DOCKER_HOST (Docker's own convention):
    ("unix", path) or (host, port). ValueError names a scheme this check cannot speak."""
    url = urllib.parse.urlsplit(docker_host or DEFAULT_DOCKER_HOST)
    if url.scheme == "unix":
        return "unix", url.path
    if url.scheme in ("tcp", "http") and url.hostname:
        return url.hostname, url.port or 2375
    raise ValueError(f"DOCKER_HOST={docker_host!r}: the health check speaks unix:// or tcp:// only")


def docker_ping(docker_host: str | None) -> Check:
    """A check that asks the engine's `GET /_ping` (plain HTTP; the docker library stays in
    kernels/docker*), and fails unless it answers 200 OK."""
    where, port = docker_address(docker_host)

    async def ping() -> None:
        if where == "unix":
            reader, writer = await asyncio.open_unix_connection(str(port))
        else:
            reader, writer = await asyncio.open_connection(where, int(port))
        try:
            writer.write(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            await writer.drain()
            status = (await reader.readline()).decode("latin-1").strip()
        finally:
            writer.close()
        if status.split(" ")[1:2] != ["200"]:
            raise RuntimeError(f"the Docker engine answered {status or 'nothing'!r}")
    return ping


def bearer_allowed(header: str | None, token: str | None) -> bool:
    """True when no token is configured, or the header carries it (compared in constant time)."""
    if token is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class MetricsHandler(BaseHandler):
    """The Prometheus exposition; with LS_METRICS_TOKEN set, only for `Authorization: Bearer`."""
    route = "metrics"

    def initialize(self, common: Common, token: str | None = None) -> None:
        super().initialize(common)
        self.token = token

    def get(self) -> None:
        if not bearer_allowed(self.request.headers.get("Authorization"), self.token):
            self.set_header("WWW-Authenticate", 'Bearer realm="lessonserver metrics"')
            raise tornado.web.HTTPError(401, "/metrics needs its bearer token")
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.common.metrics.exposition())
