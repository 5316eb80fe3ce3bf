"""What the docker and local sandbox tests share: an owner process to SIGKILL, a stray to kill."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from kernels.manager import start_spec
from kernels.plugins import discover
from kernels.sandbox import Sandbox, SandboxKernel
from server.config import Settings
from tests.kernel_client import connect, run

REPO = Path(__file__).resolve().parent.parent

# A daemon as learner code makes one: double fork, setsid, then a busy loop. Its pid (as the
# kernel sees it) goes to a file so that the kernel can check afterwards that it is gone.
STRAY = ("import os\n"
         "if os.fork() == 0:\n"
         "    os.setsid()\n"
         "    if os.fork() == 0:\n"
         "        open('/tmp/stray.pid', 'w').write(str(os.getpid()))\n"
         "        while True:\n"
         "            pass\n"
         "    os._exit(0)\n"
         "os.wait()\n"
         "import time\n"
         "while not os.path.exists('/tmp/stray.pid'):\n"
         "    time.sleep(0.01)\n"
         "print('started')")
STRAY_CPU = ("import os\n"       # the daemon's own CPU seconds, as the kernel sees them
             "f = open(f\"/proc/{open('/tmp/stray.pid').read()}/stat\").read().rsplit(')', 1)[1]\n"
             "print(sum(map(int, f.split()[11:13])) / os.sysconf('SC_CLK_TCK'))")
STRAY_GONE = ("import os\n"
              "try:\n    os.kill(int(open('/tmp/stray.pid').read()), 0); print('alive')\n"
              "except ProcessLookupError:\n    print('gone')")


class Owner:
    """Another process owning a sandbox of the same instance: a launcher, or
    `python -m tests.lease_child`, which says which kernel it started."""

    def __init__(self, proc: asyncio.subprocess.Process, info: dict | None = None) -> None:
        self.proc, self.info = proc, info

    @classmethod
    async def spawn(cls, settings: Settings, *args: str) -> Owner:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LS_")}
        env.update(LS_SANDBOX=settings.sandbox, LS_INSTANCE=settings.instance,
                   LS_RUNTIME_DIR=str(settings.runtime_dir), LS_DATA_DIR=str(settings.data_dir),
                   LS_MEMORY_MB=str(settings.memory_mb), LS_TMP_MB=str(settings.tmp_mb),
                   LS_PIDS_LIMIT=str(settings.pids_limit), LS_CPUS=str(settings.cpus))
        proc = await asyncio.create_subprocess_exec(sys.executable, *args, cwd=REPO, env=env,
                                                    stdout=asyncio.subprocess.PIPE)
        return cls(proc)

    @classmethod
    async def start(cls, settings: Settings) -> Owner:
        owner = await cls.spawn(settings, "-m", "tests.lease_child")
        line = await asyncio.wait_for(owner.proc.stdout.readline(), 60)
        assert line, "the owner process died before it started a kernel"
        owner.info = json.loads(line)
        return owner

    async def sigkill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()


async def reap_until(sandbox: Sandbox, gone: Callable[[], Awaitable[bool]],
                     every: float = 0.5, limit: float = 20.0) -> tuple[float, int]:
    """Reconcile as a server would, every `every` s, until `gone()`: (seconds, kernels reaped)."""
    began, reaped = time.monotonic(), 0
    while time.monotonic() - began < limit:
        reaped += await sandbox.reap_orphans()
        if await gone():
            return time.monotonic() - began, reaped
        await asyncio.sleep(every)
    raise AssertionError(f"not reaped within {limit} s")


async def timed(call: Awaitable) -> tuple[object, float]:
    began = time.perf_counter()
    result = await call
    return result, (time.perf_counter() - began) * 1000


async def stray_is_killed_and_cpu_watched(sandbox: Sandbox, kernel: SandboxKernel) -> dict:
    """Start a busy daemon in the kernel, watch the CPU, kill it: the figures, checked."""
    async with connect(kernel) as client:
        idle_from, _ = await timed(sandbox.cpu_seconds(kernel))
        await asyncio.sleep(1.5)
        idle_to, cpu_ms = await timed(sandbox.cpu_seconds(kernel))
        out, reply = await run(client, STRAY)
        assert (out, reply["status"]) == ("started\n", "ok"), reply
        busy_from = await sandbox.cpu_seconds(kernel)
        stray_from = float((await run(client, STRAY_CPU))[0])
        await asyncio.sleep(2.0)
        stray_to = float((await run(client, STRAY_CPU))[0])
        busy_to = await sandbox.cpu_seconds(kernel)
        killed, kill_ms = await timed(sandbox.kill_strays(kernel))
        after_from = await sandbox.cpu_seconds(kernel)
        await asyncio.sleep(1.5)
        after_to = await sandbox.cpu_seconds(kernel)
        gone, _ = await run(client, STRAY_GONE)
        again, idle_kill_ms = await timed(sandbox.kill_strays(kernel))
        out, reply = await run(client, "print(6 * 7)")
    figures = {"idle": (idle_to - idle_from) / 1.5, "busy": busy_to - busy_from,
               "stray": stray_to - stray_from,
               "after": (after_to - after_from) / 1.5, "killed": killed, "again": again,
               "cpu_ms": cpu_ms, "kill_ms": kill_ms, "nothing_to_kill_ms": idle_kill_ms}
    assert figures["idle"] < 0.1, figures
    # It counts what the daemon used, give or take the kernel's own work in the two runs that
    # read the daemon's figure. (About 1 s per s on an idle host; two cores shared by many
    # make it less, so only the agreement is checked, and that the daemon ran at all.)
    assert figures["stray"] > 0.2 and abs(figures["busy"] - figures["stray"]) < 0.25, figures
    assert figures["after"] < 0.1, figures
    assert killed >= 1 and again == 0 and gone == "gone\n", figures
    assert (out, reply["status"]) == ("42\n", "ok")           # the kernel itself lives on
    return figures


async def helpers_of_the_kernel_are_its_own(sandbox: Sandbox, settings: Settings) -> None:
    """bash_kernel's bash was there when the kernel was ready: it stays; a job it ran goes."""
    bash = next(p for p in discover() if p.name == "bash")
    kernel = await sandbox.start(start_spec(settings, bash))
    try:
        async with connect(kernel) as client:
            assert await sandbox.kill_strays(kernel) == 0
            out, reply = await run(client, "sleep 1000 &")
            assert reply["status"] == "ok", reply
            assert await sandbox.kill_strays(kernel) == 1
            out, reply = await run(client, "echo still here")
    finally:
        await sandbox.kill(kernel)
    assert out.startswith("still here\n") and "Killed" in out, out    # bash saw its job die
    assert reply["status"] == "ok", reply
