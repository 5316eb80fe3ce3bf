"""Jupyter connection info for sandboxed kernels: ipc sockets in a short per-kernel dir.

Kernels never listen on TCP: each one gets its own directory holding the
connection file and its five unix sockets (`k-1`..`k-5`). The docker backend
mounts that directory at /conn, so the kernel and the host see the same
sockets under two paths; `connection_info` builds either view. Unix socket
paths are limited to 107 bytes, hence short directory names.

All helpers are pure except `remove_dir`, `remove_if_empty` and `wait_ready` (the
readiness probe both backends use).
"""
from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import Session

SOCKET_PREFIX = "k"                 # sockets are <dir>/k-1 .. k-5
CONNECTION_FILE = "kernel.json"
CONTAINER_DIR = "/conn"             # where the docker backend mounts the kernel's dir
MAX_SOCKET_PATH = 107               # sun_path is 108 bytes with the trailing NUL
PORTS = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}
SIGNATURE_SCHEME = "hmac-sha256"
DIR_ID_CHARS = 12                   # of the kernel id, enough to be unique on one host


def new_key() -> str:
    """A fresh HMAC key per kernel: a kernel never learns another kernel's key."""
    return secrets.token_hex(32)


def safe_name(name: str) -> str:
    """An instance name usable as one path component and in container names."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "default"
    return cleaned[:40]


def instance_dir(runtime_dir: Path, instance: str, backend: str) -> Path:
    """Where one backend of one instance keeps its kernels' dirs (each reaps only its own)."""
    return Path(runtime_dir) / safe_name(instance) / backend


def kernel_dir(root: Path, kernel_id: str) -> Path:
    """The kernel's private directory; raises ValueError when its sockets' paths are too long."""
    path = root / kernel_id[:DIR_ID_CHARS]
    longest = socket_path(path, max(PORTS.values()))
    if len(longest.encode()) > MAX_SOCKET_PATH:
        raise ValueError(f"socket path {longest} is longer than {MAX_SOCKET_PATH} bytes; "
                         "set LS_RUNTIME_DIR to a shorter directory")
    return path


def remove_dir(directory: Path) -> None:
    """Remove a kernel's dir, also after it was made read-only."""
    with contextlib.suppress(OSError):
        directory.chmod(0o700)   # unlinking the sockets needs write permission again
    shutil.rmtree(directory, ignore_errors=True)


def remove_if_empty(root: Path) -> None:
    """Tidy the backend's and the instance's dirs on close (others may still use them)."""
    for directory in (root, root.parent):
        with contextlib.suppress(OSError):
            directory.rmdir()


def channel_url(info: Mapping[str, Any], channel: str) -> str:
    """The ZMQ address of a channel in a Jupyter connection info (tcp or ipc)."""
    port = int(info[f"{channel}_port"])
    if info.get("transport", "tcp") == "tcp":
        return f"tcp://{info['ip']}:{port}"
    return f"{info['transport']}://{info['ip']}-{port}"


def socket_path(directory: Path | str, port: int) -> str:
    return f"{directory}/{SOCKET_PREFIX}-{port}"


def connection_info(directory: Path | str, key: str, kernel_name: str = "") -> dict[str, Any]:
    """Connection info with the sockets in `directory`, as seen by whoever uses that path."""
    return {**PORTS, "transport": "ipc", "ip": f"{directory}/{SOCKET_PREFIX}", "key": key,
            "signature_scheme": SIGNATURE_SCHEME, "kernel_name": kernel_name}


def fill_argv(argv: tuple[str, ...], **values: str) -> list[str]:
    """Replace `{name}` placeholders (connection_file, python) in each argument."""
    filled = []
    for arg in argv:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        filled.append(arg)
    return filled


# --- the one I/O helper: is the kernel answering? ------------------------------

async def wait_ready(context: zmq.asyncio.Context, info: Mapping[str, Any], timeout: float,
                     still_running: Callable[[], Awaitable[bool]], every: float = 0.25) -> float:
    """Send kernel_info_request on the shell channel until a signed reply comes back.

    Returns seconds waited. Raises TimeoutError after `timeout`, or ProcessLookupError
    as soon as `still_running()` says the kernel has ended (checked every `every` s).
    """
    session = Session(key=str(info["key"]).encode(), signature_scheme=SIGNATURE_SCHEME)
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, 20)   # the socket file appears ~0.3 s after start
    began = time.monotonic()
    try:
        sock.connect(f"ipc://{info['ip']}-{info['shell_port']}")
        while True:
            # Requests queue until the kernel binds; any signed reply proves it is up.
            await sock.send_multipart(session.serialize(session.msg("kernel_info_request")))
            slice_end = time.monotonic() + every
            while (left := slice_end - time.monotonic()) > 0:
                if not await sock.poll(left * 1000):
                    break
                frames = await sock.recv_multipart()
                _, frames = session.feed_identities(frames)
                if session.deserialize(frames)["msg_type"] == "kernel_info_reply":
                    return time.monotonic() - began
            if not await still_running():
                raise ProcessLookupError("the kernel ended before it answered")
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"the kernel did not answer within {timeout:.0f} s")
    finally:
        sock.close(linger=0)
