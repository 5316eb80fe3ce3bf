"""`/healthz` for load balancers and `/metrics` for Prometheus."""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from server.handlers.base import BaseHandler, Common, json_response
from server.metrics import CONTENT_TYPE

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT = 2.0


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
        outcomes = await asyncio.gather(*(self._run(self.checks[n]) for n in names))
        results = dict(zip(names, outcomes))
        down = [name for name, outcome in results.items() if outcome != "ok"]
        degraded = dict(self.degraded())
        body = {"status": "down" if down else "degraded" if degraded else "ok", "down": down,
                "checks": results}
        if degraded:
            body["degraded"] = degraded
        self.set_header("Cache-Control", "no-store")
        json_response(self, body, status=503 if down else 200)

    @staticmethod
    async def _run(check: Check) -> str:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT)
            return "ok"
        except asyncio.TimeoutError:
            return f"no answer within {CHECK_TIMEOUT:.0f}s"
        except Exception as exc:  # the check's failure is the report, whatever it is
            return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


class MetricsHandler(BaseHandler):
    route = "metrics"

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE)
        self.finish(self.common.metrics.exposition())
