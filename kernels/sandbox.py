"""Where kernels run: the one interface both backends implement.

`docker` (the default in production) starts each kernel in its own hardened
container; `local` starts it as a child process, for `make run` on a laptop
and for tests of everything above the sandbox. The session, pools and manager
only ever see this interface.
"""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from kernels.settings import KernelSettings


INSTANCE_LABEL = "lessonserver.instance"   # every container we start carries it
PLUGIN_LABEL = "lessonserver.plugin"
LEASE_LABEL = "lessonserver.lease"         # its owner's lease (kernels.leases): reap only if dead


class SandboxError(RuntimeError):
    """A kernel could not be started or controlled; the message says why, for operators."""


@dataclasses.dataclass(frozen=True)
class StartSpec:
    """How to start one kernel of a plugin, with the host's limits."""
    plugin: str
    image: str                       # docker image, e.g. lessonserver-kernel-python:latest
    argv: tuple[str, ...]            # command inside the container; {connection_file} is filled in
    local_argv: tuple[str, ...] = () # command for the local backend; {python} and {connection_file}
    memory_mb: int = 512
    pids_limit: int = 128
    cpus: float = 1.0
    tmp_mb: int = 64
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, eq=False)
class SandboxKernel:
    """A started kernel. Identity is the object: the pool compares kernels with `is`/`in`."""
    id: str                               # ours, unique per kernel
    plugin: str
    ref: str                              # the backend's handle: container id or pid
    connection: Mapping[str, Any]         # jupyter connection info, usable from this host
    started_at: float = 0.0               # time.monotonic() when it answered

    def __post_init__(self) -> None:
        object.__setattr__(self, "connection", MappingProxyType(dict(self.connection)))


@dataclasses.dataclass(frozen=True)
class KernelExit:
    """How a kernel ended."""
    exit_code: int | None
    oom_killed: bool = False
    reason: str = "exited"            # exited | killed | oom | vanished, in plain words for logs


class Sandbox(abc.ABC):
    """Start, watch, signal and remove kernels. All methods are safe to call twice.

    Each object holds a lease (kernels.leases) for its life, `lease_id`, and labels every
    kernel it starts with it; `instance` is the name that scopes reaping.
    """
    instance: str
    lease_id: str

    @abc.abstractmethod
    async def start(self, spec: StartSpec) -> SandboxKernel:
        """Start a kernel and return once its ports accept connections. Raises SandboxError."""

    @abc.abstractmethod
    async def wait(self, kernel: SandboxKernel) -> KernelExit:
        """Resolve when the kernel ends, whoever ended it."""

    @abc.abstractmethod
    async def interrupt(self, kernel: SandboxKernel) -> None:
        """Send SIGINT to the kernel process (the step after a Jupyter interrupt_request)."""

    @abc.abstractmethod
    async def kill(self, kernel: SandboxKernel) -> None:
        """Stop the kernel at once and remove everything it left (container, files)."""

    @abc.abstractmethod
    async def is_alive(self, kernel: SandboxKernel) -> bool:
        ...

    @abc.abstractmethod
    async def kill_strays(self, kernel: SandboxKernel) -> int:
        """SIGKILL every process in the kernel's sandbox that was not there when it became
        ready (what a run left behind: children, daemons); return how many were killed.
        For the end of a run: during one it would kill the run's own subprocesses."""

    @abc.abstractmethod
    async def cpu_seconds(self, kernel: SandboxKernel) -> float:
        """CPU time used so far by everything in the kernel's sandbox. Cheap: no engine call."""

    @abc.abstractmethod
    async def set_memory(self, kernel: SandboxKernel, memory_mb: int) -> None:
        """Give the running kernel a new memory limit, at most the one it was started with
        (an exercise's own `memory=`, and back up for the next). Raises SandboxError."""

    @abc.abstractmethod
    async def reap_orphans(self) -> int:
        """Remove this instance's kernels whose owner's lease is provably dead; return how many.

        Never touches a kernel whose owner lives, whichever process that is. Cheap enough to
        run every few seconds, so a crashed owner's kernels go within seconds.
        """

    async def close(self) -> None:
        """Release the backend's own resources (clients, threads). Kernels are killed by owners."""


def create_sandbox(settings: KernelSettings) -> Sandbox:
    settings = KernelSettings.of(settings)
    if settings.sandbox == "docker":
        from kernels.docker_sandbox import DockerSandbox
        return DockerSandbox(settings)
    if settings.sandbox == "local":
        from kernels.local_sandbox import LocalSandbox
        return LocalSandbox(settings)
    raise SandboxError(f"LS_SANDBOX={settings.sandbox!r}: expected 'docker' or 'local'")
