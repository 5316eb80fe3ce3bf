"""KernelManager on the local sandbox: ownership, the cap, replacement, culling, events."""
from __future__ import annotations

import asyncio

import pytest

from kernels.manager import KernelManager, UnknownKernel, run_limits
from kernels.plugins import discover
from kernels.pool import CapacityError
from kernels.result import RunLimits, RunStatus
from kernels.sandbox import create_sandbox

SHORT = RunLimits(timeout=2.0)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, kind: str, data: dict) -> None:
        self.events.append((kind, data))

    def kinds(self, kernel_id: str | None = None) -> list[str]:
        return [k for k, d in self.events if kernel_id is None or d.get("kernel_id") == kernel_id]

    async def wait_for(self, kind: str, timeout: float = 10) -> dict:
        async with asyncio.timeout(timeout):
            while True:
                for k, data in self.events:
                    if k == kind:
                        return data
                await asyncio.sleep(0.02)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def manager_for(make_settings, recorder):
    made: list[KernelManager] = []

    async def make(**env: str) -> KernelManager:
        settings = make_settings(LS_SANDBOX="local", **env)
        broken = lambda kind, data: 1 / 0  # noqa: E731 - an observer's bug must not matter
        manager = KernelManager(settings, create_sandbox(settings), discover(),
                                on_event=[broken, recorder])
        await manager.startup()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        await manager.close()
        await manager.sandbox.close()


@pytest.fixture
async def manager(manager_for) -> KernelManager:
    manager = await manager_for(LS_POOL_SIZE="1")
    await manager.pools["python"].wait_full(30)
    return manager


def test_run_limits_merge_settings_and_plugin(make_settings):
    settings = make_settings(LS_RUN_TIMEOUT="3", LS_OUTPUT_LIMIT="2048", LS_MEMORY_MB="128")

    class Plain:
        name, limits = "plain", {}

    class Slow:
        name, limits = "slow", {"timeout": 30.0}

    plain = run_limits(settings, Plain())
    assert (plain.timeout, plain.output_bytes, plain.memory_mb) == (3.0, 2048, 128)
    assert (run_limits(settings, Slow()).timeout, run_limits(settings, Slow()).output_bytes) == (
        30.0, 2048)


async def test_start_list_execute_and_shutdown(manager, recorder):
    alice = await manager.start("alice", "python")
    bob = await manager.start("bob", "python")
    assert [k.id for k in manager.list(owner="alice")] == [alice.id]
    assert {k.id for k in manager.list()} == {alice.id, bob.id}
    assert manager.get(alice.id).execution_state == "idle"
    assigned = [d for k, d in recorder.events if k == "kernel.assigned"]
    assert assigned[0]["pool_hit"] is True and assigned[0]["ref"] == alice.ref
    assert assigned[1]["start_ms"] >= 0 and assigned[1]["owner"] == "bob"

    result = await manager.execute(alice.id, "print('hello')")
    assert result.status is RunStatus.OK and result.stdout == "hello\n"
    assert manager.get(alice.id).last_activity >= alice.last_activity

    await manager.shutdown(alice.id)
    assert manager.get(alice.id) is None
    with pytest.raises(UnknownKernel):
        await manager.execute(alice.id, "print(1)")
    assert (await manager.execute(bob.id, "print(2)", SHORT)).stdout == "2\n"


async def test_the_host_cap_turns_starts_away(manager_for):
    manager = await manager_for(LS_MAX_KERNELS="1")
    await manager.start("alice", "python")
    with pytest.raises(CapacityError) as caught:
        await manager.start("bob", "python")
    assert caught.value.retry_after > 0


async def test_a_death_between_runs_is_noticed_and_repaired(manager, recorder):
    kernel = await manager.start("alice", "python")
    await manager.execute(kernel.id, "import os, threading\nthreading.Timer(0.3, os._exit, (7,)).start()")
    died = await recorder.wait_for("kernel.died", timeout=3)
    assert died["kernel_id"] == kernel.id and died["exit_code"] == 7
    await recorder.wait_for("kernel.restarted", timeout=10)
    assert manager.get(kernel.id).ref != kernel.ref
    assert (await manager.execute(kernel.id, "print(1)", SHORT)).stdout == "1\n"


async def test_a_death_during_a_run_says_a_fresh_kernel_was_started(manager):
    kernel = await manager.start("alice", "python")
    result = await manager.execute(kernel.id, "import os; os._exit(1)", SHORT)
    assert result.status is RunStatus.DIED
    assert result.message == "The kernel died (exit code 1); a fresh one has been started"
    assert (await manager.execute(kernel.id, "print(1)", SHORT)).stdout == "1\n"


async def test_restart_keeps_the_id_and_forgets_the_variables(manager, recorder):
    kernel = await manager.start("alice", "python")
    await manager.execute(kernel.id, "x = 1")
    after = await manager.restart(kernel.id)
    assert after.id == kernel.id and after.ref != kernel.ref
    result = await manager.execute(kernel.id, "x", SHORT)
    assert result.status is RunStatus.ERROR and result.error.ename == "NameError"
    assert "kernel.restarted" in recorder.kinds(kernel.id)


async def test_restart_during_a_run_ends_the_run(manager):
    kernel = await manager.start("alice", "python")
    run = asyncio.create_task(manager.execute(kernel.id, "import time; time.sleep(60)",
                                              RunLimits(timeout=30)))
    await asyncio.sleep(0.5)
    await asyncio.wait_for(manager.restart(kernel.id), 10)
    result = await asyncio.wait_for(run, 5)
    assert result.status is RunStatus.DIED
    assert (await manager.execute(kernel.id, "print(1)", SHORT)).stdout == "1\n"


async def test_interrupt(manager):
    kernel = await manager.start("alice", "python")
    run = asyncio.create_task(manager.execute(kernel.id, "import time; time.sleep(60)",
                                              RunLimits(timeout=30)))
    await asyncio.sleep(0.5)
    assert manager.get(kernel.id).execution_state == "busy"
    await manager.interrupt(kernel.id)
    result = await asyncio.wait_for(run, 5)
    assert result.error.ename == "KeyboardInterrupt"


async def test_idle_kernels_are_culled_and_busy_ones_are_not(manager_for, recorder):
    manager = await manager_for(LS_IDLE_TIMEOUT="1")
    idle = await manager.start("alice", "python")
    busy = await manager.start("bob", "python")
    run = asyncio.create_task(manager.execute(busy.id, "import time; time.sleep(2.5)",
                                              RunLimits(timeout=10)))
    culled = await recorder.wait_for("kernel.culled", timeout=5)
    assert culled == {"kernel_id": idle.id, "owner": "alice", "reason": "idle"}
    assert manager.get(idle.id) is None
    assert (await run).status is RunStatus.OK


async def test_activity_outside_execute_keeps_a_kernel_from_idle_culling(manager_for, recorder):
    manager = await manager_for(LS_IDLE_TIMEOUT="1")
    kernel = await manager.start("alice", "python")
    for _ in range(8):                      # 2 s of a Jupyter client's own traffic
        manager.touch(kernel.id)
        await asyncio.sleep(0.25)
    assert manager.get(kernel.id) is not None
    culled = await recorder.wait_for("kernel.culled", timeout=5)   # then it goes quiet
    assert culled["kernel_id"] == kernel.id


async def test_no_kernel_outlives_its_maximum_lifetime(manager_for, recorder):
    manager = await manager_for(LS_MAX_LIFETIME="1")
    kernel = await manager.start("alice", "python")
    culled = await recorder.wait_for("kernel.culled", timeout=5)
    assert culled["kernel_id"] == kernel.id and culled["reason"] == "maximum lifetime reached"


async def test_close_removes_every_kernel(manager_for):
    manager = await manager_for(LS_POOL_SIZE="2")
    await manager.pools["python"].wait_full(30)
    kernels = [manager._kernels[(await manager.start(o, "python")).id].kernel
               for o in ("alice", "bob")]
    await manager.pools["python"].wait_full(30)
    pooled = list(manager.pools["python"]._ready)
    await manager.close()
    assert [await manager.sandbox.is_alive(k) for k in kernels + pooled] == [False] * 4
