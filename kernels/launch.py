"""`lessonserver-launch --plugin NAME -f CONNECTION_FILE`: the argv of our kernelspecs.

(`python -m kernels.launch` is the same program.)

Jupyter frontends (jupyter console, nbclient, jupyter_kernel_test) start this
as if it were the kernel. It starts a kernel of the plugin in the configured
sandbox and relays between the frontend's TCP ports (from its connection file)
and the sandboxed kernel's ipc sockets: ROUTER<->DEALER for shell, control and
stdin, SUB->PUB for iopub, and a heartbeat echo. Every message is checked with
the frontend's key and signed again with the kernel's, so the kernel's key
never leaves the sandbox layer. SIGINT interrupts the kernel; SIGTERM, the
frontend going away (we are reparented) or the kernel ending stops both.
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.session import DELIM, Session

log = logging.getLogger("lessonserver.launch")

RELAYED = ("shell", "control", "stdin")
PARENT_POLL = 1.0     # seconds between checks that the frontend still lives


# The console script (setup.cfg): what /api/kernelspecs shows, since it names no server path.
CONSOLE_SCRIPT = ("lessonserver-launch",)


def launcher_argv(plugin: str, program: Sequence[str] | None = None) -> list[str]:
    """The kernelspec argv that starts a kernel of `plugin` through this launcher.

    `program` defaults to this interpreter running this module, which works whatever PATH is."""
    program = (sys.executable, "-m", "kernels.launch") if program is None else program
    return [*program, "--plugin", plugin, "-f", "{connection_file}"]


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Our options, and the arguments jupyter_client appends for a kernel to use (for
    example `jupyter run --kernel=K script.py` appends `script.py`): the sandboxed kernel
    cannot see the frontend's files, so the caller ignores those."""
    parser = argparse.ArgumentParser(prog="lessonserver-launch", description=__doc__.split("\n")[0])
    parser.add_argument("--plugin", required=True, help="kernel plugin name, e.g. python")
    parser.add_argument("-f", dest="connection_file", required=True, type=Path,
                        help="the connection file the frontend wrote")
    return parser.parse_known_args(argv)


# --- pure helpers --------------------------------------------------------------

def url(info: Mapping[str, Any], channel: str) -> str:
    """The ZMQ address of a channel in a Jupyter connection info (tcp or ipc)."""
    port = int(info[f"{channel}_port"])
    if info.get("transport", "tcp") == "tcp":
        return f"tcp://{info['ip']}:{port}"
    return f"{info['transport']}://{info['ip']}-{port}"


def session_for(info: Mapping[str, Any]) -> Session:
    key = info.get("key", "")
    return Session(key=key.encode() if isinstance(key, str) else key,
                   signature_scheme=info.get("signature_scheme", "hmac-sha256"))


def resign(frames: list[bytes], source: Session, target: Session) -> list[bytes] | None:
    """The same message signed with `target`'s key; None when `source`'s signature is wrong.

    Frames are [identities..., DELIM, signature, header, parent, metadata, content, buffers...];
    the parts are passed on byte for byte, so nothing is re-encoded.
    """
    try:
        split = frames.index(DELIM)
    except ValueError:
        return None
    idents, rest = frames[:split], frames[split + 1:]
    if len(rest) < 5:
        return None
    signature, parts = rest[0], rest[1:5]
    if source.auth is not None and not hmac.compare_digest(signature, source.sign(parts)):
        return None
    return [*idents, DELIM, target.sign(parts), *parts, *rest[5:]]


# --- the relay -------------------------------------------------------------------

class Relay:
    """Sockets facing the frontend (bound) and the kernel (connected), and the tasks between."""

    def __init__(self, frontend: Mapping[str, Any], kernel: Mapping[str, Any]) -> None:
        self.context = zmq.asyncio.Context()
        self.front_session, self.kernel_session = session_for(frontend), session_for(kernel)
        self.sockets: list[zmq.asyncio.Socket] = []
        self.tasks: list[asyncio.Task] = []
        self.pairs = {}
        for channel in RELAYED:
            front = self._socket(zmq.ROUTER, bind=url(frontend, channel))
            back = self._socket(zmq.DEALER, connect=url(kernel, channel))
            self.pairs[channel] = (front, back)
        self.iopub_front = self._socket(zmq.PUB, bind=url(frontend, "iopub"))
        self.iopub_back = self._socket(zmq.SUB, connect=url(kernel, "iopub"))
        self.iopub_back.setsockopt(zmq.SUBSCRIBE, b"")
        self.hb = self._socket(zmq.REP, bind=url(frontend, "hb"))

    def _socket(self, kind: int, bind: str | None = None, connect: str | None = None):
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if bind:
            sock.bind(bind)
        if connect:
            sock.connect(connect)
        self.sockets.append(sock)
        return sock

    def start(self) -> None:
        for channel, (front, back) in self.pairs.items():
            self._spawn(self._pass(channel + " in", front, back, self.front_session, self.kernel_session))
            self._spawn(self._pass(channel + " out", back, front, self.kernel_session, self.front_session))
        self._spawn(self._pass("iopub", self.iopub_back, self.iopub_front, self.kernel_session,
                               self.front_session))
        self._spawn(self._echo())

    def _spawn(self, coro) -> None:
        self.tasks.append(asyncio.create_task(coro))

    async def _pass(self, name: str, source, target, source_session: Session,
                    target_session: Session) -> None:
        while True:
            frames = await source.recv_multipart()
            relayed = resign(frames, source_session, target_session)
            if relayed is None:
                log.warning("%s: dropped a message with a bad signature or shape", name)
                continue
            await target.send_multipart(relayed)

    async def _echo(self) -> None:
        # The launcher lives exactly as long as the kernel, so answering here is honest.
        while True:
            await self.hb.send_multipart(await self.hb.recv_multipart())

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for sock in self.sockets:
            sock.close(linger=0)
        self.context.term()


# --- the process ---------------------------------------------------------------------

def _watch_frontend(stop: asyncio.Event) -> None:
    """Stop when the frontend goes (we are reparented). Not on stdin EOF: jupyter_client
    closes the kernel's stdin pipe right after the start."""
    loop = asyncio.get_running_loop()
    parent = os.getppid()

    def poll() -> None:
        if os.getppid() != parent:
            log.info("the frontend is gone; stopping the kernel")
            stop.set()
        else:
            loop.call_later(PARENT_POLL, poll)

    loop.call_later(PARENT_POLL, poll)


async def run(plugin_name: str, connection_file: Path, settings) -> int:
    from kernels.manager import start_spec
    from kernels.plugins import discover
    from kernels.sandbox import create_sandbox

    plugin = next((p for p in discover() if p.name == plugin_name), None)
    if plugin is None:
        log.error("no kernel plugin named %r", plugin_name)
        return 2
    frontend = json.loads(connection_file.read_text())
    # The server's own instance name: our lease keeps our kernel from its reaper while we
    # live, and once we are gone (even SIGKILLed) its reconciler, or the next launcher's, takes it.
    sandbox = create_sandbox(settings)
    if reaped := await sandbox.reap_orphans():
        log.info("removed %d kernels of dead owners", reaped)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    kernel = await sandbox.start(start_spec(settings, plugin))
    relay = Relay(frontend, kernel.connection)
    try:
        relay.start()
        loop.add_signal_handler(signal.SIGINT,
                                lambda: relay._spawn(sandbox.interrupt(kernel)))
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        _watch_frontend(stop)
        ended = asyncio.create_task(sandbox.wait(kernel))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({ended, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if ended.done():
            log.info("kernel ended (%s)", ended.result().reason)
            return 0 if ended.result().exit_code in (0, None) else 1
        ended.cancel()
        return 0
    finally:
        await relay.close()
        await sandbox.kill(kernel)
        await sandbox.close()


def main(argv: list[str] | None = None) -> int:
    from server import config

    args, ignored = parse_args(argv)
    try:
        settings = config.load(os.environ)   # a process entry point, like the CLI
    except config.ConfigError as exc:
        print(f"kernels.launch: bad setting {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="kernels.launch %(levelname)s %(message)s")
    if ignored:
        log.debug("ignoring arguments meant for a local kernel: %s", " ".join(ignored))
    return asyncio.run(run(args.plugin, args.connection_file, settings))


if __name__ == "__main__":
    sys.exit(main())
