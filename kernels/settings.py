"""The part of the server's settings that the kernel layer reads: its own small frozen value.

`kernels/` imports nothing from `server/`: the server builds this from its
Settings (`KernelSettings.of(settings)` takes the fields of the same name from
any object), and the kernel layer's constructors accept either and keep only
this. Its defaults are the server's too (server/config.py reads them from here), and
serve tools that start kernels on their own.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class KernelSettings:
    sandbox: str = "local"
    instance: str = "default"
    runtime_dir: Path = Path("/tmp/lessonserver")
    pool_size: int = 1
    max_kernels: int = 40
    start_concurrency: int = 4
    start_queue: int = 64
    run_timeout: float = 10.0
    output_limit: int = 65536
    output_messages: int = 2000
    memory_mb: int = 256
    pids_limit: int = 64
    cpus: float = 1.0
    tmp_mb: int = 64
    idle_timeout: float = 900.0
    max_lifetime: float = 7200.0
    idle_cpu_share: float = 0.5
    idle_cpu_window: float = 3.0
    anon_kernels: int = 1
    member_kernels: int = 3
    anon_starts_per_minute: int = 6
    member_starts_per_minute: int = 12
    anon_runs_per_minute: int = 60
    member_runs_per_minute: int = 120
    log_level: str = "INFO"

    @classmethod
    def of(cls, source: Any) -> "KernelSettings":
        """The kernel settings among `source`'s attributes (the server's Settings, or ours)."""
        if isinstance(source, cls):
            return source
        return cls(**{f.name: getattr(source, f.name) for f in dataclasses.fields(cls)})

    def replace(self, **changes: Any) -> "KernelSettings":
        return dataclasses.replace(self, **changes)
