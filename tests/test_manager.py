"""KernelManager on the local sandbox: ownership, the cap, replacement, culling, events."""
from __future__ import annotations

import asyncio

import pytest

from kernels import messages
from kernels.events import (KernelAssigned, KernelDied, KernelGone, KernelRestarted,
                            StartQueued, StartRejected)
from kernels.manager import KernelManager, UnknownKernel, run_limits
from kernels.plugins import discover
from kernels.pool import CapacityError
from kernels.quotas import Quota, Quotas, Tier
from kernels.result import RunLimits, RunStatus
from kernels.sandbox import create_sandbox

SHORT = RunLimits(timeout=2.0)


class Recorder:
    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        self.events.append(event)

    def of(self, kind: type, kernel_id: str | None = None) -> list:
        return [e for e in self.events if isinstance(e, kind)
                and (kernel_id is None or getattr(e, "kernel_id", None) == kernel_id)]

    async def wait_for(self, kind: type, timeout: float = 10):
        async with asyncio.timeout(timeout):
            while not self.of(kind):
                await asyncio.sleep(0.02)
            return self.of(kind)[0]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def manager_for(make_settings, recorder):
    made: list[KernelManager] = []

    async def make(**env: str) -> KernelManager:
        settings = make_settings(LS_SANDBOX="local", **env)
        broken = lambda event: 1 / 0  # noqa: E731 - an observer's bug must not matter
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


def python_ahead(manager) -> list:
    return [s for s in manager._ahead.values() if s.kernel.plugin == "python"]


async def test_a_pooled_kernel_comes_with_its_session_open_and_its_handshake_done(manager):
    [ahead] = python_ahead(manager)                  # opened while the kernel waited in the pool
    assert ahead._ready and not ahead.dead
    kernel = await manager.start("ada", "python")
    assert kernel.pool_hit and manager._entry(kernel.id).session is ahead   # handed on as is
    result = await manager.execute(kernel.id, "print('hi')", SHORT)
    assert result.status is RunStatus.OK and result.stdout == "hi\n"
    await manager.pools["python"].wait_full(30)      # the refill opens its own
    [refill] = python_ahead(manager)
    assert refill is not ahead
    manager.pools["python"].resize(0)                # a kernel the pool removes takes its session
    async with asyncio.timeout(10):
        while python_ahead(manager) or not refill.dead:
            await asyncio.sleep(0.02)


async def test_a_session_that_died_in_the_pool_is_closed_and_replaced_at_the_start(manager):
    [ahead] = python_ahead(manager)
    ahead.killed = True                  # its kernel ended before the pool's watcher saw it
    kernel = await manager.start("ada", "python")
    session = manager._entry(kernel.id).session
    assert session is not ahead and not session.dead
    assert ahead._closed and ahead not in manager._ahead.values()   # nothing of it left open


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
    assigned = recorder.of(KernelAssigned)
    assert assigned[0].pool_hit is True and assigned[0].ref == alice.ref
    assert assigned[1].start_ms >= 0 and assigned[1].owner == "bob"
    assert (alice.pool_hit, bob.pool_hit) == (True, assigned[1].pool_hit)

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
    assert caught.value.retry_after > 0 and caught.value.reason == "host"


async def test_warm_kernels_count_against_the_host_cap(manager_for, recorder):
    manager = await manager_for(LS_MAX_KERNELS="2", LS_POOL_SIZE="1")
    await manager.pools["python"].wait_full(30)
    alive = lambda: len(manager.list()) + sum(p.ready + p.starting  # noqa: E731
                                              for p in manager.pools.values())
    refused = 0
    for owner in ("alice", "bob", "carol"):
        try:
            await manager.start(owner, "python")
        except CapacityError as exc:
            assert exc.reason == "host"
            refused += 1
        await asyncio.sleep(0.5)                    # the pools refill where there is room
        assert alive() <= 2
    assert refused >= 1 and StartRejected("carol", "host") in recorder.of(StartRejected)


async def test_one_owner_cannot_take_every_kernel(manager_for, recorder):
    manager = await manager_for(LS_MAX_KERNELS="4")
    manager.quotas = Quotas(anonymous=Quota(kernels=1, starts_per_minute=2, runs_per_minute=2),
                            member=Quota(kernels=2, starts_per_minute=3, runs_per_minute=5))
    first = await manager.start("anon", "python", Tier.ANONYMOUS)
    with pytest.raises(CapacityError) as caught:
        await manager.start("anon", "python", Tier.ANONYMOUS)
    assert caught.value.reason == "owner_kernels" and "already have 1 kernel" in str(caught.value)
    await manager.shutdown(first.id)
    await manager.start("anon", "python", Tier.ANONYMOUS)
    await manager.shutdown(manager.list("anon")[0].id)
    with pytest.raises(CapacityError) as caught:        # a third start within the minute
        await manager.start("anon", "python", Tier.ANONYMOUS)
    assert caught.value.reason == "owner_starts" and caught.value.retry_after > 1
    other = await manager.start("member", "python")      # another learner is not starved
    assert (await manager.execute(other.id, "print(1)", SHORT)).stdout == "1\n"
    for _ in range(3):
        await manager.start("admin", "python", Tier.EXEMPT)   # admins are exempt
    assert [manager.admit_run("anon") for _ in range(2)] == [None, None]
    refusal = manager.admit_run("anon")
    assert refusal.reason == "owner_runs" and "at most 2 a minute" in refusal.message
    assert {e.reason for e in recorder.of(StartRejected)} >= {"owner_kernels", "owner_starts",
                                                             "owner_runs"}


async def test_a_death_between_runs_is_noticed_and_repaired(manager, recorder):
    kernel = await manager.start("alice", "python")
    await manager.execute(kernel.id, "import os, threading\nthreading.Timer(0.3, os._exit, (7,)).start()")
    died = await recorder.wait_for(KernelDied, timeout=3)
    assert died.kernel_id == kernel.id and died.exit_code == 7
    await recorder.wait_for(KernelRestarted, timeout=10)
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
    assert recorder.of(KernelRestarted, kernel.id)


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
    culled = await recorder.wait_for(KernelGone, timeout=5)
    assert culled == KernelGone(idle.id, "alice", "idle", culled=True)
    assert manager.get(idle.id) is None
    assert (await run).status is RunStatus.OK


async def test_a_jupyter_clients_traffic_keeps_a_kernel_from_idle_culling(manager_for, recorder):
    manager = await manager_for(LS_IDLE_TIMEOUT="1")
    kernel = await manager.start("alice", "python")
    relay = await manager.connect(kernel.id)
    for n in range(8):                      # 2 s of a Jupyter client's own traffic
        relay.send(messages.ClientMessage("shell", messages.new_header("kernel_info_request"),
                                          {}, {}, {}))
        await asyncio.sleep(0.25)
    assert manager.get(kernel.id) is not None and manager.get(kernel.id).connections == 1
    culled = await recorder.wait_for(KernelGone, timeout=5)   # then it goes quiet
    assert culled.kernel_id == kernel.id and relay.closed


async def test_no_kernel_outlives_its_maximum_lifetime(manager_for, recorder):
    manager = await manager_for(LS_MAX_LIFETIME="1")
    kernel = await manager.start("alice", "python")
    culled = await recorder.wait_for(KernelGone, timeout=5)
    assert culled.kernel_id == kernel.id and culled.reason == "maximum lifetime reached"


async def test_close_removes_every_kernel(manager_for):
    manager = await manager_for(LS_POOL_SIZE="2")
    await manager.pools["python"].wait_full(30)
    kernels = [manager._kernels[(await manager.start(o, "python")).id].kernel
               for o in ("alice", "bob")]
    await manager.pools["python"].wait_full(30)
    pooled = list(manager.pools["python"]._ready)
    await manager.close()
    assert [await manager.sandbox.is_alive(k) for k in kernels + pooled] == [False] * 4


async def test_a_daemon_left_by_a_run_is_killed_when_the_run_ends(manager):
    kernel = await manager.start("mallory", "python", Tier.EXEMPT)
    escape = ("import os\n"
              "if os.fork() == 0:\n"
              "    os.setsid()\n"
              "    if os.fork() == 0:\n"
              "        while True: pass\n"
              "    os._exit(0)\n"
              "print('detached')")
    result = await manager.execute(kernel.id, escape, SHORT)
    assert result.stdout == "detached\n"
    ref = manager._kernels[kernel.id].kernel
    before = await manager.sandbox.cpu_seconds(ref)
    await asyncio.sleep(1.0)
    assert await manager.sandbox.cpu_seconds(ref) - before < 0.3      # nothing spins any more
    assert (await manager.execute(kernel.id, "print(1)", SHORT)).stdout == "1\n"


async def test_a_forged_end_of_run_does_not_let_code_run_on(manager_for, recorder):
    manager = await manager_for(LS_IDLE_CPU_WINDOW="1.5")
    kernel = await manager.start("mallory", "python", Tier.EXEMPT)
    forge = ("k = get_ipython().kernel\n"
             "parent = k.get_parent()\n"
             "k.session.send(k.shell_stream, 'execute_reply', {'status': 'ok', 'execution_count': 1},"
             " parent=parent, ident=k._parent_ident['shell'])\n"
             "k.session.send(k.iopub_socket, 'status', {'execution_state': 'idle'}, parent=parent)\n"
             "while True: pass")
    result = await manager.execute(kernel.id, forge, RunLimits(timeout=30))
    assert result.status is RunStatus.OK            # the forged reply ended the run at once...
    restarted = await recorder.wait_for(KernelRestarted, timeout=10)   # ...but not the loop
    assert restarted.reason == "burning CPU while idle"
    after = await manager.execute(kernel.id, "print(1)", SHORT)
    assert after.stdout == "1\n" and "kept running after the run had ended" in after.message


async def test_past_capacity_requests_wait_their_turn_in_order(manager_for, recorder):
    manager = await manager_for(LS_MAX_KERNELS="1")
    first = await manager.start("alice", "python")
    told: dict[str, list[int]] = {"bob": [], "carol": []}
    bob = asyncio.create_task(manager.start("bob", "python", on_queued=told["bob"].append))
    await asyncio.sleep(0.2)
    carol = asyncio.create_task(manager.start("carol", "python", on_queued=told["carol"].append))
    await asyncio.sleep(0.2)
    assert manager.queue_length == 2 and told == {"bob": [1], "carol": [2]}
    with pytest.raises(CapacityError):                  # no way to be told a position: 429
        await manager.start("dave", "python")
    await manager.shutdown(first.id)
    bobs = await asyncio.wait_for(bob, 30)
    assert manager.get(bobs.id).owner == "bob" and not carol.done()
    assert told["carol"] == [2, 1]
    await manager.shutdown(bobs.id)
    assert manager.get((await asyncio.wait_for(carol, 30)).id).owner == "carol"
    assert len(recorder.of(StartQueued)) == 2 and manager.queue_length == 0
