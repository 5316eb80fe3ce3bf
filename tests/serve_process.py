"""`lessonserver serve` as a real subprocess, as `make run` starts it, with its log in a file.

For tests and benches that must see the server from outside: its log, its
memory, its signals. Embedded mode (no Postgres or Redis URL leaks in from the
caller's environment) unless the settings given name them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
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
def served(env: Mapping[str, str], log_path: Path, start_timeout: float = 30) -> Iterator[Served]:
    """The caller's environment without LS_DATABASE_URL / LS_REDIS_URL, plus `env`."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if k not in ("LS_DATABASE_URL", "LS_REDIS_URL")}
    full.update({"LS_PORT": str(port), **env})
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "lessonserver"), "serve"],
                                env=full, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, start_timeout, "lessonserver serve")
            yield Served(f"http://127.0.0.1:{port}", proc.pid, log_path)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def serve(env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """As `served`, yielding the base URL only."""
    with served(env, log_path) as server:
        yield server.url


@contextlib.contextmanager
def lessonserver(root: Path, **settings: str) -> Iterator[Served]:
    """Serve with `settings` (LS_* names) and its data dir and log under `root`."""
    with served({"LS_DATA_DIR": str(root / "data"), **settings}, root / "serve.log") as server:
        yield server


@contextlib.contextmanager
def listening(argv: list[str], port: int, what: str, **popen) -> Iterator[str]:
    """Any server process of ours (a load balancer, a baseline) until it listens on `port`;
    terminated afterwards. Yields its base URL."""
    proc = subprocess.Popen(argv, **popen)
    try:
        wait_for_port(port, 15, what)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
