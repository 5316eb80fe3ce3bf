"""Issue 11: does a live event's spike stay a non-event? Loopback only, bounded in count and time.

1. 1,000 readers of one expired key, spread over two processes sharing Redis: how many
   recomputes, and reader latency p50/p99, with the cache (server.cache) and without it
   (every reader computes). The compute is the real anonymous catalog render plus 20 ms
   standing in for a database round trip.
2. Requests per second of the cached pages of a real `lessonserver serve` (Redis, INFO
   logging) against a bare Tornado "hello" handler on the same machine, same client.
3. A step load on two `serve` processes (sharing Redis and Postgres): the catalog and a lesson page at an idle rate
   (2, 5, then 10 req/s), then to 100x within 5 s, held 5 s: p99 during vs before, errors.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import redis.asyncio
import tornado.template
import tornado.websocket

from bench._load import Sample, schedule, throughput
from server.cache.cache import Cache, Computed
from server.cache.freshness import Policy
from server.cache.local import LocalStore
from server.cache.shared import RedisStore
from server import config, db
from server.config import PROJECT_ROOT
from tests import services
from tests.serve_process import lessonserver, listening

READERS = 1000
DB_ROUND_TRIP = 0.02
HELLO = textwrap.dedent("""
    import asyncio, sys, tornado.web
    class Hello(tornado.web.RequestHandler):
        def get(self):
            self.write("Hello, world")
    async def main():
        tornado.web.Application([(r"/", Hello)]).listen(int(sys.argv[1]), "127.0.0.1")
        await asyncio.Event().wait()
    asyncio.run(main())
""")


class Counted:
    recomputes = 0

    def observe_cache(self, prefix, result): ...
    def observe_cache_lock_wait(self, prefix, seconds): ...

    def observe_cache_recompute(self, prefix):
        self.recomputes += 1


def catalog_render():
    """The anonymous catalog page, rendered as the server renders it."""
    from server.learning import progress_view
    from server.app import TEMPLATES
    from server.course.loader import load_catalog
    catalog = load_catalog(PROJECT_ROOT / "lessons", frozenset({"python", "bash", "sql"}))
    template = tornado.template.Loader(str(TEMPLATES)).load("catalog.html")

    async def compute() -> Computed:
        await asyncio.sleep(DB_ROUND_TRIP)
        courses = progress_view.catalog_state(catalog, {}, False, False)
        return Computed(template.generate(courses=courses, handler=None,    # anonymous
                                          static_url=lambda p: "/static/" + p))
    return compute


async def _readers(redis_url: str, namespace: str, readers: int, cached: bool, start_at: float,
                   ttl: float = 30):
    compute = catalog_render()
    counts = Counted()
    client = redis.asyncio.from_url(redis_url)
    cache = Cache(Policy(ttl=ttl, grace=0, beta=0), RedisStore(client, namespace, 2), counts,
                  near=LocalStore())

    async def computed() -> Computed:
        counts.recomputes += 1
        return await compute()

    async def one() -> float:
        began = time.perf_counter()
        await (cache.get("catalog", "anonymous", compute) if cached else computed())
        return time.perf_counter() - began
    await asyncio.sleep(max(0.0, start_at - time.time()))
    latencies = await asyncio.gather(*(one() for _ in range(readers)))
    await client.aclose()
    return latencies, counts.recomputes


def _reader_process(args):
    return asyncio.run(_readers(*args))


def expired_key(redis_url: str) -> None:
    for cached in (True, False):
        namespace = f"bench-{uuid.uuid4().hex[:8]}:"
        if cached:   # store an entry and let it expire, so the readers meet an expired key
            asyncio.run(_readers(redis_url, namespace, 1, True, 0, 1.0))
            time.sleep(1.2)
        start_at = time.time() + 5.0     # the two reader processes start their 500 at once
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            results = pool.map(_reader_process,
                               [(redis_url, namespace, READERS // 2, cached, start_at)] * 2)
        latencies = Sample(tuple(l for ls, _ in results for l in ls), 0, 1)
        print(f"  {READERS} readers of an expired key, 2 processes, {'with' if cached else 'without'}"
              f" the cache: {sum(n for _, n in results)} recomputes, p50 {latencies.pct(50) * 1000:.0f} ms,"
              f" p99 {latencies.pct(99) * 1000:.0f} ms", flush=True)


@contextlib.contextmanager
def hello_server():
    port = services.free_port()
    with listening([sys.executable, "-c", HELLO, str(port)], port, "hello") as url:
        yield url


def lesson_slug(url: str) -> str:
    import urllib.request
    api = json.loads(urllib.request.urlopen(url + "/api/lessons", timeout=10).read())
    return next(l["slug"] for c in api["courses"] for l in c["lessons"]
                if l["access"] == "free" and not l["prerequisites"])


def visitor_cookie(url: str, slug: str) -> str:
    """A visitor's identity, as the lesson socket's handshake gives it (no row yet)."""
    async def handshake() -> str:
        socket = await tornado.websocket.websocket_connect(url.replace("http", "ws") + f"/lessons/{slug}/ws")
        socket.close()
        return "; ".join(c.split(";", 1)[0] for c in socket.headers.get_list("Set-Cookie"))
    return asyncio.run(handshake())


def rates(server: str) -> None:
    slug = lesson_slug(server)
    with hello_server() as hello:
        base = throughput(hello, "/")
        print(f"  bare Tornado hello: {base.rate:.0f} req/s (p99 {base.pct(99) * 1000:.0f} ms,"
              f" {base.errors} errors; 50 connections, 2 client processes, 5 s)", flush=True)
    cookie = {"Cookie": visitor_cookie(server, slug)}
    for label, path, headers in (("catalog, anonymous", "/", None),
                                 ("/api/lessons", "/api/lessons", None),
                                 ("lesson page, new visitor (its cookie comes with the socket)", f"/lessons/{slug}", None),
                                 ("lesson page, returning visitor (cookie, no row)", f"/lessons/{slug}", cookie)):
        sample = throughput(server, path, headers=headers)
        print(f"  {label}: {sample.rate:.0f} req/s = {sample.rate / base.rate:.2f}x hello"
              f" (p99 {sample.pct(99) * 1000:.0f} ms, {sample.errors} errors)", flush=True)


def _schedule_process(args) -> list[tuple[float, float, int]]:
    url, paths, instants = args
    return asyncio.run(schedule(url, paths, instants, pool=100))


def step_load(servers: list[str], idle: float) -> None:
    slug = lesson_slug(servers[0])
    peak, before, ramp, hold = 100 * idle, 5.0, 5.0, 5.0
    instants: list[float] = []
    t = 0.0
    while t < before + ramp + hold:
        instants.append(t)
        rate = idle if t < before else min(peak, idle + (peak - idle) * (t - before) / ramp)
        t += 1.0 / rate
    paths = ["/", f"/lessons/{slug}"]

    with multiprocessing.get_context("fork").Pool(len(servers)) as pool:   # one client per server
        halves = pool.map(_schedule_process, [(url, paths, instants[i::len(servers)])
                                              for i, url in enumerate(servers)])
    results = [r for half in halves for r in half]
    calm = Sample(tuple(l for at, l, _ in results if at < before), 0, before)
    spike = Sample(tuple(l for at, l, _ in results if at >= before), 0, ramp + hold)
    errors = sum(1 for _, _, status in results if status not in (200, 304))
    print(f"  step load on 2 processes, catalog + lesson page, {idle:.0f} -> {peak:.0f} req/s in"
          f" {ramp:.0f} s, held {hold:.0f} s ({len(results)} requests): p99 before"
          f" {calm.pct(99) * 1000:.1f} ms, during {spike.pct(99) * 1000:.1f} ms"
          f" ({spike.pct(99) / calm.pct(99):.1f}x), p50 during {spike.pct(50) * 1000:.1f} ms,"
          f" errors {errors}", flush=True)


def main() -> None:
    redis_server = services.RedisServer()
    redis_server.start()
    try:
        expired_key(redis_server.url)
        # Production's shape: both processes share Redis and Postgres (a learner's row is
        # looked up there), as behind the load balancer.
        with services.throwaway_postgres() as pg_url, \
                tempfile.TemporaryDirectory(prefix="ls-bench-spike-") as tmp:
            root = Path(tmp)
            env = {"LS_REDIS_URL": redis_server.url, "LS_DATABASE_URL": pg_url, "LS_POOL_SIZE": "0",
                   "LS_INSTANCE": f"bench-{uuid.uuid4().hex[:6]}",
                   "LS_LESSONS_DIR": str(PROJECT_ROOT / "lessons")}
            db.upgrade(config.load(env))
            (root / "a").mkdir()
            (root / "b").mkdir()
            with lessonserver(root / "a", **env) as a, lessonserver(root / "b", **env) as b:
                rates(a.url)
                for idle in (2.0, 5.0, 10.0):
                    step_load([a.url, b.url], idle)
    finally:
        redis_server.close()
