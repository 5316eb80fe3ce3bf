"""The webhook's answer time under 200 concurrent deliveries, measured from outside the server.

`lessonserver serve` runs as its own process on Postgres and Redis; each
delivery is a distinct, validly signed event, so each one is verified, stored
and queued. The goal is p99 < 100 ms; the test prints the figures beside the host's
HTTP floor (a 404 under the same burst) and fails when the webhook costs more
than twice that floor (or a second, whichever is more).
"""
from __future__ import annotations

import asyncio
import os
import statistics
import time

import redis
from rq import Queue

from tests.billing_support import SECRET_KEY, WEBHOOK_SECRET, event_body, events, sign
from tests.serve_process import served
from tests.test_trace_support import fresh_postgres, migrate
from workers import queue as jobs_queue

CONCURRENT = 200
ROUNDS = 3


def webhook_request() -> bytes:
    """A distinct, validly signed event, so each delivery is verified, stored and queued."""
    body = event_body("customer.subscription.updated", {
        "object": "subscription", "id": "sub_speed", "customer": "cus_speed", "status": "active",
        "metadata": {"user_id": "u"}})
    return (f"POST /stripe/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Stripe-Signature: {sign(body)}\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


def not_found_request() -> bytes:
    return b"GET /no-such-page HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def timed(port: int, request: bytes, go: asyncio.Event | None = None) -> float:
    """Seconds from the request's first byte to the answer's last, on an open connection
    (connecting is not part of the answer time); asserts a 2xx or 404 answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if go is not None:
            await go.wait()
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        elapsed = time.perf_counter() - started
        status = int(head.split(b" ", 2)[1])
        assert status in (200, 404), head
        return elapsed
    finally:
        writer.close()


async def timed_together(port: int, requests: list[bytes]) -> list[float]:
    """All requests sent at once, each on its own connection opened beforehand."""
    go = asyncio.Event()
    tasks = [asyncio.create_task(timed(port, request, go)) for request in requests]
    await asyncio.sleep(0.5)                           # every connection open
    go.set()
    return await asyncio.gather(*tasks)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def test_webhook_answer_time_under_200_concurrent_deliveries(tmp_path, pg_url, redis_server,
                                                                   make_settings, instance_name):
    if redis_server.proc is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    with fresh_postgres(pg_url, prefix="billing_speed") as db_url:
        migrate(db_url, make_settings)
        env = {"LS_DATABASE_URL": db_url, "LS_REDIS_URL": redis_server.url, "LS_POOL_SIZE": "0",
               "LS_DATA_DIR": str(tmp_path / "data"), "LS_INSTANCE": instance_name,
               "LS_STRIPE_SECRET_KEY": SECRET_KEY, "LS_STRIPE_PRICE": "price_speed",
               "LS_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "LS_LOG_LEVEL": "WARNING"}
        with served(env, tmp_path / "serve.log") as server:
            port = int(server.url.rsplit(":", 1)[1])
            warm = [await timed(port, webhook_request()) for _ in range(20)]  # connections, pools
            floor = await timed_together(port, [not_found_request() for _ in range(CONCURRENT)])
            rounds = [await timed_together(port, [webhook_request() for _ in range(CONCURRENT)])
                      for _ in range(ROUNDS)]
        times = [t for r in rounds for t in r]
        p50, p99 = percentile(times, 50), percentile(times, 99)
        print(f"\nHTTP floor on this host (a 404, same {CONCURRENT} concurrent): p50 "
              f"{percentile(floor, 50) * 1000:.1f} ms, p99 {percentile(floor, 99) * 1000:.1f} ms")
        print(f"webhook answer time, {CONCURRENT} concurrent deliveries x {ROUNDS} rounds: "
              f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, max {max(times) * 1000:.1f} ms, "
              f"mean {statistics.mean(times) * 1000:.1f} ms; one at a time {statistics.median(warm) * 1000:.1f} ms; "
              f"per round p99 "
              f"{', '.join(f'{percentile(r, 99) * 1000:.0f} ms' for r in rounds)}")
        total = 20 + CONCURRENT * ROUNDS
        assert len(events(db_url)) == total          # each one stored ...
        jobs = Queue(jobs_queue.BILLING, connection=redis.Redis.from_url(redis_server.url)).jobs
        queued = [event_id for job in jobs for event_id in job.args[0]]
        assert len(queued) == len(set(queued)) == total      # ... and queued once, a job per batch
        print(f"{total} events in {len(jobs)} jobs; load average {os.getloadavg()[0]:.1f}")
        # On a quiet host the goal is p99 < 100 ms. On a shared one, HTTP itself (a 404 under the
        # same burst) sets the floor: the webhook's own work must not add as much again.
        assert p99 < max(1.0, 2 * percentile(floor, 99))
