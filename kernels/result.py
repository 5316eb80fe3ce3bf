"""Values that cross module boundaries for one run: limits in, outputs and result out.

Plain frozen dataclasses and str Enums, no I/O. `kernels.fold` builds a
RunResult from kernel messages; `server.course.grade` judges one; the UI, the
trace pipeline and the database store them.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any


class RunStatus(str, enum.Enum):
    OK = "ok"            # the code ran to the end
    ERROR = "error"      # the code raised; traceback in the outputs
    LIMIT = "limit"      # a limit stopped it (see RunResult.limit)
    DIED = "died"        # the kernel or its container died (exit, signal, crash)


class LimitHit(str, enum.Enum):
    TIMEOUT = "timeout"
    OUTPUT = "output"
    MEMORY = "memory"
    PIDS = "pids"
    DISK = "disk"


@dataclasses.dataclass(frozen=True)
class RunLimits:
    """Per-run limits. The kernel starts with the StartSpec's; memory_mb is set on it per run."""
    timeout: float = 10.0          # wall-clock seconds
    output_bytes: int = 65536      # bytes of output forwarded per run
    output_messages: int = 2000    # output messages forwarded per run
    memory_mb: int = 256           # set on the kernel before the run (KernelManager.execute)
    pids_limit: int = 64           # only for the learner's message when forks fail
    tmp_mb: int = 64               # only for the learner's message when /tmp is full


@dataclasses.dataclass(frozen=True)
class Output:
    """One output item as a notebook shows it (nbformat's output types)."""
    output_type: str                          # stream | display_data | execute_result | error
    name: str | None = None                   # stdout | stderr, for streams
    text: str | None = None                   # stream text
    data: Mapping[str, Any] | None = None     # mime bundle, for display/execute_result
    ename: str | None = None
    evalue: str | None = None
    traceback: tuple[str, ...] = ()
    display_id: str | None = None             # for update_display_data; clear_output has no fields

    def to_json(self) -> dict[str, Any]:
        # Field by field: dataclasses.asdict deep-copies every mime bundle, on each output's way
        # to the page, for a dict that is only serialized.
        return {name: (list(v) if isinstance(v, tuple) else v) for name in _OUTPUT_FIELDS
                if (v := getattr(self, name)) is not None and v != ()}


_OUTPUT_FIELDS = tuple(f.name for f in dataclasses.fields(Output))


@dataclasses.dataclass(frozen=True)
class RunResult:
    status: RunStatus
    outputs: tuple[Output, ...] = ()
    limit: LimitHit | None = None
    message: str | None = None       # plain words for the learner when a limit or death stopped it
    execution_count: int | None = None
    bytes_out: int = 0               # bytes the kernel produced (kept or not)
    bytes_dropped: int = 0
    messages_dropped: int = 0

    @property
    def stdout(self) -> str:
        return "".join(o.text or "" for o in self.outputs
                       if o.output_type == "stream" and o.name == "stdout")

    @property
    def error(self) -> Output | None:
        return next((o for o in self.outputs if o.output_type == "error"), None)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status.value, "outputs": [o.to_json() for o in self.outputs],
                "limit": self.limit.value if self.limit else None, "message": self.message,
                "execution_count": self.execution_count, "bytes_out": self.bytes_out,
                "bytes_dropped": self.bytes_dropped, "messages_dropped": self.messages_dropped}
