"""Kernel start, hand-out and round-trip costs, each as a ratio against a baseline of the same run.

Baselines: a bare ipykernel process started with jupyter_client (no sandbox),
and a bare jupyter_client round-trip to the same kernel the session talks to.
Uses the docker and local sandboxes with the python plugin's image; run
`make bench` (it builds the images first).
"""
from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

from kernels.plugins import discover
from kernels.pool import Pool, StartGate
from kernels.result import RunLimits
from kernels.sandbox import StartSpec, create_sandbox
from kernels.session import KernelSession
from server import config

STARTS = 5          # cold starts per kind
HANDOUTS = 10       # warm hand-outs
ROUND_TRIPS = 50    # `1+1` executions per client
IDLE_KERNELS = 10   # kernels measured for memory
CONCURRENT = 8      # kernels started at once


def line(what: str, value: str, ratio: str = "", goal: str = "") -> None:
    print(f"  {what:<44} {value:>12}  {ratio:<22} {goal}", flush=True)


async def median_ms(times: int, step: Callable[[], Awaitable[float]]) -> float:
    return statistics.median([await step() for _ in range(times)]) * 1000


async def bare_start() -> float:
    """A plain ipykernel process to its first kernel_info reply: the baseline start."""
    manager = AsyncKernelManager(kernel_name="python3")
    began = time.perf_counter()
    await manager.start_kernel()
    client = manager.client()
    client.start_channels(hb=False)
    try:
        while True:
            try:
                await client.kernel_info(reply=True, timeout=0.05)
                return time.perf_counter() - began
            except TimeoutError:
                continue
    finally:
        client.stop_channels()
        client.context.destroy(linger=0)  # not left to GC: its term() can hang a thread
        await manager.shutdown_kernel(now=True)


async def sandbox_start(sandbox, spec: StartSpec) -> float:
    began = time.perf_counter()
    kernel = await sandbox.start(spec)
    elapsed = time.perf_counter() - began
    await sandbox.kill(kernel)
    return elapsed


async def handouts(sandbox, spec: StartSpec) -> list[float]:
    pool = Pool(sandbox, spec, 1, StartGate(2, 8))
    pool.refill()
    times = []
    try:
        for _ in range(HANDOUTS):
            await pool.wait_full(30)
            began = time.perf_counter()
            kernel, hit = await pool.acquire()
            times.append(time.perf_counter() - began)
            assert hit, "the pool was empty"
            await sandbox.kill(kernel)
    finally:
        await pool.close()
    return times


async def round_trips(sandbox, spec: StartSpec) -> tuple[float, float]:
    """Median `1+1` through KernelSession and through a bare client, same kernel."""
    kernel = await sandbox.start(spec)
    session = KernelSession(sandbox, kernel)
    bare = AsyncKernelClient()
    bare.load_connection_info(dict(kernel.connection))
    bare.start_channels(hb=False)
    limits = RunLimits()

    async def through_session() -> float:
        began = time.perf_counter()
        await session.execute("1+1", limits)
        return time.perf_counter() - began

    async def through_bare() -> float:
        began = time.perf_counter()
        reply = await bare.execute("1+1", reply=True, timeout=10)
        msg_id = reply["parent_header"]["msg_id"]
        while True:  # the run ends when iopub says idle, as for the session
            msg = await bare.get_iopub_msg(timeout=10)
            if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle"):
                return time.perf_counter() - began

    try:
        await through_session()
        await bare.kernel_info(reply=True, timeout=10)
        await asyncio.sleep(0.2)   # let the bare client's iopub subscription settle
        while await bare.iopub_channel.msg_ready():
            await bare.get_iopub_msg()
        mine, theirs = [], []
        for _ in range(ROUND_TRIPS):  # interleaved, so drift hurts both alike
            mine.append(await through_session())
            theirs.append(await through_bare())
        return statistics.median(mine) * 1000, statistics.median(theirs) * 1000
    finally:
        bare.stop_channels()
        bare.context.destroy(linger=0)  # not left to GC: its term() can hang a thread
        await session.close()
        await sandbox.kill(kernel)


def container_memory(ref: str) -> int | None:
    """Bytes a container uses, as `docker stats` counts it (cgroup v1 or v2)."""
    for base in (Path("/sys/fs/cgroup/memory/docker") / ref,
                 Path(f"/sys/fs/cgroup/system.slice/docker-{ref}.scope"),
                 Path("/sys/fs/cgroup/docker") / ref):
        usage = next((base / n for n in ("memory.usage_in_bytes", "memory.current")
                      if (base / n).exists()), None)
        if usage is None:
            continue
        stat = dict(l.split() for l in (base / "memory.stat").read_text().splitlines())
        cache = int(stat.get("total_inactive_file", stat.get("inactive_file", 0)))
        return int(usage.read_text()) - cache
    return None


async def idle_memory(sandbox, spec: StartSpec) -> tuple[float, int]:
    kernels = await asyncio.gather(*(sandbox.start(spec) for _ in range(IDLE_KERNELS)))
    try:
        await asyncio.sleep(2)   # let start-up garbage settle
        sizes = [container_memory(str(k.ref)) for k in kernels]
        known = [s for s in sizes if s]
        return statistics.mean(known) / 2**20 if known else float("nan"), len(known)
    finally:
        await asyncio.gather(*(sandbox.kill(k) for k in kernels))


async def concurrent_starts(sandbox, spec: StartSpec, concurrency: int) -> float:
    gate = StartGate(concurrency, CONCURRENT)

    async def one():
        async with gate.slot(queued=True):
            return await sandbox.start(spec)

    began = time.perf_counter()
    kernels = await asyncio.gather(*(one() for _ in range(CONCURRENT)))
    elapsed = time.perf_counter() - began
    await asyncio.gather(*(sandbox.kill(k) for k in kernels))
    return CONCURRENT / elapsed


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as data:
        env = {"LS_DATA_DIR": data, "LS_INSTANCE": f"bench-{int(time.time())}"}
        docker_settings = config.load({**env, "LS_SANDBOX": "docker"})
        local_settings = config.load({**env, "LS_SANDBOX": "local"})
        python = next(p for p in discover() if p.name == "python")
        spec = StartSpec(plugin=python.name, image=python.image, argv=tuple(python.argv),
                         local_argv=tuple(python.local_argv),
                         memory_mb=docker_settings.memory_mb, pids_limit=docker_settings.pids_limit,
                         cpus=docker_settings.cpus, tmp_mb=docker_settings.tmp_mb)
        docker_box, local_box = create_sandbox(docker_settings), create_sandbox(local_settings)
        try:
            await docker_box.reap_orphans()
            await sandbox_start(docker_box, spec)          # warm the image cache
            bare = await median_ms(STARTS, bare_start)
            cold = await median_ms(STARTS, lambda: sandbox_start(docker_box, spec))
            local = await median_ms(STARTS, lambda: sandbox_start(local_box, spec))
            line("bare ipykernel start (baseline)", f"{bare:.0f} ms")
            line("docker sandbox cold start", f"{cold:.0f} ms", f"{cold / bare:.2f}x bare", "goal <= 1.5x")
            line("local sandbox cold start", f"{local:.0f} ms", f"{local / bare:.2f}x bare")

            warm = statistics.median(await handouts(docker_box, spec)) * 1000
            line("warm pool hand-out (median)", f"{warm:.3f} ms", f"{cold / warm:.0f}x faster than cold",
                 "goal < 5 ms and > 100x")

            mine, theirs = await round_trips(docker_box, spec)
            line("1+1 round-trip, bare jupyter_client (baseline)", f"{theirs:.2f} ms")
            line("1+1 round-trip through KernelSession", f"{mine:.2f} ms", f"{mine / theirs:.2f}x bare")

            mib, counted = await idle_memory(docker_box, spec)
            line(f"idle kernel memory ({counted} containers)", f"{mib:.1f} MiB",
                 f"{1024 / mib:.0f} idle kernels per GiB")

            serial = 1000 / cold
            rate = await concurrent_starts(docker_box, spec, docker_settings.start_concurrency)
            line("sequential starts (baseline)", f"{serial:.2f} /s")
            line(f"concurrent starts ({CONCURRENT}, gate of {docker_settings.start_concurrency})",
                 f"{rate:.2f} /s", f"{rate / serial:.2f}x sequential")
        finally:
            await docker_box.reap_orphans()
            await docker_box.close()
            await local_box.close()
