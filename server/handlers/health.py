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


class HealthHandler(BaseHandler):
    """200 when every configured dependency answers; 503 naming the ones that do not.

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
        results = dict(zip(names, outcomes))
        down = [name for name, outcome in results.items() if outcome != "ok"]
        degraded = dict(self.degraded())
        body = {"status": "down" if down else "degraded" if degraded else "ok", "down": down,
                "checks": results}
        if degraded:
            body["degraded"] = degraded
        self.set_header("Cache-Control", "no-store")
        json_response(self, body, status=503 if down else 200)



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
