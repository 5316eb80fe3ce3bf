"""`lessonserver serve` as a real process, as `make run` or an operator starts it.

For tests and benches that must see the server from outside: its own
memory, its log, its signals. The environment is the caller's LS_* settings
on top of a clean one (no LS_DATABASE_URL / LS_REDIS_URL leaking in).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.services import free_port, wait_for_port


@dataclasses.dataclass(frozen=True)
class Served:
    url: str
    pid: int
    log: Path

    def rss_mb(self) -> float:
        """The server's resident memory now, in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")


@contextlib.contextmanager
def lessonserver(root: Path, **settings: str) -> Iterator[Served]:
    """Serve with `settings` (LS_* names) and a data dir under `root`; SIGINT at the end."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LS_")}
    env.update({"LS_PORT": str(port), "LS_DATA_DIR": str(root / "data"), **settings})
    log_path = root / "serve.log"
    serve = str(Path(sys.executable).parent / "lessonserver")
    with log_path.open("w") as log:
        proc = subprocess.Popen([serve, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 30, "lessonserver serve")
        yield Served(f"http://127.0.0.1:{port}", proc.pid, log_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
