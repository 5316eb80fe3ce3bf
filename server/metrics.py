"""Prometheus metrics, in a registry owned by the app (no process-global state).

Every series declared here is recorded somewhere: requests by the handlers,
runs by the exercise runner and (for Jupyter clients' runs) by the kernel
manager's events, which also drive limit hits and refused starts; the
kernel gauge and the pool levels ask the manager at scrape time; the cache series by
server.cache; kernel start durations come from KernelAssigned events; first output from
the trace events (lesson runs and Jupyter clients' alike); webhook seconds from the Stripe
webhook handler; emails from the job that delivers them, wherever it runs
(workers/job_metrics.py), read at scrape time.

Names follow the Prometheus conventions (tests/test_metrics.py lints them): the
`lessonserver_` prefix, base units (seconds, bytes), and no per-user labels.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from kernels import events
from kernels.result import RunResult
from server.tracing.events import EventKind, TraceEvent

CONTENT_TYPE = CONTENT_TYPE_LATEST
MAX_RUNS_WATCHED = 10_000        # runs awaiting their first output, at most


PREFIX = "lessonserver_"
BASE_UNITS = ("seconds", "bytes")
NOT_BASE_UNITS = ("ms", "milliseconds", "msec", "minutes", "hours", "kb", "kilobytes",
                  "mb", "megabytes", "percent")
PERSONAL_LABELS = frozenset({"user", "user_id", "owner", "email", "run_id", "kernel_id",
                             "ip", "session", "name"})


def name_problems(name: str, kind: str, labels: tuple[str, ...]) -> list[str]:
    """What is wrong with a series' name and labels by the house rules; [] when nothing."""
    problems = []
    if not name.startswith(PREFIX):
        problems.append(f"{name}: not prefixed {PREFIX}")
    words = name.split("_")
    for word in words:
        if word in NOT_BASE_UNITS:
            problems.append(f"{name}: '{word}' is not a base unit (use {' or '.join(BASE_UNITS)})")
    if kind == "histogram" and words[-1] not in BASE_UNITS:
        problems.append(f"{name}: a histogram's name ends in its unit ({', '.join(BASE_UNITS)})")
    if kind == "counter" and name.endswith("_total"):
        problems.append(f"{name}: the client adds _total to counters; do not name it twice")
    for label in labels:
        if label in PERSONAL_LABELS or "user" in label or "email" in label:
            problems.append(f"{name}: label '{label}' could carry a person or an unbounded id")
    return problems


class PoolLevels(Collector):
    """`lessonserver_pool_ready{kernel}`: warm kernels waiting in each language's pool, read at
    scrape time from whatever `watch_pools` was given."""

    def __init__(self) -> None:
        self.levels: Callable[[], Mapping[str, int]] = dict

    def describe(self):
        return [GaugeMetricFamily("lessonserver_pool_ready", "warm kernels ready in the pool",
                                  labels=["kernel"])]

    def collect(self):
        family = GaugeMetricFamily("lessonserver_pool_ready", "warm kernels ready in the pool",
                                   labels=["kernel"])
        for kernel, ready in sorted(self.levels().items()):
            family.add_metric([kernel], ready)
        yield family


class EmailSeries(Collector):
    """`lessonserver_emails{kind,outcome}` and `lessonserver_email_send_seconds`: totals kept by
    the delivering jobs (workers/job_metrics.py) and read at scrape time through `read`."""
    COUNT = ("lessonserver_emails", "emails delivered, skipped or failed, by kind and outcome "
             "(cluster-wide totals: every server shows the same)")
    SECONDS = ("lessonserver_email_send_seconds", "time to deliver one email (SMTP, or the "
               "outbox without LS_SMTP_URL; cluster-wide)")

    def __init__(self) -> None:
        self.read = None                    # () -> workers.job_metrics.EmailStats
        self.bounds: tuple[float, ...] = ()

    def describe(self):
        return [CounterMetricFamily(*self.COUNT, labels=["kind", "outcome"]),
                HistogramMetricFamily(*self.SECONDS)]

    def collect(self):
        count = CounterMetricFamily(*self.COUNT, labels=["kind", "outcome"])
        seconds = HistogramMetricFamily(*self.SECONDS)
        if self.read is not None:
            stats = self.read()
            for (kind, outcome), n in sorted(stats.sent.items()):
                count.add_metric([kind, outcome], n)
            cumulative, running = [], 0
            for bound, n in zip((*map(floatToGoString, self.bounds), "+Inf"), stats.buckets):
                running += n
                cumulative.append((bound, running))
            seconds.add_metric([], cumulative, stats.seconds_sum)
        yield count
        yield seconds


class Metrics:
    def __init__(self, backend: str = "local") -> None:
        self.backend = backend                 # the sandbox that starts kernels: local or docker
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
                                "kernel requests refused with 429 by a quota or the host's capacity",
                                ["what"], registry=self.registry)
        self.kernel_start_seconds = Histogram(
            "lessonserver_kernel_start_seconds",
            "time to hand a kernel to its owner: from the pool (pool_hit=true) or started for it",
            ["backend", "pool_hit"], registry=self.registry,
            buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.pools = PoolLevels()
        self.registry.register(self.pools)
        self.cache_requests = Counter("lessonserver_cache_requests", "cache look-ups by answer",
                                      ["prefix", "result"], registry=self.registry)
        self.cache_recomputes = Counter("lessonserver_cache_recomputes",
                                        "cached values computed (one per expiry when single flight works)",
                                        ["prefix"], registry=self.registry)
        self.cache_lock_waits = Histogram("lessonserver_cache_lock_wait_seconds",
                                          "time requests waited for another request's recompute",
                                          ["prefix"], registry=self.registry,
                                          buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.kernel_queue = Gauge("lessonserver_kernel_queue", "kernel requests waiting for room",
                                  registry=self.registry)
        self.kernel_queue_wait = Histogram("lessonserver_kernel_queue_wait_seconds",
                                           "how long a queued kernel request waited",
                                           registry=self.registry,
                                           buckets=(.1, .5, 1, 2.5, 5, 10, 30, 60, 120))
        self.first_output_seconds = Histogram(
            "lessonserver_first_output_seconds",
            "time from a run's request to its first output (runs with output)",
            ["kernel"], registry=self.registry,
            buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.webhook_seconds = Histogram("lessonserver_webhook_seconds",
                                         "time to take in one Stripe webhook, by HTTP status",
                                         ["status"], registry=self.registry,
                                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))
        self.emails = EmailSeries()
        self.registry.register(self.emails)
        self._api_runs: dict[str, str] = {}    # run id -> kernel, while a client's run goes on
        self._no_output_yet: dict[str, str] = {}   # run id -> kernel, until its first output

    def observe_run(self, kernel: str, result: RunResult, seconds: float) -> None:
        self.runs.labels(kernel, result.status.value).inc()
        self.run_seconds.labels(kernel).observe(seconds)

    def observe_kernel_event(self, event: events.KernelEvent) -> None:
        """A KernelManager observer."""
        if isinstance(event, (events.KernelAssigned, events.KernelRestarted)):
            self.kernel_start_seconds.labels(self.backend, str(event.pool_hit).lower()).observe(
                event.start_ms / 1000)
        elif isinstance(event, events.KernelLimited):
            self.limit_hits.labels(event.plugin, event.limit).inc()
        elif isinstance(event, events.StartRejected):
            self.rejected.labels(event.reason).inc()
        elif isinstance(event, events.StartQueued):
            self.kernel_queue_wait.observe(event.seconds)
        elif isinstance(event, events.RunStarted):
            self._api_runs[event.run_id] = event.plugin
        elif isinstance(event, events.RunEnded):
            kernel = self._api_runs.pop(event.run_id, "unknown")
            self.runs.labels(kernel, event.result.status.value).inc()

    def observe_trace(self, event: TraceEvent) -> None:
        """A trace event on its way to the buffer: the first output of each run is timed."""
        if event.kind is EventKind.REQUESTED:
            if len(self._no_output_yet) >= MAX_RUNS_WATCHED:   # runs that never ended: forget
                self._no_output_yet.clear()
            self._no_output_yet[event.run_id] = str(event.data.get("kernel") or "unknown")
        elif event.kind is EventKind.OUTPUT:
            kernel = self._no_output_yet.pop(event.run_id, None)
            if kernel is not None:
                self.first_output_seconds.labels(kernel).observe(
                    float(event.data.get("elapsed_ms") or 0) / 1000)
        elif event.kind in (EventKind.FINISHED, EventKind.KERNEL_DIED):
            self._no_output_yet.pop(event.run_id, None)

    def observe_webhook(self, status: int, seconds: float) -> None:
        self.webhook_seconds.labels(str(status)).observe(seconds)

    def watch_emails(self, read: Callable[[], object], bounds: tuple[float, ...]) -> None:
        """`read`: the email totals now (workers.job_metrics.EmailStats); `bounds`: its buckets."""
        self.emails.read, self.emails.bounds = read, bounds

    def observe_cache(self, prefix: str, result: str) -> None:
        self.cache_requests.labels(prefix, result).inc()

    def observe_cache_recompute(self, prefix: str) -> None:
        self.cache_recomputes.labels(prefix).inc()

    def observe_cache_lock_wait(self, prefix: str, seconds: float) -> None:
        self.cache_lock_waits.labels(prefix).observe(seconds)

    def watch_kernels(self, count: Callable[[], int], queued: Callable[[], int],
                      pools: Callable[[], Mapping[str, int]] = dict) -> None:
        """`count`: kernels alive now; `queued`: requests waiting for a start; `pools`: warm
        kernels ready, by language."""
        self.kernels.set_function(count)
        self.kernel_queue.set_function(queued)
        self.pools.levels = pools

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def declared(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(name, type, label names) of every series this registry can expose, for the lint."""
        found = [(m._name, m._type, tuple(m._labelnames)) for m in vars(self).values()
                 if isinstance(m, MetricWrapperBase)]
        found += [(f.name, f.type, ("kernel",)) for f in self.pools.describe()]
        found += [(self.emails.COUNT[0], "counter", ("kind", "outcome")),
                  (self.emails.SECONDS[0], "histogram", ())]
        return found

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
