"""Bring up the real servers the suite needs, on a fresh machine or a used one.

`python -m tests.services prepare` (run by `make test`) installs what is missing
with apt-get when root, and starts the Docker engine if it does not answer.
The pytest fixtures in conftest.py start a throwaway Postgres cluster and a
redis-server on free ports unless LS_DATABASE_URL / LS_REDIS_URL point at
running ones.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# Debian package -> a file it installs that tells us it is there.
PACKAGES = {
    "postgresql": "/usr/lib/postgresql",
    "redis-server": "/usr/bin/redis-server",
    "docker.io": "/usr/sbin/dockerd",
    "debootstrap": "/usr/sbin/debootstrap",
    "bubblewrap": "/usr/bin/bwrap",
    "chromium": "/usr/bin/chromium",
    "chromium-driver": "/usr/bin/chromedriver",
    "haproxy": "/usr/sbin/haproxy",          # the load balancer in front of several `serve`
}
DOCKER_SOCKET = "/var/run/docker.sock"
DOCKERD_LOG = "/var/log/lessonserver-dockerd.log"


def log(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def ensure_packages() -> None:
    missing = [name for name, marker in PACKAGES.items() if not os.path.exists(marker)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"[services] missing Debian packages {missing}; install them or run as root")
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def docker_answers() -> bool:
    if not os.path.exists(DOCKER_SOCKET):
        return False
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(DOCKER_SOCKET)
        sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        return b"OK" in sock.recv(1024)
    return False


def ensure_docker(timeout: float = 90) -> None:
    if docker_answers():
        return
    log(f"starting dockerd (log: {DOCKERD_LOG})")
    with open(DOCKERD_LOG, "ab") as out:
        subprocess.Popen(["dockerd"], stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker_answers():
            return
        time.sleep(0.5)
    raise SystemExit(f"[services] dockerd did not answer within {timeout:.0f}s; see {DOCKERD_LOG}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f}s")


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return versions[-1].parent


def _as_postgres(argv: list[str]) -> list[str]:
    # Postgres refuses to run as root: drop to the postgres user the package creates.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PostgresServer:
    """A fresh cluster on a free port that a test may stop and start again; `close` removes it."""

    def __init__(self) -> None:
        self.bindir = _pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="ls-pg-"))
        self.data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        subprocess.run(_as_postgres([str(self.bindir / "initdb"), "-D", str(self.data), "-U",
                                     "lessonserver", "--auth=trust", "-E", "UTF8", "--no-sync"]),
                       check=True, stdout=subprocess.DEVNULL)

    @property
    def base(self) -> str:
        return f"postgresql://lessonserver@127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.root / "postgres.log", "ab") as server_log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                _as_postgres([str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                              "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                              "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                              "-c", "max_connections=200"]),
                stdout=subprocess.DEVNULL, stderr=server_log)
        wait_for_port(self.port, 30, "postgres")

    def create_database(self, name: str = "lessonserver") -> str:
        """Create `name` (the port opens a moment before connections are accepted); its URL."""
        for _ in range(50):
            if subprocess.run([str(self.bindir / "psql"), f"{self.base}/postgres", "-qc",
                               f"CREATE DATABASE {name}"], capture_output=True).returncode == 0:
                return f"{self.base}/{name}"
            time.sleep(0.1)
        raise RuntimeError(f"could not create the test database; see {self.root / 'postgres.log'}")

    def stop(self) -> None:
        """A fast shutdown: sessions are cut, as when a database restarts under load."""
        if self.proc and self.proc.poll() is None:
            # pg_ctl, as the postgres user: runuser does not pass our signals on to the server.
            subprocess.run(_as_postgres([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data),
                                         "-m", "fast", "-w"]), capture_output=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A fresh cluster on a free port, removed afterwards. Yields its URL."""
    server = PostgresServer()
    try:
        server.start()
        yield server.create_database()
    finally:
        server.close()


class RedisServer:
    """A redis-server on a free port that a test may stop and start again.

    With an append-only file fsync'd every second, as the production guide runs it: queued
    batches survive a restart (a SIGTERM'd Redis writes the file out before it exits).
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ls-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 15, "redis-server")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class LocalStripe:
    """`localstripe` (a stateful local Stripe API that sends signed webhooks) on a free port.

    Started through `python -m tests.services localstripe PORT`, which binds 127.0.0.1
    only (localstripe's own start-up binds every address) and keeps its store in
    memory (it would pickle it into one fixed /tmp file shared by every instance).
    """

    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        out = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.services", "localstripe",
                                      str(self.port)], stdout=out, stderr=subprocess.STDOUT,
                                     cwd=Path(__file__).resolve().parent.parent)
        wait_for_port(self.port, 30, "localstripe")

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def run_localstripe(port: int) -> None:
    import logging

    from aiohttp import web
    from localstripe import resources, server
    resources.Store.dump_to_disk = lambda self: None
    logging.basicConfig(level=logging.INFO)
    web.run_app(server.app, host="127.0.0.1", port=port, print=None)


def prepare() -> None:
    ensure_packages()
    ensure_docker()
    log("Postgres, Redis and Chromium are installed; the Docker engine answers")


if __name__ == "__main__":
    if sys.argv[1:2] == ["localstripe"] and len(sys.argv) == 3:
        run_localstripe(int(sys.argv[2]))
    elif sys.argv[1:] == ["prepare"]:
        prepare()
    else:
        raise SystemExit("usage: python -m tests.services prepare | localstripe PORT")
