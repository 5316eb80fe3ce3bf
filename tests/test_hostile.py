"""Hostile programs against the docker sandbox, through the manager.

Each one must hit a limit (or fail harmlessly), tell the learner in plain
words, leave a kernel that answers `print(1)`, and never stall another
owner's kernel, which runs code while the hostile program is still going.
One manager (and one bystander kernel) serves the whole module to keep it quick.
"""
from __future__ import annotations

import asyncio
import subprocess

import pytest
import pytest_asyncio

from kernels.manager import KernelManager
from kernels.plugins import discover
from kernels.quotas import Tier
from kernels.result import LimitHit, RunStatus
from kernels.sandbox import create_sandbox
from server import config
from tests import services

pytestmark = [pytest.mark.docker, pytest.mark.asyncio(loop_scope="module")]

LABEL = "lessonserver.instance"


def containers(*filters: str) -> list[str]:
    args = [a for f in filters for a in ("--filter", f)]
    out = subprocess.run(["docker", "ps", "-aq", *args], check=True, capture_output=True, text=True)
    return out.stdout.split()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def manager(tmp_path_factory, instance_name):
    services.ensure_docker()
    settings = config.load({
        "LS_DATA_DIR": str(tmp_path_factory.mktemp("hostile")), "LS_INSTANCE": instance_name,
        "LS_SANDBOX": "docker", "LS_POOL_SIZE": "2", "LS_RUN_TIMEOUT": "2",
        "LS_MEMORY_MB": "128", "LS_TMP_MB": "32", "LS_PIDS_LIMIT": "64"})
    manager = KernelManager(settings, create_sandbox(settings), discover())
    await manager.startup()
    await manager.pools["python"].wait_full(60)
    yield manager
    await manager.close()
    await manager.sandbox.close()
    assert containers(f"label={LABEL}={instance_name}") == [], "containers left behind"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bystander(manager) -> str:
    kernel = await manager.start("bob", "python")
    await manager.execute(kernel.id, "n = 0")
    return kernel.id


@pytest_asyncio.fixture(loop_scope="module")
async def kernel(manager) -> str:
    kernel = await manager.start("mallory", "python", Tier.EXEMPT)   # the sandbox is tested, not quotas
    yield kernel.id
    await manager.shutdown(kernel.id)


async def hostile(manager: KernelManager, kernel: str, bystander: str, code: str):
    """Run `code`; meanwhile the bystander must be served; afterwards both answer."""
    run = asyncio.create_task(manager.execute(kernel, code))
    await asyncio.sleep(0.3)
    served = await asyncio.wait_for(manager.execute(bystander, "n += 1\nprint('ok')"), 10)
    assert served.stdout == "ok\n", served
    result = await run
    after = await manager.execute(kernel, "print(1)")
    assert (after.status, after.stdout) == (RunStatus.OK, "1\n"), after
    return result


async def test_infinite_loop(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander, "x = 5\nwhile True: pass")
    assert (result.status, result.limit, result.message) == (
        RunStatus.LIMIT, LimitHit.TIMEOUT, "Stopped after 2 s")
    assert (await manager.execute(kernel, "print(x)")).stdout == "5\n"  # same kernel


async def test_endless_sleep(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander, "import time\ntime.sleep(10**6)")
    assert (result.limit, result.message) == (LimitHit.TIMEOUT, "Stopped after 2 s")


async def test_c_code_that_holds_the_gil_is_killed(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander, "sum(range(10**13))")
    assert result.limit is LimitHit.TIMEOUT
    assert result.message == ("Stopped after 2 s. A fresh kernel has been started, "
                              "so earlier variables are gone")


async def test_fork_bomb(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander, "import os\nwhile True:\n    os.fork()")
    # Measured: every forked copy of ipykernel formats its own BlockingIOError traceback
    # and keeps running, ~2 MB/s each; with 128 MB the memory limit usually stops it first.
    # Either stop is right, and the learner is told which one in plain words.
    assert (result.status, result.limit) in ((RunStatus.LIMIT, LimitHit.PIDS),
                                             (RunStatus.LIMIT, LimitHit.MEMORY))
    assert result.message.startswith(("Too many processes (limit 64).",
                                       "Your program used more than 128 MiB of memory"))


async def test_memory_bomb(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander,
                           "hog = []\nwhile True:\n    hog.append(b'x' * 10**7)")
    assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.MEMORY)
    assert result.message.startswith(
        "Your program used more than 128 MiB of memory and was stopped. A fresh kernel")


async def test_output_flood(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander, "while True:\n    print('x' * 100)")
    assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.OUTPUT)
    assert result.message.startswith("Output cut at 64 KB (") and result.bytes_dropped > 0
    assert len(result.stdout) == 65536


async def test_one_huge_line(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander, "print('y' * 10**7, end='')")
    assert result.limit is LimitHit.OUTPUT and len(result.stdout) == 65536
    assert result.message.startswith("Output cut at 64 KB (9.")


async def test_filling_tmp(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander,
                           "with open('/tmp/fill', 'wb') as f:\n"
                           "    while True:\n        f.write(b'0' * 2**20)")
    assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.DISK)
    assert result.message == "The disk space for files is full (limit 32 MB)"


async def test_killing_pid_1(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander, "import os\nos.kill(1, 9)\nprint('still here')")
    # PID 1 of a container ignores signals it has no handler for, even SIGKILL.
    assert result.status is RunStatus.OK and result.stdout == "still here\n"


async def test_background_processes_end_with_their_run(manager, bystander):
    kernel = await manager.start("mallory", "python", Tier.EXEMPT)
    ref = kernel.ref
    result = await manager.execute(
        kernel.id, "import subprocess\np = subprocess.Popen(['sleep', '1000'])\nprint(p.pid > 0)")
    assert result.stdout == "True\n"
    assert (await manager.execute(kernel.id, "print(p.poll())")).stdout == "-9\n"  # killed at run end
    await manager.shutdown(kernel.id)
    assert containers(f"id={ref}") == []


async def test_sys_exit(manager, kernel, bystander):
    await manager.execute(kernel, "x = 3")
    result = await hostile(manager, kernel, bystander, "import sys\nsys.exit(2)")
    assert result.status is RunStatus.ERROR and result.error.ename == "SystemExit"
    assert "sys.exit()" in result.message
    assert (await manager.execute(kernel, "print(x)")).stdout == "3\n"  # the same kernel


async def test_os_exit(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander, "import os\nos._exit(1)")
    assert result.status is RunStatus.DIED
    assert result.message == "The kernel died (exit code 1); a fresh one has been started"


async def test_segfault(manager, kernel, bystander):
    result = await hostile(manager, kernel, bystander, "import ctypes\nctypes.string_at(0)")
    assert result.status is RunStatus.DIED
    assert result.message == "The kernel died (killed by signal 11); a fresh one has been started"


async def test_the_bystander_saw_every_run(manager, bystander):
    result = await manager.execute(bystander, "print(n)")
    assert int(result.stdout) >= 12
