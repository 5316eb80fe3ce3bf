"""Prometheus metrics, in a registry owned by the app (no process-global state)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("lessonserver_http_requests", "HTTP requests served",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("lessonserver_http_request_seconds", "HTTP request latency",
                                 ["route"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.runs = Counter("lessonserver_runs", "code runs finished",
                            ["kernel", "status"], registry=self.registry)
        self.run_seconds = Histogram("lessonserver_run_seconds", "run latency from request to result",
                                     ["kernel"], registry=self.registry,
                                     buckets=(.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.limit_hits = Counter("lessonserver_limit_hits", "runs stopped by a limit",
                                  ["kernel", "limit"], registry=self.registry)
        self.kernels = Gauge("lessonserver_kernels", "kernels alive on this host",
                             registry=self.registry)
        self.rejected = Counter("lessonserver_admission_rejected",
                                "requests refused with 429 by admission control",
                                ["what"], registry=self.registry)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
