"""The docker sandbox: one hardened container per kernel, reached over ipc sockets.

The container has no network at all (`none`: only lo), a read-only root, a
sized tmpfs /tmp, no capabilities, no-new-privileges, a non-root uid, pids,
memory (no swap) and CPU limits, tini as PID 1 (so SIGINT reaches the kernel),
and a small log. Its only way out is the kernel's own directory, mounted at
/conn, holding the connection file (the HMAC key is only there, readable by
the kernel's uid) and the sockets the kernel binds. Once the kernel answers,
the directory is made unwritable for it.

Each container is labelled with its instance and its owner's lease (kernels.leases):
reaping takes only containers whose owner is provably dead. Its processes and CPU
time are read from its cgroup on this host (the server must run on the docker host,
as root or as the kernels' uid, to kill strays); that is checked at start.

The Docker SDK is synchronous: every call runs in this sandbox's own thread
pools (short calls; long waits for a container's end), so starts overlap.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import zmq.asyncio
from docker.types import LogConfig, Ulimit

from kernels import connection, leases, procs
from kernels.sandbox import (INSTANCE_LABEL, LEASE_LABEL, PLUGIN_LABEL, KernelExit, Sandbox,
                             SandboxError, SandboxKernel, StartSpec)
from kernels.settings import KernelSettings


log = logging.getLogger(__name__)
T = TypeVar("T")

DIR_LABEL = "lessonserver.dir"     # the kernel's host directory, for the reaper
KERNEL_IDS = (1000, 1000)          # the images' `learner` user
START_TIMEOUT = 15.0               # seconds from `docker start` to the first kernel_info reply
KILL_WAIT = 5.0                    # seconds kill() waits for the container's end to be seen
WAIT_SLICE = 5                     # seconds per blocking wait call, so close() is never stuck
ENDED_KEPT = 256                   # exits remembered after kill(), for a wait() that comes late
# HOME is a tmpfs of its own: IPython's history database (and SQLite's temp files)
# stay writable when the learner fills /tmp, so no stray warning lands in their output.
HOME, HOME_MB = "/run/home", 16
KERNEL_ENV = {"HOME": HOME, "IPYTHONDIR": f"{HOME}/.ipython", "SQLITE_TMPDIR": HOME,
              "MPLCONFIGDIR": f"{HOME}/.matplotlib", "LANG": "C.UTF-8",   # harmless only
              "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
CPU_CONTROLLER = "cpuacct"          # v1; on cgroup v2 the one unified hierarchy serves
LOG_CONFIG = LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"})


@dataclasses.dataclass(eq=False)
class _Box:
    container: str                 # container id
    directory: Path
    killed: bool = False
    exited: asyncio.Task | None = None
    removal: asyncio.Task | None = None
    cgroup: Path | None = None              # its cgroup dir on this host (cpu time, processes)
    own: frozenset[procs.Proc] = frozenset()  # its processes when it became ready


def kernel_user(euid: int, egid: int) -> tuple[tuple[int, int], bool]:
    """(uid and gid of the kernel, whether the kernel's dir must be chowned to them).

    The kernel creates its sockets with its own uid and the server must connect
    to them: root can hand the dir to uid 1000 and connect anyway; any other
    server runs its kernels under its own uid (else ZMQ retries forever, silently).
    """
    if euid == 0:
        return KERNEL_IDS, True
    return (euid, egid), False


def memory_options(memory_mb: int) -> dict[str, str]:
    """The container's memory, and the same for memory plus swap: no swap."""
    return {"mem_limit": f"{memory_mb}m", "memswap_limit": f"{memory_mb}m"}


def container_options(spec: StartSpec, instance: str, ids: tuple[int, int],
                      directory: Path, lease: Path) -> dict[str, Any]:
    """Everything `containers.create` gets besides the image: the isolation defaults."""
    inside = f"{connection.CONTAINER_DIR}/{connection.CONNECTION_FILE}"
    uid, gid = ids
    return {
        "command": connection.fill_argv(spec.argv, connection_file=inside),
        "user": f"{uid}:{gid}", "environment": KERNEL_ENV, "working_dir": "/tmp",
        "network_mode": "none", "read_only": True,
        "tmpfs": {"/tmp": f"size={spec.tmp_mb}m,mode=1777",
                  HOME: f"size={HOME_MB}m,uid={uid},gid={gid},mode=0700"},
        "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"],
        "pids_limit": spec.pids_limit,
        **memory_options(spec.memory_mb),
        "nano_cpus": int(spec.cpus * 1e9),
        "init": True,              # tini as PID 1: SIGINT and ipykernel's interrupts work
        "ulimits": [Ulimit(name="core", soft=0, hard=0),
                    Ulimit(name="nofile", soft=1024, hard=1024)],
        "log_config": LOG_CONFIG,  # output floods written to fd 1 also land in Docker's log
        "volumes": {str(directory): {"bind": connection.CONTAINER_DIR, "mode": "rw"}},
        # Our labels last: a plugin's label must not hide a container from the reaper.
        "labels": {**spec.labels, PLUGIN_LABEL: spec.plugin, INSTANCE_LABEL: instance,
                   LEASE_LABEL: str(lease), DIR_LABEL: str(directory)},
    }


def exit_of(status_code: int | None, state: dict[str, Any], killed: bool) -> KernelExit:
    """How a container ended, from its wait status and its inspected State."""
    if state.get("OOMKilled"):
        return KernelExit(status_code, oom_killed=True, reason="oom")
    if status_code is None:
        return KernelExit(None, reason="killed" if killed else "vanished")
    return KernelExit(status_code, reason="killed" if killed or status_code > 128 else "exited")


class DockerSandbox(Sandbox):
    def __init__(self, settings: KernelSettings) -> None:
        self.settings = settings = KernelSettings.of(settings)
        self.instance = settings.instance
        self.root = connection.instance_dir(settings.runtime_dir, settings.instance, "docker")
        self.lease = leases.take(settings.runtime_dir, settings.instance, "docker")
        self.lease_id = self.lease.id
        self.ids, self.chown = kernel_user(os.geteuid(), os.getegid())
        calls = max(4, 2 * settings.start_concurrency)
        waits = settings.max_kernels + 16     # one blocked wait per live kernel, plus pools
        self._calls = concurrent.futures.ThreadPoolExecutor(calls, "docker-call")
        self._waits = concurrent.futures.ThreadPoolExecutor(waits, "docker-wait")
        # The engine's address follows Docker's own convention (DOCKER_HOST), like its CLI.
        self._client = docker.from_env(max_pool_size=calls + waits, timeout=60)
        self._kernels: dict[str, _Box] = {}
        self._ended: collections.OrderedDict[str, KernelExit] = collections.OrderedDict()
        self._context = zmq.asyncio.Context()
        self._closed = False

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._calls, functools.partial(fn, *args, **kwargs))

    # --- start ---------------------------------------------------------------

    async def start(self, spec: StartSpec) -> SandboxKernel:
        if self._closed:
            raise SandboxError("the docker sandbox is closed")
        kernel_id = uuid.uuid4().hex
        try:
            directory = connection.kernel_dir(self.root, kernel_id)
        except ValueError as exc:
            raise SandboxError(str(exc)) from None
        key = connection.new_key()
        self._prepare_dir(directory, connection.connection_info(
            connection.CONTAINER_DIR, key, spec.plugin))
        creating = asyncio.ensure_future(self._call(self._create, spec, directory))
        try:
            container = await asyncio.shield(creating)
        except asyncio.CancelledError:   # the thread goes on: remove what it makes
            with contextlib.suppress(Exception):
                await self._call(self._force_remove, await creating)
            connection.remove_dir(directory)
            raise
        except docker.errors.ImageNotFound:
            connection.remove_dir(directory)
            raise SandboxError(f"image {spec.image} is missing: run `lessonserver images build`"
                               ) from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            connection.remove_dir(directory)
            raise SandboxError(f"{spec.plugin} container could not be started: {exc}") from None
        box = _Box(container, directory)
        self._kernels[kernel_id] = box
        box.exited = asyncio.create_task(self._exit_of(box))
        info = connection.connection_info(directory, key, spec.plugin)
        try:
            await connection.wait_ready(self._context, info, START_TIMEOUT,
                                        lambda: _pending(box.exited))
        except (TimeoutError, ProcessLookupError) as exc:
            logs = await self._call(self._tail, container)
            await self._remove(kernel_id)
            raise SandboxError(f"{spec.plugin} kernel in container {container[:12]} did not "
                               f"start: {exc}. Its output: {logs or '(empty)'}") from None
        except BaseException:          # cancelled: leave nothing behind
            await self._remove(kernel_id)
            raise
        self._lock_dir(directory)
        try:
            box.cgroup, box.own = await self._call(self._own_processes, container)
        except BaseException:
            await self._remove(kernel_id)
            raise
        return SandboxKernel(id=kernel_id, plugin=spec.plugin, ref=container, connection=info,
                             started_at=time.monotonic())

    def _prepare_dir(self, directory: Path, inside: dict[str, Any]) -> None:
        """The kernel's dir and its connection file, readable (only) by the kernel's uid."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.mkdir(mode=0o700)
        leases.write_record(directory, self.lease)
        conn_file = directory / connection.CONNECTION_FILE
        fd = os.open(conn_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as out:
            json.dump(inside, out)
        if self.chown:
            os.chown(conn_file, *self.ids)
            os.chown(directory, *self.ids)

    def _lock_dir(self, directory: Path) -> None:
        """Sockets are bound: the kernel may no longer add files or swap them for links."""
        if self.chown:
            os.chown(directory, os.geteuid(), os.getegid())
            directory.chmod(0o711)
        else:  # same uid as the kernel: only a mode (a cap-less kernel could chmod it back)
            directory.chmod(0o500)

    def _create(self, spec: StartSpec, directory: Path) -> str:
        options = container_options(spec, self.settings.instance, self.ids, directory,
                                    self.lease.path)
        container = self._client.containers.create(
            spec.image, name=f"lessonserver-{directory.name}", **options)
        try:
            container.start()
        except BaseException:
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
            raise
        return container.id

    def _own_processes(self, container: str) -> tuple[Path, frozenset[procs.Proc]]:
        """The container's cgroup dir and the processes in it now (tini, the kernel, helpers)."""
        pid = self._client.api.inspect_container(container)["State"]["Pid"]
        try:
            found = procs.cgroup_dir(Path(f"/proc/{pid}/cgroup").read_text(),
                                     Path("/proc/self/mountinfo").read_text(), CPU_CONTROLLER)
        except OSError as exc:
            raise SandboxError(f"container {container[:12]}: its cgroup is unreadable: {exc}"
                               ) from None
        if found is None or not (found / "cgroup.procs").exists():
            raise SandboxError(f"container {container[:12]}: no {CPU_CONTROLLER} cgroup of pid "
                               f"{pid} is mounted on this host (found {found})")
        own = frozenset(s.proc for s in procs.stats_of(procs.read_cgroup_pids(found)))
        return found, own

    def _tail(self, container: str) -> str:
        with contextlib.suppress(docker.errors.DockerException):
            return self._client.api.logs(container, tail=20).decode(errors="replace").strip()
        return ""

    # --- watching ------------------------------------------------------------

    def _wait_blocking(self, container: str) -> int | None:
        """The container's exit status; None when it was removed first (or we closed)."""
        while not self._closed:
            try:
                return self._client.api.wait(container, timeout=WAIT_SLICE)["StatusCode"]
            except docker.errors.NotFound:
                return None
            except requests.exceptions.ConnectionError:
                time.sleep(0.2)    # read timeout of one slice, or the engine restarting
            except requests.exceptions.RequestException:
                continue
        return None

    def _state(self, container: str) -> dict[str, Any]:
        try:
            return self._client.api.inspect_container(container)["State"]
        except docker.errors.NotFound:
            return {}

    async def _exit_of(self, box: _Box) -> KernelExit:
        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(self._waits, self._wait_blocking, box.container)
        state = await self._call(self._state, box.container)
        return exit_of(code, state, box.killed)

    async def wait(self, kernel: SandboxKernel) -> KernelExit:
        box = self._kernels.get(kernel.id)
        if box is None:
            return self._ended.get(kernel.id) or KernelExit(None, reason="vanished")
        return await asyncio.shield(box.exited)

    async def is_alive(self, kernel: SandboxKernel) -> bool:
        return bool((await self._call(self._state, kernel.ref)).get("Running"))

    # --- control -------------------------------------------------------------

    async def kill_strays(self, kernel: SandboxKernel) -> int:
        box = self._kernels.get(kernel.id)
        if box is None or box.cgroup is None:
            return 0
        cgroup = box.cgroup

        async def listing() -> list[procs.Stat]:   # a cgroup's few pids: cheaper than a thread
            return procs.stats_of(procs.read_cgroup_pids(cgroup))

        return await procs.kill_strays(listing, box.own)

    async def cpu_seconds(self, kernel: SandboxKernel) -> float:
        box = self._kernels.get(kernel.id)
        if box is None or box.cgroup is None:
            raise SandboxError(f"kernel {kernel.id} is not running in this sandbox")
        used = procs.cgroup_cpu_seconds(box.cgroup)
        if used is None:     # the container ended: its cgroup is gone
            raise SandboxError(f"kernel {kernel.id}: its cgroup {box.cgroup} is gone")
        return used

    async def set_memory(self, kernel: SandboxKernel, memory_mb: int) -> None:
        """A running container's new limit (lowering it below what the kernel holds fails
        on cgroup v1 and kills the kernel on v2: both as the limit says)."""
        try:
            await self._call(self._client.api.update_container, kernel.ref,
                             **memory_options(memory_mb))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxError(f"container {kernel.ref[:12]}: memory limit {memory_mb} MiB "
                               f"not set: {exc}") from None

    async def interrupt(self, kernel: SandboxKernel) -> None:
        with contextlib.suppress(docker.errors.DockerException):   # not running: nothing to do
            await self._call(self._client.api.kill, kernel.ref, signal="SIGINT")

    async def kill(self, kernel: SandboxKernel) -> None:
        await self._remove(kernel.id)

    async def _remove(self, kernel_id: str) -> None:
        """Remove once, however many callers ask, even if one of them is cancelled."""
        box = self._kernels.get(kernel_id)
        if box is None:
            return
        if box.removal is None:
            box.removal = asyncio.create_task(self._removal(kernel_id, box))
        await asyncio.shield(box.removal)

    async def _removal(self, kernel_id: str, box: _Box) -> None:
        box.killed = True
        await self._call(self._force_remove, box.container)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(box.exited), KILL_WAIT)
        self._kernels.pop(kernel_id, None)   # only now: a wait() meanwhile sees 'killed'
        connection.remove_dir(box.directory)
        if box.exited.done() and not box.exited.cancelled() and box.exited.exception() is None:
            self._ended[kernel_id] = box.exited.result()
            while len(self._ended) > ENDED_KEPT:
                self._ended.popitem(last=False)

    def _force_remove(self, container: str) -> None:
        try:
            self._client.api.remove_container(container, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:      # 409: a removal is already in progress
                log.warning("could not remove container %s: %s", container[:12], exc)

    async def reap_orphans(self) -> int:
        """Remove this instance's containers whose owner's lease is dead, and their dirs."""
        self.lease.renew()
        label = f"{INSTANCE_LABEL}={self.settings.instance}"
        listed = await self._call(self._client.api.containers, all=True,
                                  filters={"label": label})
        found = [leases.Found(c["Id"], (c.get("Labels") or {}).get(LEASE_LABEL)) for c in listed]
        ours = {box.container for box in self._kernels.values()}
        removed = set(leases.orphans(found, ours, leases.dead_leases(found)))
        orphans = [c for c in listed if c["Id"] in removed]
        await asyncio.gather(*(self._call(self._force_remove, c["Id"]) for c in orphans))
        for c in orphans:
            directory = (c.get("Labels") or {}).get(DIR_LABEL)
            if directory and Path(directory).parent == self.root:
                connection.remove_dir(Path(directory))
        kept = {box.directory.name for box in self._kernels.values()}
        for directory in leases.dead_dirs(self.root, kept):      # their container is gone
            connection.remove_dir(directory)
        return len(orphans)

    async def close(self) -> None:
        removing = [box.removal for box in self._kernels.values() if box.removal]
        await asyncio.gather(*removing, return_exceptions=True)   # they need the threads
        self._closed = True
        watching = [box.exited for box in self._kernels.values() if box.exited]
        for task in watching:          # their threads end within one WAIT_SLICE
            task.cancel()
        await asyncio.gather(*watching, return_exceptions=True)
        self._context.destroy(linger=0)
        self._calls.shutdown(wait=False, cancel_futures=True)
        self._waits.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._client.close)
        connection.remove_if_empty(self.root)
        self.lease.release()


async def _pending(task: asyncio.Task) -> bool:
    return not task.done()
