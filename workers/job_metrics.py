"""Email deliveries counted and timed where the job runs, and read back by every server.

A worker serves no HTTP, and several workers may run on other hosts, so a per-worker
exposition would need a port and a scrape target each. Instead each delivery adds its numbers
to one Redis hash (HINCRBY is atomic across workers, and the totals outlive a worker's
restart); each server reads the hash every few seconds and /metrics exposes it
(server/metrics.py). The totals are cluster-wide: every server shows the same ones. In
embedded mode the job thread runs inside the server's process, so the numbers go to an
in-process tally that the server reads directly.
"""
from __future__ import annotations

import bisect
import collections
import dataclasses
import logging
import threading
from collections.abc import Mapping

from server.periodic import Every

log = logging.getLogger("lessonserver.workers")

SECONDS_BUCKETS = (.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60)
REFRESH = 5.0                    # seconds between a server's reads of the totals


@dataclasses.dataclass(frozen=True)
class EmailStats:
    sent: Mapping[tuple[str, str], int]    # (kind, outcome) -> emails
    buckets: tuple[int, ...]               # deliveries per bucket (not cumulative); last: +Inf
    seconds_sum: float


EMPTY = EmailStats({}, (0,) * (len(SECONDS_BUCKETS) + 1), 0.0)


def increments(kind: str, outcome: str, seconds: float | None) -> dict[str, float]:
    """The hash fields one delivery adds to; `seconds` is None when nothing was sent (skipped)."""
    fields: dict[str, float] = {f"sent:{kind}:{outcome}": 1}
    if seconds is not None:
        fields[f"bucket:{bisect.bisect_left(SECONDS_BUCKETS, seconds)}"] = 1
        fields["seconds_sum"] = seconds
    return fields


def stats_of(fields: Mapping) -> EmailStats:
    """The totals from the hash's fields (bytes from Redis, or str)."""
    sent: dict[tuple[str, str], int] = {}
    buckets = [0] * (len(SECONDS_BUCKETS) + 1)
    seconds_sum = 0.0
    for raw_key, raw_value in fields.items():
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        value = float(raw_value)
        if key.startswith("sent:"):
            _, kind, outcome = key.split(":", 2)
            sent[(kind, outcome)] = int(value)
        elif key.startswith("bucket:") and 0 <= int(key[7:]) < len(buckets):
            buckets[int(key[7:])] = int(value)
        elif key == "seconds_sum":
            seconds_sum = value
    return EmailStats(sent, tuple(buckets), seconds_sum)


class Tally:
    """Embedded mode's totals: written by the job thread, read by the server's event loop."""

    def __init__(self) -> None:
        self._fields: collections.Counter = collections.Counter()
        self._lock = threading.Lock()

    def add(self, fields: Mapping[str, float]) -> None:
        with self._lock:
            self._fields.update(fields)

    def stats(self) -> EmailStats:
        with self._lock:
            return stats_of(dict(self._fields))


_tallies: dict[str, Tally] = {}          # by instance: one per embedded server process
_clients: dict[str, object] = {}         # a worker's Redis client, by URL


def tally(instance: str) -> Tally:
    return _tallies.setdefault(instance, Tally())


def redis_key(instance: str) -> str:
    return f"lessonserver:{instance}:metrics:emails"


def record_email(settings, kind: str, outcome: str, seconds: float | None) -> None:
    """Add one delivery; a metric that cannot be written never fails the delivery."""
    fields = increments(kind, outcome, seconds)
    if settings.redis_url is None:
        tally(settings.instance).add(fields)
        return
    try:
        import redis
        client = _clients.get(settings.redis_url)
        if client is None:
            client = _clients[settings.redis_url] = redis.Redis.from_url(
                settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
        pipe = client.pipeline(transaction=False)
        key = redis_key(settings.instance)
        for field, amount in fields.items():
            if isinstance(amount, int):
                pipe.hincrby(key, field, amount)
            else:
                pipe.hincrbyfloat(key, field, amount)
        pipe.execute()
    except Exception as exc:
        log.warning("email metrics not recorded", extra={"fields": {"error": str(exc)}})


class EmailStatsReader:
    """The server's view of the totals: the tally in embedded mode, else the Redis hash read
    in the background (a scrape never waits on Redis)."""

    def __init__(self, instance: str, redis=None, refresh: float = REFRESH) -> None:
        self.instance = instance
        self.redis = redis                # redis.asyncio client, or None in embedded mode
        self.refresh = refresh
        self._latest = EMPTY
        self._reads = Every(refresh, self.read, "email-metrics")

    def current(self) -> EmailStats:
        return tally(self.instance).stats() if self.redis is None else self._latest

    async def start(self) -> None:
        if self.redis is not None:
            await self.read()
            self._reads.start()

    async def read(self) -> None:
        try:
            self._latest = stats_of(await self.redis.hgetall(redis_key(self.instance)))
        except Exception as exc:         # Redis away: the last totals stand
            log.warning("email metrics not read", extra={"fields": {"error": str(exc)}})

    async def close(self) -> None:
        await self._reads.close()
