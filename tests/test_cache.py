"""The cache's shell against a real Redis (and the in-process store of embedded mode)."""
from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
import time
import uuid

import pytest
import redis.asyncio

from server.cache.cache import Cache, Computed
from server.cache.freshness import Policy
from server.cache.local import LocalStore
from server.cache.shared import RedisStore


class Counts:
    """The observer: counts what the cache reports."""

    def __init__(self) -> None:
        self.results: collections.Counter = collections.Counter()
        self.recomputes = 0
        self.waits: list[float] = []

    def observe_cache(self, prefix, result):
        self.results[result] += 1

    def observe_cache_recompute(self, prefix):
        self.recomputes += 1

    def observe_cache_lock_wait(self, prefix, seconds):
        self.waits.append(seconds)


@pytest.fixture
async def redis_client(redis_url):
    client = redis.asyncio.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def namespace() -> str:
    return f"test-cache-{uuid.uuid4().hex[:8]}:"


def shared_cache(client, namespace, policy, **kwargs) -> tuple[Cache, Counts]:
    counts = Counts()
    store = RedisStore(client, namespace, tombstone_seconds=policy.ttl + policy.grace)
    return Cache(policy, store, counts, near=LocalStore(), **kwargs), counts


def slow(value: bytes, seconds: float = 0.2, calls: list | None = None):
    async def compute() -> Computed:
        if calls is not None:
            calls.append(value)
        await asyncio.sleep(seconds)
        return Computed(value)
    return compute


async def test_many_readers_of_a_missing_key_in_two_processes_cause_one_recompute(redis_url, namespace):
    policy = Policy(ttl=30, grace=30, beta=0)
    clients = [redis.asyncio.from_url(redis_url) for _ in range(2)]
    try:
        caches = [shared_cache(c, namespace, policy) for c in clients]   # one per "process"
        calls: list = []
        answers = await asyncio.gather(*(caches[i % 2][0].get("p", "k", slow(b"v", 0.2, calls))
                                         for i in range(200)))
        assert {a.value for a in answers} == {b"v"}
        assert len(calls) == 1
        assert sum(c.recomputes for _, c in caches) == 1
        # The other process waited for the holder's answer rather than computing it.
        assert sum(len(c.waits) for _, c in caches) == 1
    finally:
        for c in clients:
            await c.aclose()


async def test_an_expired_key_is_recomputed_once(redis_client, namespace):
    policy = Policy(ttl=0.2, grace=0.0, beta=0)
    cache, counts = shared_cache(redis_client, namespace, policy, near_ttl=0.05)
    await cache.get("p", "k", slow(b"old", 0))
    await asyncio.sleep(0.3)
    answers = await asyncio.gather(*(cache.get("p", "k", slow(b"new", 0.1)) for _ in range(100)))
    assert {a.value for a in answers} == {b"new"}
    assert counts.recomputes == 2


async def test_a_crashed_lease_holder_is_replaced_after_the_lease_ttl(redis_url, redis_client, namespace):
    # A real process takes the lease and dies without releasing it.
    script = ("import asyncio, redis.asyncio, sys\n"
              "from server.cache.shared import RedisStore\n"
              "async def main():\n"
              "    store = RedisStore(redis.asyncio.from_url(sys.argv[1]), sys.argv[2], 60)\n"
              "    assert await store.try_lease('p:k', 1.0)\n"
              "asyncio.run(main())\n")
    subprocess.run([sys.executable, "-c", script, redis_url, namespace], check=True, timeout=30)
    cache, counts = shared_cache(redis_client, namespace, Policy(ttl=30, grace=30, beta=0),
                                 lease_ttl=1.0)
    began = time.monotonic()
    entry = await asyncio.wait_for(cache.get("p", "k", slow(b"mine", 0)), 10)
    waited = time.monotonic() - began
    assert entry.value == b"mine" and counts.recomputes == 1
    assert 0.5 < waited < 3.0, waited       # the dead holder's lease ran out, nobody deadlocked


async def test_a_late_holder_cannot_overwrite_a_newer_value(redis_client, namespace):
    store = RedisStore(redis_client, namespace, 60)
    policy = Policy(ttl=30, grace=30)
    from server.cache.freshness import make_entry
    late = await store.try_lease("p:k", 0.1)
    await asyncio.sleep(0.2)                                     # its lease expires
    newer = await store.try_lease("p:k", 5)
    assert newer[1] > late[1]
    now = time.time()
    assert await store.write("p:k", make_entry(b"newer", 200, now=now, delta=0, fence=newer[1],
                                               policy=policy), newer)
    assert not await store.write("p:k", make_entry(b"late", 200, now=now, delta=0, fence=late[1],
                                                   policy=policy), late)
    await store.release("p:k", late)                             # not its lease any more: no effect
    assert await store.try_lease("p:k", 5) is None
    assert (await store.read("p:k")).value == b"newer"


async def test_stale_is_served_within_grace_and_never_beyond(redis_client, namespace):
    cache, counts = shared_cache(redis_client, namespace, Policy(ttl=0.3, grace=0.6, beta=0),
                                 near_ttl=0.05)
    await cache.get("p", "k", slow(b"v1", 0))
    await asyncio.sleep(0.4)                                     # stale, within grace
    release = asyncio.Event()

    async def blocked() -> Computed:
        await release.wait()
        return Computed(b"v2")
    began = time.monotonic()
    entry = await cache.get("p", "k", blocked)
    assert entry.value == b"v1" and time.monotonic() - began < 0.1
    assert counts.results["stale"] == 1
    release.set()
    await asyncio.sleep(0.05)
    assert (await cache.get("p", "k", slow(b"unused", 0))).value == b"v2"

    async def broken() -> Computed:
        raise RuntimeError("database down")
    await asyncio.sleep(1.0)                                     # past ttl + grace of v2
    with pytest.raises(RuntimeError):
        await cache.get("p", "k", broken)                         # an error, not the old v2


async def test_a_failed_refresh_is_tried_once_per_lease_while_stale_is_served(redis_client, namespace):
    cache, counts = shared_cache(redis_client, namespace, Policy(ttl=0.2, grace=30, beta=0),
                                 near_ttl=0.01, lease_ttl=2.0)
    await cache.get("p", "k", slow(b"v1", 0))
    await asyncio.sleep(0.3)                                     # stale, within grace
    calls: list = []

    async def broken() -> Computed:
        calls.append(1)
        raise RuntimeError("the page no longer renders")
    for _ in range(10):
        assert (await cache.get("p", "k", broken)).value == b"v1"
        await asyncio.sleep(0.03)
    assert len(calls) == 1               # not once per request: the failed refresh holds its lease
    await asyncio.sleep(2.0)                                     # its lease ran out
    assert (await cache.get("p", "k", slow(b"v2", 0))).value == b"v1"   # and the next one refreshes
    await asyncio.sleep(0.1)
    assert (await cache.get("p", "k", slow(b"unused", 0))).value == b"v2"
    assert counts.recomputes == 3


async def test_stale_past_grace_is_not_served_while_another_holds_the_lease(redis_client, namespace):
    cache, _ = shared_cache(redis_client, namespace, Policy(ttl=0.1, grace=0.1, beta=0),
                            near_ttl=0.01, lease_ttl=0.5)
    await cache.get("p", "k", slow(b"v1", 0))
    await asyncio.sleep(0.3)
    other, _ = shared_cache(redis_client, namespace, Policy(ttl=0.1, grace=0.1, beta=0))
    holder = asyncio.ensure_future(other.get("p", "k", slow(b"v2", 0.3)))
    await asyncio.sleep(0.05)
    assert (await cache.get("p", "k", slow(b"v3", 0))).value == b"v2"   # waited for the holder
    await holder


async def test_invalidation_makes_the_next_reader_recompute_and_fences_older_work(redis_client, namespace):
    cache, counts = shared_cache(redis_client, namespace, Policy(ttl=30, grace=30))
    await cache.get("lesson", "a", slow(b"old", 0))
    await cache.get("lesson", "b", slow(b"old", 0))
    store = cache.store
    early = await store.try_lease("lesson:a", 5)                 # a recompute from before...
    await store.release("lesson:a", early)
    await cache.invalidate("lesson", "a")                        # ...the lesson changed
    from server.cache.freshness import make_entry
    assert not await store.write("lesson:a", make_entry(b"before", 200, now=time.time(), delta=0,
                                                        fence=early[1], policy=cache.policy), early)
    assert (await cache.get("lesson", "a", slow(b"new", 0))).value == b"new"
    await cache.invalidate("lesson")
    assert (await cache.get("lesson", "b", slow(b"new", 0))).value == b"new"
    assert counts.recomputes == 4


async def test_negative_answers_are_cached(redis_client, namespace):
    cache, counts = shared_cache(redis_client, namespace, Policy(ttl=30, grace=30))

    async def missing() -> Computed:
        return Computed(b"", 404, negative=True)
    for _ in range(3):
        entry = await cache.get("lesson", "nope", missing)
        assert entry.negative and entry.status == 404
    assert counts.recomputes == 1


async def test_embedded_store_has_single_flight_and_serves_stale():
    counts = Counts()
    cache = Cache.embedded(Policy(ttl=0.2, grace=1.0, beta=0), counts)
    calls: list = []
    await asyncio.gather(*(cache.get("p", "k", slow(b"v1", 0.1, calls)) for _ in range(50)))
    assert calls == [b"v1"]
    await asyncio.sleep(0.3)
    stale = await asyncio.gather(*(cache.get("p", "k", slow(b"v2", 0.1, calls)) for _ in range(50)))
    assert {e.value for e in stale} == {b"v1"} and calls == [b"v1", b"v2"]
    await asyncio.sleep(0.15)
    assert (await cache.get("p", "k", slow(b"v3", 0, calls))).value == b"v2"
    await cache.close()


async def test_pages_are_still_computed_when_redis_is_down(namespace):
    from tests.services import RedisServer
    server = RedisServer()
    server.start()
    client = redis.asyncio.from_url(server.url, socket_timeout=1)
    try:
        cache, counts = shared_cache(client, namespace, Policy(ttl=30, grace=30), near_ttl=0.2)
        assert (await cache.get("p", "k", slow(b"up", 0))).value == b"up"
        server.stop()
        await asyncio.sleep(0.3)                                  # the near copy is no longer fresh
        answers = await asyncio.gather(*(cache.get("p", "k", slow(b"down", 0.05)) for _ in range(20)))
        assert {a.value for a in answers} == {b"down"}
        assert counts.recomputes == 2                             # still one per key in this process
        await cache.invalidate("p")                               # logged, not raised
    finally:
        await client.aclose()
        server.close()
