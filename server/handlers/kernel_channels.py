"""WebSocket `/api/kernels/{id}/channels`: Jupyter messaging v5 as JSON text frames.

Each socket opens its own jupyter_client connection to the sandboxed kernel
(ZMQ ROUTER and PUB sockets take several clients), signs what the browser
sends with the kernel's key (which never leaves the server) and forwards
shell, iopub, stdin and control messages back with a "channel" key. Output is
capped per request with the same fold the lesson runs use, so a flood cannot
exhaust the server or the client. When the manager replaces the kernel
(restart, death) the socket says "restarting" and reconnects to the new one;
when it shuts the kernel down the socket says "dead" and closes.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from typing import Any

import tornado.websocket
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session

from kernels import fold
from kernels.manager import ManagedKernel
from kernels.result import RunLimits
from server.handlers.kernels_api import ApiHandler

log = logging.getLogger("lessonserver.channels")

CLIENT_CHANNELS = ("shell", "control", "stdin")
KERNEL_CHANNELS = ("shell", "iopub", "stdin", "control")
OUTPUT_KINDS = frozenset({*fold.OUTPUT_TYPES, "update_display_data", "clear_output"})
SUBSCRIBE_TIMEOUT = 10.0   # seconds the kernel may take to answer a new connection
PROBE_EVERY = 0.2
MAX_RUNS = 64              # capped requests remembered per socket (oldest forgotten first)
GONE_EVENTS = ("kernel.shutdown",)


class BadMessage(ValueError):
    """A frame that is not a Jupyter message for a client channel."""


def parse_client_message(raw: str | bytes) -> dict[str, Any]:
    """A browser's frame as a message dict jupyter_client can sign and send."""
    if isinstance(raw, bytes):
        raise BadMessage("binary frames are not supported; send JSON text frames")
    try:
        data = json.loads(raw)
    except ValueError:
        raise BadMessage("frames must be JSON") from None
    if not isinstance(data, dict):
        raise BadMessage("frames must be JSON objects")
    channel = data.get("channel")
    if channel not in CLIENT_CHANNELS:
        raise BadMessage(f"channel must be one of {', '.join(CLIENT_CHANNELS)}, not {channel!r}")
    header = data.get("header")
    if not isinstance(header, dict) or not isinstance(header.get("msg_type"), str) \
            or not isinstance(header.get("msg_id"), str):
        raise BadMessage("header must be an object with string msg_type and msg_id")
    parts = {key: data.get(key) if data.get(key) is not None else {}
             for key in ("parent_header", "metadata", "content")}
    for key, value in parts.items():
        if not isinstance(value, dict):
            raise BadMessage(f"{key} must be an object")
    return {"channel": channel, "header": header, **parts}


def to_frame(channel: str, msg: dict[str, Any]) -> str:
    """A kernel message as Jupyter Server sends it (binary buffers are not carried)."""
    frame = {key: msg.get(key, {}) for key in ("header", "parent_header", "metadata", "content")}
    frame.update(msg_id=msg["header"].get("msg_id"), msg_type=msg["header"].get("msg_type"),
                 channel=channel, buffers=[])
    return json.dumps(frame, default=json_default)


class OutputCap:
    """Per request: forward output until the run's cap, then drop it (pure fold inside)."""

    def __init__(self, limits: RunLimits) -> None:
        self.limits = limits
        self.runs: collections.OrderedDict[str | None, fold.RunState] = collections.OrderedDict()

    def admit(self, msg: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        """(the message to forward or None, a note in plain words when the cap is hit now)."""
        kind = msg["header"].get("msg_type")
        parent = msg["parent_header"].get("msg_id")
        if kind == "status" and msg["content"].get("execution_state") == "idle":
            self.runs.pop(parent, None)          # the request is over
            return msg, None
        if kind not in OUTPUT_KINDS:
            return msg, None
        state = self.runs.pop(parent, None) or fold.start(self.limits, parent)
        capped_before = state.capped
        state, outputs = fold.fold(state, msg)
        self.runs[parent] = state
        while len(self.runs) > MAX_RUNS:
            self.runs.popitem(last=False)
        note = None
        if state.capped and not capped_before:
            note = fold.limit_message(fold.LimitHit.OUTPUT, state)
        if not outputs:
            return None, note
        kept = outputs[-1]
        if kind == "stream" and kept.text != msg["content"].get("text"):
            msg = {**msg, "content": {**msg["content"], "text": kept.text}}
        return msg, note


class ChannelHub:
    """The open sockets per kernel and what they saw; manager events reach the sockets here."""

    def __init__(self) -> None:
        self.context = zmq.asyncio.Context()   # one per hub: sockets of all connections share it
        self._sockets: dict[str, set[KernelChannelsHandler]] = {}
        self._seen: dict[str, tuple[str, float]] = {}

    def add(self, kernel_id: str, socket: KernelChannelsHandler) -> None:
        self._sockets.setdefault(kernel_id, set()).add(socket)

    def remove(self, kernel_id: str, socket: KernelChannelsHandler) -> None:
        sockets = self._sockets.get(kernel_id, set())
        sockets.discard(socket)
        if not sockets:
            self._sockets.pop(kernel_id, None)

    async def close(self) -> None:
        """Destroy the context here, on the loop: left to the garbage collector, its
        term() can run in any thread and block that thread forever."""
        self.context.destroy(linger=0)

    def count(self, kernel_id: str) -> int:
        return len(self._sockets.get(kernel_id, ()))

    def note(self, kernel_id: str, state: str) -> None:
        self._seen[kernel_id] = (state, time.time())

    def seen(self, kernel_id: str) -> tuple[str, float] | None:
        return self._seen.get(kernel_id)

    def on_event(self, kind: str, data: dict) -> None:
        """A KernelManager observer: called synchronously, so it only schedules."""
        kernel_id = data.get("kernel_id")
        if kind in ("kernel.shutdown", "kernel.culled"):
            self._seen.pop(kernel_id, None)
        for socket in list(self._sockets.get(kernel_id, ())):
            socket.kernel_event(kind)


class KernelChannelsHandler(tornado.websocket.WebSocketHandler, ApiHandler):
    route = "kernel_channels"
    query_token = True

    def initialize(self, **deps: Any) -> None:
        ApiHandler.initialize(self, **deps)
        self.kernel_id = ""
        self.client: AsyncKernelClient | None = None
        self.pumps: list[asyncio.Task] = []
        self.probes: set[str] = set()
        self.mine: set[str] = set()          # execute requests this socket sent
        self.ready = asyncio.Event()
        self.events = asyncio.Lock()
        self.cap = OutputCap(RunLimits())
        self.closed = False
        self.tasks: set[asyncio.Task] = set()

    def get_compression_options(self) -> dict[str, Any]:
        return {}

    async def get(self, kernel_id: str) -> None:
        self.owned(kernel_id)                # 404 before the upgrade for other owners' kernels
        await super().get(kernel_id)

    async def open(self, kernel_id: str) -> None:
        self.set_nodelay(True)   # small interactive frames: Nagle + delayed ACK cost ~40 ms each
        kernel = self.owned(kernel_id)
        self.kernel_id = kernel_id
        self.cap = OutputCap(self.manager.limits(kernel.plugin))
        self.hub.add(kernel_id, self)
        try:
            await self._connect(kernel)
        except Exception as exc:
            log.warning("kernel %s: channels could not connect: %s", kernel_id, exc)
            self.close(1011, "the kernel does not answer")

    # --- kernel side ------------------------------------------------------

    async def _connect(self, kernel: ManagedKernel) -> None:
        client = AsyncKernelClient(context=self.hub.context)
        client.load_connection_info(dict(kernel.connection))
        client.start_channels(shell=True, iopub=True, stdin=True, hb=False, control=True)
        self.client = client
        await self._subscribe(client)
        self.pumps = [asyncio.create_task(self._pump(name, getattr(client, f"{name}_channel")))
                      for name in KERNEL_CHANNELS]
        self.ready.set()

    async def _subscribe(self, client: AsyncKernelClient) -> None:
        """Probe with kernel_info until iopub carries the answer too: a SUB socket joins late,
        and without this the output of the first request would be lost."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + SUBSCRIBE_TIMEOUT
        while loop.time() < give_up:
            self.probes.add(client.kernel_info())
            until = loop.time() + PROBE_EVERY
            while loop.time() < until:
                with contextlib.suppress(Exception):   # queue.Empty on timeout
                    msg = await client.iopub_channel.get_msg(timeout=max(0.01, until - loop.time()))
                    if msg["parent_header"].get("msg_id") in self.probes:
                        return
        raise TimeoutError(f"no answer within {SUBSCRIBE_TIMEOUT:.0f} s")

    async def _disconnect(self) -> None:
        self.ready.clear()
        pumps, self.pumps = self.pumps, []
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        if self.client is not None:
            self.client.stop_channels()
            self.client = None

    async def _pump(self, name: str, channel) -> None:
        while True:
            try:   # CancelledError is no Exception: cancelling still stops the pump
                await self._forward(name, await channel.get_msg())
            except Exception:  # a garbled frame must not stop the socket
                log.exception("kernel %s: unreadable %s message", self.kernel_id, name)

    async def _forward(self, name: str, msg: dict[str, Any]) -> None:
        if msg["parent_header"].get("msg_id") in self.probes:
            return                            # answers to our own probes are not the browser's
        note = None
        if name == "iopub":
            if msg["header"].get("msg_type") == "status":
                self.hub.note(self.kernel_id, msg["content"].get("execution_state", "idle"))
            msg, note = self.cap.admit(msg)
        if msg is not None:
            await self._send(name, msg)
        if note is not None:
            await self._cut(note, msg)

    async def _cut(self, note: str, msg: dict[str, Any] | None) -> None:
        """Tell the browser why output stopped; stop the flood if this socket started it."""
        if msg is None or self.client is None:
            return
        parent = msg["parent_header"]
        warning = self.client.session.msg("stream", {"name": "stderr", "text": f"\n[{note}]\n"},
                                          parent=parent)
        await self._send("iopub", warning)
        if parent.get("msg_id") in self.mine:
            self.client.control_channel.send(self.client.session.msg("interrupt_request", {}))

    async def _send(self, channel: str, msg: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            await self.write_message(to_frame(channel, msg))   # waits: a slow reader slows us
        except tornado.websocket.WebSocketClosedError:
            self.closed = True

    # --- browser side -----------------------------------------------------

    async def on_message(self, raw: str | bytes) -> None:
        try:
            msg = parse_client_message(raw)
        except BadMessage as exc:
            log.info("kernel %s: frame ignored: %s", self.kernel_id, exc)
            return
        await self.ready.wait()              # during a reconnect, messages wait for the new kernel
        if self.client is None or self.closed:
            return
        channel = msg.pop("channel")
        self.manager.touch(self.kernel_id)   # runs sent here count as activity for idle culling
        if channel == "shell" and msg["header"]["msg_type"] == "execute_request":
            self.mine.add(msg["header"]["msg_id"])
            if len(self.mine) > MAX_RUNS:
                self.mine.pop()
        self.hub.note(self.kernel_id, "busy" if channel == "shell" else
                      (self.hub.seen(self.kernel_id) or ("idle", 0))[0])
        getattr(self.client, f"{channel}_channel").send(msg)   # signed with the kernel's key

    # --- the manager replaced or removed the kernel -------------------------

    def kernel_event(self, kind: str) -> None:
        if kind == "kernel.restarted":
            self.ready.clear()               # before the REST restart answers: no message is lost
        self._spawn(self._on_event(kind))

    async def _on_event(self, kind: str) -> None:
        async with self.events:              # one reconnect at a time, in the manager's order
            await self._follow(kind)

    async def _follow(self, kind: str) -> None:
        if self.closed:
            return
        if kind == "kernel.died":
            await self._status("restarting")
        elif kind == "kernel.restarted":
            await self._status("restarting")
            await self._disconnect()
            kernel = self.manager.get(self.kernel_id)
            if kernel is None:
                return
            try:
                await self._connect(kernel)
            except Exception as exc:
                log.warning("kernel %s: no answer after restart: %s", self.kernel_id, exc)
                await self._status("dead")
                self.close(1011, "the kernel does not answer")
                return
            await self._status("idle")
        elif kind in ("kernel.shutdown", "kernel.culled"):
            await self._status("dead")
            self.close(1000, "the kernel was shut down")

    async def _status(self, state: str) -> None:
        """A status message from the server itself, as Jupyter Server sends on restarts."""
        session = self.client.session if self.client is not None else Session()
        await self._send("iopub", session.msg("status", {"execution_state": state}))

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def on_close(self) -> None:
        self.closed = True
        self.hub.remove(self.kernel_id, self)
        self.ready.set()                     # release a waiting on_message
        self._spawn(self._disconnect())
