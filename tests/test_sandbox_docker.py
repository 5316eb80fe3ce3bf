"""DockerSandbox on the real engine and the python kernel image: hardening, signals, cleanup."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from jupyter_client.connect import write_connection_file

from kernels import connection
from kernels.docker_sandbox import DockerSandbox, exit_of, kernel_user
from kernels.manager import start_spec
from kernels.plugins import discover
from kernels.sandbox import INSTANCE_LABEL, LEASE_LABEL, SandboxError, create_sandbox
from tests import services
from tests.kernel_client import connect, run
from tests.sandbox_support import (Owner, helpers_of_the_kernel_are_its_own, reap_until,
                                   stray_is_killed_and_cpu_watched, timed)

pytestmark = pytest.mark.docker


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


def labelled(instance: str) -> list[str]:
    return docker("ps", "-aq", "--no-trunc", "--filter", f"label={INSTANCE_LABEL}={instance}").split()


@pytest.fixture
def settings(make_settings):
    services.ensure_docker()
    return make_settings(LS_SANDBOX="docker", LS_INSTANCE=f"t-{uuid.uuid4().hex[:8]}",
                         LS_MEMORY_MB="128", LS_TMP_MB="16", LS_PIDS_LIMIT="32", LS_CPUS="0.5")


@pytest.fixture
def spec(settings):
    return start_spec(settings, next(p for p in discover() if p.name == "python"))


@pytest.fixture
async def sandbox(settings):
    sandbox = create_sandbox(settings)
    assert isinstance(sandbox, DockerSandbox)
    yield sandbox
    await sandbox.close()
    sweeper = DockerSandbox(settings)              # whatever a failed test left behind
    await sweeper.reap_orphans()
    await sweeper.close()
    assert labelled(settings.instance) == [], "containers left behind"


@pytest.fixture
async def kernel(sandbox, spec):
    kernel = await sandbox.start(spec)
    yield kernel
    await sandbox.kill(kernel)


async def test_container_has_every_hardening_flag(sandbox, kernel, settings):
    details = json.loads(docker("inspect", kernel.ref))[0]
    host, config = details["HostConfig"], details["Config"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    uid, gid = kernel_user(os.geteuid(), os.getegid())[0]
    assert host["Tmpfs"] == {"/tmp": "size=16m,mode=1777",
                             "/run/home": f"size=16m,uid={uid},gid={gid},mode=0700"}
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 32 and host["Init"] is True
    assert host["Memory"] == host["MemorySwap"] == 128 * 2**20        # no swap
    assert host["NanoCpus"] == 500_000_000
    assert host["LogConfig"]["Config"]["max-size"] == "1m"
    directory = Path(dict(kernel.connection)["ip"]).parent
    assert host["Binds"] == [f"{directory}:/conn:rw"]
    assert config["User"] == f"{uid}:{gid}"
    assert config["Labels"][INSTANCE_LABEL] == settings.instance
    assert config["Labels"]["lessonserver.plugin"] == "python"
    key = dict(kernel.connection)["key"]
    env = "\n".join(config["Env"])
    assert key not in env and "LS_" not in env and key not in json.dumps(config)
    assert details["State"]["Running"] and await sandbox.is_alive(kernel)


async def test_kernel_answers_and_is_confined(kernel):
    code = ("import os, socket, errno, json\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "try:\n    s.connect(('192.0.2.1', 9)); net = 'connected'\n"
            "except OSError as e:\n    net = errno.errorcode[e.errno]\n"
            "def writable(path):\n"
            "    try:\n        open(path, 'w').close(); return True\n"
            "    except OSError:\n        return False\n"
            "st = os.statvfs('/tmp')\n"
            "print(json.dumps({'uid': os.getuid(), 'net': net, 'ifaces': sorted(os.listdir('/sys/class/net')),\n"
            "  'root': writable('/etc/x'), 'tmp': writable('/tmp/x'), 'conn': writable('/conn/x'),\n"
            "  'home': writable(os.path.expanduser('~/x')),\n"
            "  'tmp_mb': st.f_blocks * st.f_frsize // 2**20, 'env': dict(os.environ)}))")
    async with connect(kernel) as client:
        reply = await client.kernel_info(reply=True, timeout=5)
        assert reply["content"]["language_info"]["name"] == "python"
        out, content = await run(client, code)
    assert content["status"] == "ok", content
    seen = json.loads(out)
    assert seen["uid"] == (1000 if os.geteuid() == 0 else os.geteuid())
    assert (seen["net"], seen["ifaces"]) == ("ENETUNREACH", ["lo"])
    assert (seen["root"], seen["tmp"], seen["conn"], seen["tmp_mb"]) == (False, True, False, 16)
    assert seen["home"] is True and seen["env"]["HOME"] == "/run/home"   # not on /tmp
    key = dict(kernel.connection)["key"]
    assert key not in json.dumps(seen["env"]) and not [k for k in seen["env"] if k.startswith("LS_")]


async def test_interrupt_signal_exit_code_and_kill(sandbox, spec, kernel):
    async with connect(kernel) as client:
        running = asyncio.create_task(run(client, "import time\ntime.sleep(30)", timeout=20))
        await asyncio.sleep(0.5)
        await sandbox.interrupt(kernel)
        _, reply = await asyncio.wait_for(running, 5)
        assert reply["ename"] == "KeyboardInterrupt"
        client.execute("import os; os._exit(3)")
        ended = await asyncio.wait_for(sandbox.wait(kernel), 5)
    assert (ended.exit_code, ended.oom_killed, ended.reason) == (3, False, "exited")
    assert not await sandbox.is_alive(kernel)

    other = await sandbox.start(spec)
    directory = Path(dict(other.connection)["ip"]).parent
    waiter = asyncio.create_task(sandbox.wait(other))
    await sandbox.kill(other)
    await sandbox.kill(other)                                    # twice is fine
    assert (await asyncio.wait_for(waiter, 5)).reason == "killed"
    assert docker("ps", "-aq", "--filter", f"id={other.ref}") == ""
    assert not directory.exists()


async def test_memory_bomb_is_reported_as_oom(sandbox, kernel):
    async with connect(kernel) as client:
        client.execute("hog = []\nwhile True:\n    hog.append(b'x' * 10**7)")
        ended = await asyncio.wait_for(sandbox.wait(kernel), 20)
    assert (ended.oom_killed, ended.reason, ended.exit_code) == (True, "oom", 137)


async def test_orphans_of_an_earlier_process_are_reaped(settings, spec, sandbox):
    earlier = DockerSandbox(settings)
    forgotten = await earlier.start(spec)                        # its owner "crashes"
    await earlier.close()
    directory = Path(dict(forgotten.connection)["ip"]).parent
    kept = await sandbox.start(spec)
    assert await sandbox.reap_orphans() == 1
    assert labelled(settings.instance) == [kept.ref] and not directory.exists()
    assert await sandbox.is_alive(kept)                          # its own kernels stay
    await sandbox.kill(kept)


async def test_two_sandboxes_of_one_instance_never_reap_each_other(settings, spec, sandbox):
    other = DockerSandbox(settings)                              # e.g. a second server
    try:
        assert other.lease_id != sandbox.lease_id and other.instance == sandbox.instance
        theirs, mine = await asyncio.gather(other.start(spec), sandbox.start(spec))
        labels = json.loads(docker("inspect", theirs.ref))[0]["Config"]["Labels"]
        assert labels[LEASE_LABEL] == str(other.lease.path)
        for _ in range(3):
            assert await sandbox.reap_orphans() == 0 and await other.reap_orphans() == 0
        assert sorted(labelled(settings.instance)) == sorted([theirs.ref, mine.ref])
        assert await other.is_alive(theirs) and await sandbox.is_alive(mine)
        for kernel in (theirs, mine):
            async with connect(kernel) as client:
                assert (await run(client, "print(6 * 7)"))[0] == "42\n"
        await sandbox.kill(mine)
    finally:
        await other.close()                                      # its kernel is now nobody's
    assert await sandbox.reap_orphans() == 1
    assert labelled(settings.instance) == []


async def test_a_sigkilled_owners_container_is_reaped_within_seconds(settings, spec, sandbox):
    mine = await sandbox.start(spec)
    owner = await Owner.start(settings)
    try:
        ref, directory = owner.info["ref"], Path(owner.info["dir"])
        assert await sandbox.reap_orphans() == 0                 # a live owner: never touched
        assert ref in labelled(settings.instance)
        await owner.sigkill()                                    # no clean-up: the container stays
        assert ref in labelled(settings.instance)

        async def gone() -> bool:
            return ref not in labelled(settings.instance) and not directory.exists()
        seconds, reaped = await reap_until(sandbox, gone)
        print(f"docker: reaped {reaped} container {seconds:.2f} s after its owner's SIGKILL")
        assert reaped == 1 and seconds < 5
        assert labelled(settings.instance) == [mine.ref] and await sandbox.is_alive(mine)
        _, reap_ms = await timed(sandbox.reap_orphans())
        print(f"docker: one reconcile pass with nothing to reap: {reap_ms:.1f} ms")
    finally:
        if owner.proc.returncode is None:
            await owner.sigkill()
        await sandbox.kill(mine)


async def test_a_sigkilled_launchers_container_is_reaped_by_the_servers_sandbox(
        settings, sandbox, tmp_path):
    frontend = tmp_path / "frontend.json"                        # as jupyter_client writes it
    write_connection_file(str(frontend), ip="127.0.0.1", key=b"frontend-key")
    launcher = await Owner.spawn(settings, "-m", "kernels.launch", "--plugin", "python",
                                 "-f", str(frontend))
    try:
        for _ in range(300):                                     # the launcher started a kernel
            if labelled(settings.instance) or launcher.proc.returncode is not None:
                break
            await asyncio.sleep(0.1)
        [ref] = labelled(settings.instance)
        await asyncio.sleep(1.0)
        assert await sandbox.reap_orphans() == 0                 # the launcher lives
        await launcher.sigkill()

        async def gone() -> bool:
            return labelled(settings.instance) == []
        seconds, reaped = await reap_until(sandbox, gone)
        print(f"docker: reaped a SIGKILLed launcher's container {seconds:.2f} s later")
        assert (reaped, ref in labelled(settings.instance)) == (1, False) and seconds < 5
    finally:
        if launcher.proc.returncode is None:
            await launcher.sigkill()


async def test_a_double_forked_daemon_is_killed_and_cpu_is_watched(sandbox, spec):
    kernel = await sandbox.start(dataclasses.replace(spec, cpus=1.0))
    try:
        figures = await stray_is_killed_and_cpu_watched(sandbox, kernel)
        print(f"docker: {figures}")
    finally:
        await sandbox.kill(kernel)


async def test_starts_overlap_and_every_plugin_runs(sandbox, settings):
    kernels = await asyncio.gather(*(sandbox.start(start_spec(settings, p)) for p in discover()))
    try:
        for kernel in kernels:
            async with connect(kernel) as client:
                reply = await client.kernel_info(reply=True, timeout=5)
                assert reply["content"]["status"] == "ok"
    finally:
        await asyncio.gather(*(sandbox.kill(k) for k in kernels))


async def test_a_missing_image_or_a_dead_kernel_says_why(sandbox, spec, settings):
    with pytest.raises(SandboxError, match="images build"):
        await sandbox.start(dataclasses.replace(spec, image=f"lessonserver-missing-{uuid.uuid4().hex[:6]}"))
    with pytest.raises(SandboxError, match="not-a-kernel"):
        await sandbox.start(dataclasses.replace(
            spec, argv=("/opt/venv/bin/python", "-c", "import sys; sys.exit('not-a-kernel')")))
    root = connection.instance_dir(settings.runtime_dir, settings.instance, "docker")
    assert not root.exists() or list(root.iterdir()) == []


def test_exit_and_user_rules():
    assert exit_of(137, {"OOMKilled": True}, killed=False).reason == "oom"
    assert exit_of(137, {}, killed=True).reason == "killed"
    assert exit_of(139, {}, killed=False).reason == "killed"
    assert exit_of(0, {}, killed=False).reason == "exited"
    assert exit_of(None, {}, killed=False).reason == "vanished"
    assert kernel_user(0, 0) == ((1000, 1000), True)
    assert kernel_user(1234, 99) == ((1234, 99), False)


async def test_a_cancelled_start_leaves_no_container(sandbox, spec, settings):
    for delay in (0.05, 0.4):                  # while creating, and while waiting for the kernel
        start = asyncio.create_task(sandbox.start(spec))
        await asyncio.sleep(delay)
        start.cancel()
        with pytest.raises(asyncio.CancelledError):
            await start
        assert labelled(settings.instance) == []
    root = connection.instance_dir(settings.runtime_dir, settings.instance, "docker")
    assert not root.exists() or list(root.iterdir()) == []


async def test_the_kernels_own_helpers_are_not_strays(sandbox, settings):
    await helpers_of_the_kernel_are_its_own(sandbox, settings)


async def test_set_memory_changes_the_running_containers_memory_with_no_swap(sandbox, kernel):
    def memory() -> tuple[int, int]:
        host = json.loads(docker("inspect", kernel.ref))[0]["HostConfig"]
        return host["Memory"], host["MemorySwap"]

    assert memory() == (128 * 2**20, 128 * 2**20)          # LS_MEMORY_MB of the fixture
    await sandbox.set_memory(kernel, 64)
    assert memory() == (64 * 2**20, 64 * 2**20)
    await sandbox.set_memory(kernel, 128)
    assert memory() == (128 * 2**20, 128 * 2**20)
    with pytest.raises(SandboxError, match="memory limit 4 MiB not set"):   # below the engine's 6 MiB
        await sandbox.set_memory(kernel, 4)
