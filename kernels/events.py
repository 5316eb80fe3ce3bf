"""What the kernel manager reports to its observers: a small union of frozen values.

Observers (the trace pipeline, metrics) match on the type. Runs that a Jupyter
client sends over the channels socket are reported too (RunStarted, RunOutput,
RunEnded), since no lesson runner sees them; lesson runs are traced by their runner.
"""
from __future__ import annotations

import dataclasses
from typing import Union

from kernels.result import Output, RunResult


@dataclasses.dataclass(frozen=True)
class KernelAssigned:
    kernel_id: str
    owner: str
    plugin: str
    pool_hit: bool
    ref: str
    start_ms: float


@dataclasses.dataclass(frozen=True)
class KernelRestarted:
    kernel_id: str
    owner: str
    plugin: str
    reason: str
    pool_hit: bool
    ref: str
    start_ms: float


@dataclasses.dataclass(frozen=True)
class KernelDied:
    kernel_id: str
    owner: str
    plugin: str
    ref: str
    exit_code: int | None
    oom_killed: bool
    reason: str
    killed: bool                 # we killed it (a limit), rather than it dying


@dataclasses.dataclass(frozen=True)
class KernelInterrupted:
    kernel_id: str
    owner: str


@dataclasses.dataclass(frozen=True)
class KernelLimited:
    """A run on this kernel hit a limit (timeout, output, memory, pids, disk)."""
    kernel_id: str
    owner: str
    plugin: str
    limit: str
    message: str | None


@dataclasses.dataclass(frozen=True)
class KernelGone:
    """Shut down (by its owner, the culler or the server) or culled."""
    kernel_id: str
    owner: str
    reason: str
    culled: bool = False


@dataclasses.dataclass(frozen=True)
class RunStarted:
    """A Jupyter client's execute_request began on the kernel."""
    kernel_id: str
    owner: str
    plugin: str
    run_id: str                  # the client's msg_id
    code: str


@dataclasses.dataclass(frozen=True)
class RunOutput:
    kernel_id: str
    run_id: str
    output: Output


@dataclasses.dataclass(frozen=True)
class RunEnded:
    kernel_id: str
    run_id: str
    result: RunResult


@dataclasses.dataclass(frozen=True)
class StartRejected:
    """A kernel start refused by a quota or the host's capacity (HTTP 429)."""
    owner: str
    reason: str                  # host | owner_kernels | owner_starts | owner_runs | queue


@dataclasses.dataclass(frozen=True)
class StartQueued:
    """A kernel request that waited in the host's queue got its turn."""
    owner: str
    seconds: float


KernelEvent = Union[KernelAssigned, KernelRestarted, KernelDied, KernelInterrupted, KernelLimited,
                    KernelGone, RunStarted, RunOutput, RunEnded, StartRejected, StartQueued]
