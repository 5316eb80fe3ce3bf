"""`lessonserver serve` as a real subprocess, as `make run` starts it, with its log in a file."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from tests.services import free_port, wait_for_port


@contextlib.contextmanager
def serve(env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """Embedded mode (no Postgres or Redis URL) plus `env`; yields the base URL."""
    port = free_port()
    full = {**os.environ, "LS_PORT": str(port), **env}
    for name in ("LS_DATABASE_URL", "LS_REDIS_URL"):
        full.pop(name, None)
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "lessonserver"), "serve"],
                                env=full, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, 30, "lessonserver serve")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
