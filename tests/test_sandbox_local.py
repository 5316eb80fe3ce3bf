"""LocalSandbox on real kernel processes under bubblewrap: start, confinement, signals, cleanup."""
from __future__ import annotations

import asyncio
import json
import resource
import shutil
import uuid
from pathlib import Path

import pytest
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient

from kernels import connection, procs
from kernels.local_sandbox import LocalSandbox, address_space, process_start_time
from kernels.manager import start_spec
from kernels.plugins import discover
from kernels.sandbox import SandboxError, StartSpec, create_sandbox
from tests.kernel_client import connect, run
from tests.sandbox_support import (Owner, helpers_of_the_kernel_are_its_own, reap_until,
                                   stray_is_killed_and_cpu_watched, timed)


def test_bubblewrap_is_installed():
    # Every confinement test below would be meaningless without it (tests.services installs it).
    assert shutil.which("bwrap")


@pytest.fixture
def settings(make_settings):
    return make_settings(LS_SANDBOX="local", LS_INSTANCE=f"t-{uuid.uuid4().hex[:8]}",
                         LS_MEMORY_MB="256", LS_TMP_MB="8")


@pytest.fixture
def spec(settings) -> StartSpec:
    return start_spec(settings, next(p for p in discover() if p.name == "python"))


@pytest.fixture
async def sandbox(settings):
    sandbox = create_sandbox(settings)
    assert isinstance(sandbox, LocalSandbox)
    yield sandbox
    await sandbox.reap_orphans()
    for child in list(sandbox._children):
        await sandbox._remove(child)
    await sandbox.close()


@pytest.fixture
async def kernel(sandbox, spec):
    kernel = await sandbox.start(spec)
    yield kernel
    await sandbox.kill(kernel)


@pytest.fixture
async def client(kernel):
    async with connect(kernel) as client:
        yield client


async def test_start_answers_kernel_info_over_ipc(kernel, client):
    info = dict(kernel.connection)
    assert info["transport"] == "ipc" and Path(info["ip"]).parent.is_dir()
    assert len(connection.socket_path(Path(info["ip"]).parent, 5)) <= connection.MAX_SOCKET_PATH
    reply = await client.kernel_info(reply=True, timeout=5)
    assert reply["content"]["status"] == "ok"
    assert reply["content"]["language_info"]["name"] == "python"
    assert (await run(client, "print(6 * 7)"))[0] == "42\n"


async def test_every_plugin_starts_locally(sandbox, settings):
    kernels = await asyncio.gather(*(sandbox.start(start_spec(settings, p)) for p in discover()))
    assert {k.plugin for k in kernels} >= {"python", "bash", "sql"}
    for k in kernels:
        assert await sandbox.is_alive(k)
        await sandbox.kill(k)


async def test_no_network_only_loopback(client):
    code = ("import socket, errno\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "try:\n    s.connect(('192.0.2.1', 9)); print('connected')\n"
            "except OSError as e:\n    print(errno.errorcode[e.errno])\n"
            "print(sorted(name for _, name in socket.if_nameindex()))")
    out, reply = await run(client, code)
    assert reply["status"] == "ok"
    assert out == "ENETUNREACH\n['lo']\n"


async def test_the_environment_holds_no_secret(kernel, client, monkeypatch, sandbox, spec):
    monkeypatch.setenv("LS_API_TOKEN", "server-secret")   # as the server would have it
    other = await sandbox.start(spec)                     # started while the secret is set
    try:
        key = dict(other.connection)["key"]
        async with connect(other) as probe:
            out, _ = await run(probe, "import os, json; print(json.dumps(dict(os.environ)))")
    finally:
        await sandbox.kill(other)
    env = json.loads(out)
    assert not [k for k in env if k.startswith("LS_")]
    assert key not in json.dumps(env) and "server-secret" not in json.dumps(env)
    assert {"PATH", "HOME", "LANG"} <= set(env)


async def test_root_is_read_only_tmp_private_and_pids_separate(client):
    marker = Path(__file__).resolve().parent / f"kernel-wrote-{uuid.uuid4().hex}"  # not in /tmp
    code = ("import os\n"
            f"try:\n    open({str(marker)!r}, 'w'); print('wrote')\n"
            "except OSError as e:\n    print(e.strerror)\n"
            "open('/tmp/only-in-kernel', 'w').write('x')\n"
            "print(os.getpid() < 10, len([p for p in os.listdir('/proc') if p.isdigit()]) < 10)")
    try:
        out, _ = await run(client, code)
    finally:
        exists = marker.exists()
        marker.unlink(missing_ok=True)
    assert out == "Read-only file system\nTrue True\n"
    assert not exists and not Path("/tmp/only-in-kernel").exists()


async def test_rlimits_and_tmp_size(client):
    code = ("import resource, os\n"
            "print(resource.getrlimit(resource.RLIMIT_FSIZE)[0] // 2**20)\n"
            "print(resource.getrlimit(resource.RLIMIT_AS)[0] // 2**20)\n"
            "s = os.statvfs('/tmp'); print(s.f_blocks * s.f_frsize // 2**20)")
    out, _ = await run(client, code)
    assert out.split() == ["8", str(256 + 512), "8"]


async def test_signal_interrupt_reaches_the_kernel(sandbox, kernel, client):
    run_task = asyncio.create_task(run(client, "import time\ntime.sleep(30)", timeout=20))
    await asyncio.sleep(0.5)
    await sandbox.interrupt(kernel)
    _, reply = await asyncio.wait_for(run_task, 5)
    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"


async def test_exit_is_reported_and_kill_removes_everything(sandbox, spec):
    kernel = await sandbox.start(spec)
    directory = Path(dict(kernel.connection)["ip"]).parent
    context = zmq.asyncio.Context()
    client = AsyncKernelClient(context=context)
    client.load_connection_info(dict(kernel.connection))
    client.start_channels()
    client.execute("import os; os._exit(3)")
    ended = await asyncio.wait_for(sandbox.wait(kernel), 5)
    client.stop_channels()
    context.destroy(linger=0)
    assert (ended.exit_code, ended.reason, ended.oom_killed) == (3, "exited", False)
    assert not await sandbox.is_alive(kernel)

    other = await sandbox.start(spec)
    pid = int(other.ref)
    waiter = asyncio.create_task(sandbox.wait(other))
    await sandbox.kill(other)
    await sandbox.kill(other)                                  # twice is fine
    assert (await asyncio.wait_for(waiter, 5)).reason == "killed"
    assert process_start_time(pid) is None and not await sandbox.is_alive(other)
    assert not Path(dict(other.connection)["ip"]).parent.exists()
    await sandbox.kill(kernel)
    assert not directory.exists()


async def test_orphans_of_an_earlier_process_are_reaped(settings, spec):
    earlier = LocalSandbox(settings)
    forgotten = await earlier.start(spec)
    directory = Path(dict(forgotten.connection)["ip"]).parent
    later = LocalSandbox(settings)                             # the same instance name
    kept = await later.start(spec)
    try:
        assert earlier.lease_id != later.lease_id and later.instance == settings.instance
        assert await later.reap_orphans() == 0                # its owner lives: untouched
        assert await earlier.reap_orphans() == 0
        assert await earlier.is_alive(forgotten) and await later.is_alive(kept)
        earlier.lease.release()                                # as its process dying would
        assert await later.reap_orphans() == 1
        assert await asyncio.wait_for(earlier.wait(forgotten), 5) is not None
        assert process_start_time(int(forgotten.ref)) is None and not directory.exists()
        assert await later.is_alive(kept)                      # its own kernels stay
        assert await later.reap_orphans() == 0
    finally:
        await later.kill(kept)
        await earlier.kill(forgotten)
        await earlier.close()
        await later.close()


async def test_a_sigkilled_owners_kernel_is_reaped_within_seconds(sandbox, spec, settings):
    mine = await sandbox.start(spec)
    owner = await Owner.start(settings)
    directory, pid = Path(owner.info["dir"]), int(owner.info["ref"])
    try:
        assert owner.info["lease"] != sandbox.lease_id
        assert await sandbox.reap_orphans() == 0               # a live owner: never touched
        assert directory.exists() and process_start_time(pid) is not None
        await owner.sigkill()

        async def gone() -> bool:
            left = procs.read_stat(pid)               # its parent is dead: a zombie for a while
            return not directory.exists() and (left is None or left.state == "Z")
        seconds, reaped = await reap_until(sandbox, gone)
        print(f"local: reaped {reaped} kernel {seconds:.2f} s after its owner's SIGKILL")
        assert reaped == 1 and seconds < 5
        assert await sandbox.is_alive(mine)
        _, reap_ms = await timed(sandbox.reap_orphans())
        print(f"local: one reconcile pass with nothing to reap: {reap_ms:.1f} ms")
    finally:
        if owner.proc.returncode is None:
            await owner.sigkill()
        await sandbox.kill(mine)


async def test_a_double_forked_daemon_is_killed_and_cpu_is_watched(sandbox, kernel):
    figures = await stray_is_killed_and_cpu_watched(sandbox, kernel)
    print(f"local: {figures}")


async def test_a_kernel_that_fails_to_start_says_why(sandbox, spec, settings):
    broken = StartSpec(plugin="broken", image="", argv=(),
                       local_argv=("{python}", "-c", "import sys; sys.exit('no such kernel here')"))
    with pytest.raises(SandboxError, match="no such kernel here"):
        await sandbox.start(broken)
    with pytest.raises(SandboxError, match="no local_argv"):
        await sandbox.start(StartSpec(plugin="x", image="", argv=("k",)))
    root = connection.instance_dir(settings.runtime_dir, settings.instance, "local")
    assert not root.exists() or list(root.iterdir()) == []     # nothing left behind


def test_connection_helpers():
    info = connection.connection_info("/conn", "abc", "python")
    assert (info["transport"], info["ip"], info["shell_port"], info["hb_port"]) == (
        "ipc", "/conn/k", 1, 5)
    assert connection.fill_argv(("{python}", "-f", "{connection_file}"), python="/p",
                                connection_file="/conn/kernel.json") == ["/p", "-f", "/conn/kernel.json"]
    assert connection.safe_name("a/b c") == "a_b_c"
    assert len(connection.new_key()) == 64 and connection.new_key() != connection.new_key()
    with pytest.raises(ValueError, match="LS_RUNTIME_DIR"):
        connection.kernel_dir(Path("/" + "x" * 100), "k" * 32)
    root = connection.instance_dir(Path("/run/ls"), "a/b", "docker")
    assert connection.kernel_dir(root, "0123456789abcdef") == Path("/run/ls/a_b/docker/0123456789ab")


def test_code_below_tmp_is_bound_back_read_only_over_the_private_tmp():
    from pathlib import Path

    from kernels.local_sandbox import bwrap_argv
    argv = bwrap_argv("bwrap", Path("/run/k1"), 1 << 20,
                      (Path("/tmp/ci/.venv"), Path("/tmp/ci"), Path("/usr")))
    tmpfs = argv.index("--tmpfs")
    assert argv[tmpfs + 2:tmpfs + 8] == ["--ro-bind", "/tmp/ci/.venv", "/tmp/ci/.venv",
                                         "--ro-bind", "/tmp/ci", "/tmp/ci"]
    assert "/usr" not in argv[tmpfs:]      # already visible through the read-only /


async def test_the_kernels_own_helpers_are_not_strays(sandbox, settings):
    await helpers_of_the_kernel_are_its_own(sandbox, settings)


async def test_set_memory_moves_the_kernels_soft_address_space_limit_within_its_hard_one(
        sandbox, kernel, client):
    pid = sandbox._children[kernel.id].kernel_pid
    started = address_space(256)                                  # LS_MEMORY_MB of the fixture
    assert resource.prlimit(pid, resource.RLIMIT_AS) == (started, started)
    await sandbox.set_memory(kernel, 64)
    assert resource.prlimit(pid, resource.RLIMIT_AS) == (address_space(64), started)
    stdout, _ = await run(client, "try:\n    b = bytes(600 * 2**20)\nexcept MemoryError:\n"
                                  "    print('refused')")
    assert stdout == "refused\n"                                 # 600 MiB: beyond 64 + 512
    await sandbox.set_memory(kernel, 4096)                        # never above its start
    assert resource.prlimit(pid, resource.RLIMIT_AS) == (started, started)
