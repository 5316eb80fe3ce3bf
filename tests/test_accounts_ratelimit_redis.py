"""Rate limits shared through a real Redis: two stores (as two `serve` processes hold) spend one
budget, atomically, decided by the same pure rule; with Redis away, each process counts alone."""
from __future__ import annotations

import asyncio
import socket
import time
import uuid

import pytest

from server.accounts.ratelimit import Rule
from server.accounts.redis_rates import RedisRateStore, client, open_rate_store
from server.accounts.limiter import MemoryRateStore
from tests.accounts_support import Client
from tests.services import free_port
from tests.test_pages import start
from tests.test_trace_support import fresh_postgres, migrate

RULE = Rule(burst=5, window=60.0)     # five at once, then one every 12 s


@pytest.fixture
async def two_stores(redis_server):
    """Two stores on two connections, as two server processes would have them, on one key prefix."""
    if redis_server.proc is None:
        redis_server.start()
    prefix = f"test:{uuid.uuid4().hex[:8]}:rate:"
    clients = [client(redis_server.url) for _ in range(2)]
    yield [RedisRateStore(c, prefix) for c in clients], clients[0], prefix
    for c in clients:
        await c.aclose()


async def test_two_stores_spend_one_budget_and_give_back_to_it(two_stores):
    (a, b), client, prefix = two_stores
    decisions = [await (a if i % 2 else b).take("auth:ip:1.2.3.4", RULE) for i in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert 11.0 < decisions[-1].retry_after <= 12.0         # the rule's wait, not a store's own
    assert (await b.take("auth:ip:5.6.7.8", RULE)).allowed  # another key has its own budget
    await a.give_back("auth:ip:1.2.3.4", RULE)             # a success through one process ...
    assert (await b.take("auth:ip:1.2.3.4", RULE)).allowed  # ... counts in the other
    assert not (await a.take("auth:ip:1.2.3.4", RULE)).allowed
    ttl = await client.pttl(prefix + "auth:ip:1.2.3.4")
    assert 0 < ttl <= 60_000                                # forgotten once it would be full again


async def test_concurrent_takes_from_two_stores_never_exceed_the_burst(two_stores):
    (a, b), _, _ = two_stores
    rule = Rule(burst=10, window=600.0)
    started = time.perf_counter()
    decisions = await asyncio.gather(*(s.take("auth:account:ada", rule) for s in (a, b) * 20))
    took = time.perf_counter() - started
    print(f"40 concurrent takes on one key over two stores: {took * 1000:.0f} ms")
    assert sum(d.allowed for d in decisions) == 10


async def test_a_burst_behind_one_address_is_counted_not_refused_for_contention(two_stores):
    """A classroom at a live event: 300 newcomers from one address at once, a budget of 290.
    Each process sends a key's waiting updates in one transaction, so none loses the
    optimistic race 50 times, and 300 cost a few round trips, not 300 in turn."""
    (a, b), redis, _ = two_stores
    rule = Rule(burst=290, window=60.0)
    transactions = (await redis.info("commandstats"))["cmdstat_exec"]["calls"]
    started = time.perf_counter()
    decisions = await asyncio.gather(*(s.take("new:ip:10.0.0.1", rule) for s in (a, b) * 150))
    took = time.perf_counter() - started
    transactions = (await redis.info("commandstats"))["cmdstat_exec"]["calls"] - transactions
    print(f"300 concurrent takes on one key over two stores: {took * 1000:.0f} ms, "
          f"{transactions} transactions")
    assert sum(d.allowed for d in decisions) == 290              # counted exactly, none lost
    assert transactions <= 10
    assert a._rounds.idle and b._rounds.idle                     # nothing kept per key


async def test_redis_away_each_process_counts_alone_and_quickly(redis_server):
    """Fails over to the process's own buckets (neither locked out nor unlimited)."""
    refused = client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.3)     # nothing listens
    hanging = socket.socket()                                           # accepts, never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)
    stuck = client(f"redis://127.0.0.1:{hanging.getsockname()[1]}/0", timeout=0.3)
    try:
        for away in (refused, stuck):
            store = RedisRateStore(away, "test:away:")
            started = time.perf_counter()
            decisions = [await store.take("auth:ip:1.2.3.4", RULE) for _ in range(6)]
            per_decision = (time.perf_counter() - started) / 6
            assert [d.allowed for d in decisions] == [True] * 5 + [False]
            assert per_decision < 0.5 and not store.available
    finally:
        hanging.close()
        await refused.aclose()
        await stuck.aclose()


async def test_the_store_is_shared_only_when_there_is_redis(redis_server):
    assert isinstance(open_rate_store(None, "x"), MemoryRateStore)
    shared = open_rate_store(redis_server.url, "x")
    assert isinstance(shared, RedisRateStore)
    await shared.close()


async def test_two_serve_processes_share_the_log_in_budget(pg_url, redis_server, make_settings):
    """Two servers on one Redis: wrong passwords spread over both hit 429 at the shared budget."""
    if redis_server.proc is None:
        redis_server.start()
    with fresh_postgres(pg_url, prefix="rates") as db_url:
        migrate(db_url, make_settings)
        settings = make_settings(LS_REDIS_URL=redis_server.url, LS_DATABASE_URL=db_url,
                                 LS_COOKIE_SECRET="s", LS_AUTH_PER_IP="4/600",
                                 LS_INSTANCE=f"rates-{uuid.uuid4().hex[:8]}")
        servers = [await start(settings) for _ in range(2)]
        try:
            codes = []
            for i in range(5):
                client = Client(servers[i % 2][0].base)
                response = await client.post("/login", {"email": "ada@example.org", "password": "wrong"})
                codes.append(response.code)
            assert codes == [400] * 4 + [429], codes      # one budget, not four per process
        finally:
            for _, stop, task in servers:
                stop.set()
                await asyncio.wait_for(task, 15)
