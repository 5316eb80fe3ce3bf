"""WebSocket `/api/kernels/{id}/channels`: Jupyter messaging v5 as JSON text frames.

A translator only: frames from the client are checked and handed to the
kernel's Relay (kernels/relay.py), which the kernel manager keeps attached to
the kernel across restarts; messages from the relay are written back as
frames. Limits, the output cap, tracing, restarts and the kernel's key all
live in kernels/. We speak the legacy JSON protocol: a client offering the
`v1.kernel.websocket.jupyter.org` subprotocol is answered without one, which
JupyterLab and Jupyter Server take as "use JSON frames".
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import tornado.websocket

from kernels import messages
from kernels.manager import UnknownKernel
from kernels.relay import Relay
from server.handlers.base import CappedSocket
from server.handlers import ws_send
from server.handlers.kernels_api import ApiHandler

log = logging.getLogger("lessonserver.channels")

MAX_FRAME = 10 * 1024 * 1024     # one client message (code, comm data); more is refused


class KernelChannelsHandler(CappedSocket, tornado.websocket.WebSocketHandler, ApiHandler):
    route = "kernel_channels"
    query_token = True

    def initialize(self, **deps: Any) -> None:
        ApiHandler.initialize(self, **deps)
        self.kernel_id = ""
        self.relay: Relay | None = None

    @property
    def max_message_size(self) -> int:
        return MAX_FRAME

    def get_compression_options(self) -> dict[str, Any] | None:
        return None

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return None     # JSON frames only (see the module docstring)

    async def get(self, kernel_id: str) -> None:
        self.owned(kernel_id)                # 404 before the upgrade for other owners' kernels
        await self.upgrade_within(self.ws_cap, kernel_id)

    async def open(self, kernel_id: str) -> None:
        self.set_nodelay(True)   # small interactive frames: Nagle + delayed ACK cost ~40 ms each
        self.kernel_id = kernel_id
        try:
            self.relay = await self.manager.connect(kernel_id)
        except UnknownKernel as exc:          # shut down between the upgrade and now
            log.info("kernel %s: gone before its channels opened: %s", kernel_id, exc)
            await self.write_message(messages.ws_frame(messages.server_message(
                "iopub", "status", {"execution_state": "dead"})))
            self.close(1000, "the kernel was shut down")
            return
        self.relay.deliver_to(self._write, self._relay_closed)

    def _write(self, msg: messages.KernelMessage) -> "asyncio.Future[None]":
        """Called from the kernel's reader: the frame goes into the connection now."""
        try:
            return ws_send.send_text(self, messages.ws_frame(msg))   # UTF-8 bytes: a text frame
        except tornado.websocket.WebSocketClosedError:
            raise ConnectionError("the client went away") from None

    def _relay_closed(self, reason: str) -> None:
        self.close(1000 if "shut down" in reason else 1008, reason[:120])

    def on_message(self, raw: str | bytes) -> None:
        try:
            msg = messages.parse_client_frame(raw)
        except messages.BadMessage as exc:
            log.info("kernel %s: frame ignored: %s", self.kernel_id, exc)
            return
        if self.relay is not None:
            self.relay.send(msg)

    def on_close(self) -> None:
        self.release_slot()
        if self.relay is not None:
            self.manager.disconnect(self.kernel_id, self.relay)
