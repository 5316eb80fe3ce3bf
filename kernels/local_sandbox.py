"""The local sandbox: each kernel a child process, confined by bubblewrap when installed.

For `make run` on a laptop and for tests of everything above the sandbox. Under
bwrap the kernel has no network (its own empty net namespace), its own pid
namespace, a read-only view of /, a private /tmp, no capabilities, and only its
own connection directory writable; rlimits cap its address space and file size.
Without bwrap only the rlimits remain, and the server says so loudly, once.

Every kernel's directory holds a `pid` file (pid and start time) and its owner's
lease (kernels.leases), so another process of the same instance can find and
kill what a dead owner left behind, and never what a live one runs.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import os
import resource
import shutil
import signal
import sys
import time
import uuid
from pathlib import Path


import zmq.asyncio

from kernels import connection, leases, procs
from kernels.procs import process_start_time
from kernels.sandbox import KernelExit, Sandbox, SandboxError, SandboxKernel, StartSpec
from kernels.settings import KernelSettings


log = logging.getLogger(__name__)

START_TIMEOUT = 15.0        # seconds a kernel may take to answer its first kernel_info
KILL_WAIT = 5.0             # seconds kill() waits for the process to be reaped
STDERR_TAIL = 4096          # bytes of the kernel's stderr kept for start errors
# RLIMIT_AS counts reserved address space (thread stacks, malloc arenas), not memory in
# use: an idle ipykernel reserves ~200 MiB, so the limit is memory_mb plus this headroom.
AS_HEADROOM_MB = 512
PID_FILE = "pid"
ENDED_KEPT = 256            # exits remembered after kill(), for a wait() that comes late
NO_BWRAP = ("local sandbox: only rlimits, no isolation (bubblewrap `bwrap` is not installed): "
            "learner code can read your files and use the network. Install bubblewrap, "
            "or use LS_SANDBOX=docker for anything but your own experiments")


@dataclasses.dataclass(eq=False)
class _Child:
    proc: asyncio.subprocess.Process
    directory: Path
    stderr: collections.deque
    kernel_pid: int               # the kernel itself (below bwrap's processes), for SIGINT
    own: frozenset[procs.Proc] = frozenset()   # the tree when it became ready
    killed: bool = False
    exited: asyncio.Task | None = None
    drain: asyncio.Task | None = None
    removal: asyncio.Task | None = None

    def stderr_tail(self) -> str:
        return b"".join(self.stderr)[-STDERR_TAIL:].decode(errors="replace").strip()


def code_dirs() -> tuple[Path, ...]:
    """Where the kernel's Python and our packages live (a checkout or venv may sit in /tmp)."""
    return (Path(sys.prefix).resolve(), Path(__file__).resolve().parent.parent)


def bwrap_argv(bwrap: str, directory: Path, tmp_bytes: int,
               code: tuple[Path, ...] = ()) -> list[str]:
    """The confinement around one kernel: everything read-only but its dir and /tmp."""
    # The private /tmp hides whatever lives below the host's /tmp: bind the code back, read-only.
    hidden = [arg for path in code if Path("/tmp") in path.parents
              for arg in ("--ro-bind", str(path), str(path))]
    return [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
            "--size", str(tmp_bytes), "--tmpfs", "/tmp", *hidden,
            "--bind", str(directory), str(directory),      # after /tmp: it may live below it
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--cap-drop", "ALL", "--die-with-parent",
            "--new-session", "--chdir", "/tmp", "--"]


def kernel_env(home: str) -> dict[str, str]:
    """Only what a kernel needs: never the server's environment (LS_* secrets) or the key."""
    bindir = str(Path(sys.executable).parent)
    return {"PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8",
            "MALLOC_ARENA_MAX": "2"}   # fewer reserved arenas keep RLIMIT_AS meaningful


def address_space(memory_mb: int) -> int:
    """RLIMIT_AS in bytes for a kernel given `memory_mb`."""
    return (memory_mb + AS_HEADROOM_MB) * 2**20


def _set_rlimits(memory_mb: int, tmp_mb: int) -> None:
    """Runs in the child between fork and exec (only setrlimit: safe there)."""
    limit = address_space(memory_mb)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (tmp_mb * 2**20, tmp_mb * 2**20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def find_kernel_pid(outer: int, tree: list[procs.Stat]) -> int:
    """The first process below `outer` that is not bwrap itself (bwrap forks a reaper)."""
    below: dict[int, list[int]] = {}
    for found in tree:
        below.setdefault(found.ppid, []).append(found.proc.pid)
    pid = outer
    for _ in range(4):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "bwrap":
                return pid
        except OSError:
            return outer
        if not below.get(pid):
            return outer
        pid = min(below[pid])
    return outer


class LocalSandbox(Sandbox):
    def __init__(self, settings: KernelSettings) -> None:
        self.settings = settings = KernelSettings.of(settings)
        self.instance = settings.instance
        self.root = connection.instance_dir(settings.runtime_dir, settings.instance, "local")
        self.lease = leases.take(settings.runtime_dir, settings.instance, "local")
        self.lease_id = self.lease.id
        self.bwrap = shutil.which("bwrap")
        if self.bwrap is None:
            log.warning(NO_BWRAP)
        self._children: dict[str, _Child] = {}
        self._ended: collections.OrderedDict[str, KernelExit] = collections.OrderedDict()
        self._context = zmq.asyncio.Context()
        self._processes = procs.ProcessTable()

    async def start(self, spec: StartSpec) -> SandboxKernel:
        if not spec.local_argv:
            raise SandboxError(f"plugin {spec.plugin!r} has no local_argv: it runs only in docker")
        kernel_id = uuid.uuid4().hex
        try:
            directory = connection.kernel_dir(self.root, kernel_id)
        except ValueError as exc:
            raise SandboxError(str(exc)) from None
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.mkdir(mode=0o700)
        leases.write_record(directory, self.lease)
        info = connection.connection_info(directory, connection.new_key(), spec.plugin)
        child = await self._spawn(spec, directory, info)
        self._children[kernel_id] = child
        try:
            await connection.wait_ready(self._context, info, START_TIMEOUT,
                                        lambda: _running(child))
        except (TimeoutError, ProcessLookupError) as exc:
            await self._remove(kernel_id)
            raise SandboxError(f"{spec.plugin} kernel did not start: {exc}. "
                               f"Its stderr: {child.stderr_tail() or '(empty)'}") from None
        except BaseException:          # cancelled: leave nothing behind
            await self._remove(kernel_id)
            raise
        tree = await self._tree(child.proc.pid)
        child.kernel_pid = find_kernel_pid(child.proc.pid, tree) if self.bwrap else child.proc.pid
        child.own = frozenset(s.proc for s in tree)
        directory.chmod(0o500)         # sockets are bound: the kernel may not add files
        return SandboxKernel(id=kernel_id, plugin=spec.plugin, ref=str(child.proc.pid),
                             connection=info, started_at=time.monotonic())

    async def _spawn(self, spec: StartSpec, directory: Path, info: dict) -> _Child:
        conn_file = directory / connection.CONNECTION_FILE
        fd = os.open(conn_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(info, out)
        argv = connection.fill_argv(spec.local_argv, python=sys.executable,
                                    connection_file=str(conn_file))
        home, cwd = ("/tmp", "/") if self.bwrap else (str(directory), str(directory))
        if self.bwrap:
            argv = bwrap_argv(self.bwrap, directory, spec.tmp_mb * 2**20, code_dirs()) + argv
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=kernel_env(home), cwd=cwd,
                start_new_session=True,  # its own process group: kill() takes all of it
                preexec_fn=lambda: _set_rlimits(spec.memory_mb, spec.tmp_mb))
        except OSError as exc:
            connection.remove_dir(directory)
            raise SandboxError(f"{spec.plugin} kernel could not be started: {exc}") from None
        (directory / PID_FILE).write_text(f"{proc.pid} {process_start_time(proc.pid)}\n")
        child = _Child(proc, directory, collections.deque(maxlen=64), proc.pid)
        child.drain = asyncio.create_task(_drain(proc.stderr, child.stderr))
        child.exited = asyncio.create_task(_exit_of(child))
        return child

    async def wait(self, kernel: SandboxKernel) -> KernelExit:
        child = self._children.get(kernel.id)
        if child is None:
            return self._ended.get(kernel.id) or KernelExit(None, reason="vanished")
        return await asyncio.shield(child.exited)

    async def set_memory(self, kernel: SandboxKernel, memory_mb: int) -> None:
        """The soft RLIMIT_AS of every process of the kernel (the kernel, and helpers such
        as bash's shell, which run the learner's code), within the hard limit of its start.
        Processes started later inherit it from the kernel."""
        child = self._children.get(kernel.id)
        if child is None or child.proc.returncode is not None:
            raise SandboxError(f"kernel {kernel.id} is not running in this sandbox")
        for stat in await self._tree(child.proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):  # gone; bwrap's own
                _, hard = resource.prlimit(stat.proc.pid, resource.RLIMIT_AS)
                resource.prlimit(stat.proc.pid, resource.RLIMIT_AS,
                                 (min(address_space(memory_mb), hard), hard))

    async def interrupt(self, kernel: SandboxKernel) -> None:
        child = self._children.get(kernel.id)
        if child is not None and child.proc.returncode is None:   # else the pid may be reused
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.kernel_pid, signal.SIGINT)

    async def kill(self, kernel: SandboxKernel) -> None:
        await self._remove(kernel.id)

    async def _remove(self, kernel_id: str) -> None:
        """Kill and clean up once, however many callers ask, even if one is cancelled."""
        child = self._children.get(kernel_id)
        if child is None:
            return
        if child.removal is None:
            child.removal = asyncio.create_task(self._removal(kernel_id, child))
        await asyncio.shield(child.removal)

    async def _removal(self, kernel_id: str, child: _Child) -> None:
        child.killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(child.exited), KILL_WAIT)
        self._children.pop(kernel_id, None)   # only now: a wait() meanwhile sees 'killed'
        await asyncio.wait({child.drain}, timeout=1.0)   # EOF lets the transport close itself
        child.drain.cancel()
        # In a thread: a kernel's dir holds its home (IPython's history, the learner's files),
        # and a live event's end removes hundreds at once.
        await asyncio.to_thread(connection.remove_dir, child.directory)
        if child.exited.done():
            self._ended[kernel_id] = child.exited.result()
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)

    async def is_alive(self, kernel: SandboxKernel) -> bool:
        child = self._children.get(kernel.id)
        return child is not None and child.proc.returncode is None

    async def kill_strays(self, kernel: SandboxKernel) -> int:
        """Everything in the bwrap tree beyond what it held when ready. Daemons that double
        fork stay in the tree: they are reparented to bwrap, the init of the kernel's pid
        namespace. (Without bwrap they escape to the host's init: one more reason for it.)"""
        child = self._children.get(kernel.id)
        if child is None or child.proc.returncode is not None:
            return 0
        pid = child.proc.pid
        return await procs.kill_strays(lambda: self._tree(pid), child.own)

    async def cpu_seconds(self, kernel: SandboxKernel) -> float:
        child = self._children.get(kernel.id)
        if child is None or child.proc.returncode is not None:
            raise SandboxError(f"kernel {kernel.id} is not running in this sandbox")
        return procs.cpu_seconds(await self._tree(child.proc.pid))

    async def _tree(self, pid: int) -> list[procs.Stat]:
        return procs.tree(pid, await self._processes.snapshot())

    async def reap_orphans(self) -> int:
        """Kill the kernels of this instance whose owner's lease is dead, and remove their dirs.

        (bwrap's --die-with-parent already kills a kernel whose owner died: this is for
        kernels started without bwrap, and for the dirs.)"""
        self.lease.renew()
        ours = {child.directory.name for child in self._children.values()}
        dead = leases.dead_dirs(self.root, ours)
        for directory in dead:
            _kill_recorded(directory / PID_FILE)
            connection.remove_dir(directory)
        return len(dead)

    async def close(self) -> None:
        # Kernels are their owners' to kill; any left here could no longer be watched.
        await asyncio.gather(*(self._remove(k) for k in list(self._children)))
        self._context.destroy(linger=0)
        connection.remove_if_empty(self.root)
        self.lease.release()


def _kill_recorded(pid_file: Path) -> None:
    """Kill the process group a pid file names, if that very process still runs."""
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return
    if process_start_time(pid) != started:
        return                     # gone, or the pid now belongs to someone else
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _running(child: _Child) -> bool:
    return child.proc.returncode is None


async def _drain(stream: asyncio.StreamReader, tail: collections.deque) -> None:
    """Keep reading the kernel's stderr (a full pipe would block it); keep the tail."""
    while chunk := await stream.read(4096):
        tail.append(chunk)


async def _exit_of(child: _Child) -> KernelExit:
    code = await child.proc.wait()
    if code < 0:
        code = 128 - code          # as docker and bwrap report a signal: 128 + N
    if child.killed:
        return KernelExit(code, reason="killed")
    return KernelExit(code, reason="killed" if code > 128 else "exited")
