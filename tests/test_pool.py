"""The start gate and warm pools, on the local sandbox (fast starts, real kernels)."""
from __future__ import annotations

import asyncio

import pytest

import dataclasses

from kernels.manager import start_spec
from kernels.plugins import discover
from kernels.pool import CapacityError, Pool, StartGate
from kernels.sandbox import StartSpec, create_sandbox


async def test_gate_caps_starts_in_flight():
    gate, running, most = StartGate(concurrency=2, queue=10), 0, 0

    async def start():
        nonlocal running, most
        async with gate.slot(queued=True):
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.02)
            running -= 1

    await asyncio.gather(*(start() for _ in range(7)))
    assert most == 2 and gate.waiting == 0


async def test_gate_turns_requests_away_past_the_queue():
    gate, release = StartGate(concurrency=1, queue=2), asyncio.Event()

    async def start():
        async with gate.slot(queued=True):
            await release.wait()

    holders = [asyncio.create_task(start()) for _ in range(3)]  # 1 starting + 2 waiting
    await asyncio.sleep(0.01)
    with pytest.raises(CapacityError) as caught:
        async with gate.slot(queued=True):
            pass
    assert caught.value.retry_after >= 1
    refill = asyncio.create_task(_refill_slot(gate, release))  # refills never count
    await asyncio.sleep(0.01)
    assert not refill.done() and gate.waiting == 2
    release.set()
    async with asyncio.timeout(1):
        await asyncio.gather(*holders, refill)


async def _refill_slot(gate: StartGate, release: asyncio.Event) -> None:
    async with gate.slot(queued=False):
        await release.wait()


@pytest.fixture
def settings(make_settings):
    return make_settings(LS_SANDBOX="local")


@pytest.fixture
def spec(settings) -> StartSpec:
    return start_spec(settings, next(p for p in discover() if p.name == "python"))


@pytest.fixture
async def local(settings):
    sandbox = create_sandbox(settings)
    yield sandbox
    await sandbox.reap_orphans()
    await sandbox.close()


@pytest.fixture
async def pool_of(local, spec):
    """Pools of the python plugin on the local sandbox, closed after the test."""
    made: list[Pool] = []

    def make(size: int, start: StartSpec = spec) -> Pool:
        made.append(Pool(local, start, size, StartGate(2, 8)))
        made[-1].refill()
        return made[-1]

    yield make
    for pool in made:
        await pool.close()


async def test_pool_hands_out_warm_kernels_once_and_refills(local, pool_of):
    pool = pool_of(2)
    assert await pool.wait_full(30)
    first, hit1 = await pool.acquire()
    second, hit2 = await pool.acquire()
    assert hit1 and hit2 and first.id != second.id
    assert await local.is_alive(first) and await local.is_alive(second)
    assert await pool.wait_full(30)  # refilled in the background
    for kernel in (first, second):
        await local.kill(kernel)


async def test_empty_pool_starts_cold(local, pool_of):
    pool = pool_of(0)
    kernel, hit = await pool.acquire()
    assert not hit and await local.is_alive(kernel)
    assert pool.ready == 0 and pool.starting == 0  # size 0: nothing kept warm
    await local.kill(kernel)


async def test_a_pooled_kernel_that_dies_is_dropped_and_replaced(local, pool_of):
    pool = pool_of(1)
    assert await pool.wait_full(30)
    doomed = pool._ready[0]
    await local.kill(doomed)
    async with asyncio.timeout(30):
        while not pool.ready or pool._ready[0] is doomed:
            await asyncio.sleep(0.05)
    kernel, hit = await pool.acquire()
    assert hit and kernel.id != doomed.id and await local.is_alive(kernel)
    await local.kill(kernel)


async def test_resize_grows_and_shrinks_and_close_removes_all(local, pool_of):
    pool = pool_of(1)
    assert await pool.wait_full(30)
    pool.resize(3)
    assert await pool.wait_full(60)
    kernels = list(pool._ready)
    pool.resize(1)
    await asyncio.sleep(0.5)
    assert pool.ready == 1
    await pool.close()
    assert [await local.is_alive(k) for k in kernels] == [False] * 3


async def test_a_start_that_fails_backs_off_instead_of_spinning(pool_of, spec):
    pool = pool_of(2, dataclasses.replace(spec, local_argv=("/nonexistent/kernel",),
                                          argv=("/nonexistent/kernel",)))
    await asyncio.sleep(1.0)
    assert pool.ready == 0
    assert pool._failures <= 4  # 0.5 s, then 1 s, ... not hundreds of tries


async def test_a_drained_pool_removes_its_kernels_starts_cold_and_resumes(local, pool_of):
    pool = pool_of(1)
    assert await pool.wait_full(30)
    warm = pool._ready[0]
    pool.drain()
    assert pool.drained and pool.ready == 0
    async with asyncio.timeout(10):
        while await local.is_alive(warm):
            await asyncio.sleep(0.05)
    kernel, hit = await pool.acquire()         # a cold start, and no refill behind it
    assert not hit and await local.is_alive(kernel)
    await asyncio.sleep(0.5)
    assert pool.ready == 0 and pool.starting == 0
    pool.resume()
    assert not pool.drained and await pool.wait_full(30)
    await local.kill(kernel)


async def test_a_kernel_whose_preparation_fails_is_removed_and_the_pool_backs_off(local, spec):
    started: list = []

    async def refuse(kernel) -> None:
        started.append(kernel)
        raise RuntimeError("no handshake")

    pool = Pool(local, spec, 1, StartGate(2, 8), prepare=refuse)
    pool.refill()
    try:
        async with asyncio.timeout(30):
            while not started:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert pool.ready == 0 and 1 <= pool._failures <= 3
        assert not await local.is_alive(started[0])          # started, not prepared: removed
    finally:
        await pool.close()


async def test_a_kernel_the_pool_removes_is_released_first(local, spec):
    prepared, released = [], []

    async def prepare(kernel) -> None:
        prepared.append(kernel.id)

    async def release(kernel) -> None:
        assert await local.is_alive(kernel)                  # before its removal
        released.append(kernel.id)

    pool = Pool(local, spec, 2, StartGate(2, 8), prepare=prepare, release=release)
    pool.refill()
    try:
        assert await pool.wait_full(30)
        kernel, hit = await pool.acquire()                   # handed out: not released
        assert hit and kernel.id in prepared
        pool.resize(0)
        async with asyncio.timeout(10):
            while len(released) < 1:
                await asyncio.sleep(0.05)
        assert kernel.id not in released and set(released) <= set(prepared)
        await local.kill(kernel)
    finally:
        await pool.close()
    assert set(released) == set(prepared) - {kernel.id}       # every other prepared kernel
