"""One Jupyter client's connection to a managed kernel: a bounded mailbox both ways.

The channels WebSocket holds a Relay; the kernel manager attaches it to the
kernel's current session and moves it to the replacement when the kernel is
restarted or dies. Kernel -> client messages wait in a bounded outbox: a
client that stops reading is disconnected once its backlog passes the bound,
instead of growing the server. Client -> kernel messages sent while no
session is attached (a restart in progress) wait in a short bounded list.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING

from kernels.messages import ClientMessage, KernelMessage

if TYPE_CHECKING:
    from kernels.session import KernelSession

log = logging.getLogger(__name__)

BACKLOG_BYTES = 8 * 1024 * 1024     # unread bytes a client may leave before it is dropped
BACKLOG_MESSAGES = 10_000
PENDING = 256                       # client messages kept while the kernel restarts


class Relay:
    def __init__(self, backlog_bytes: int = BACKLOG_BYTES,
                 backlog_messages: int = BACKLOG_MESSAGES) -> None:
        self.backlog_bytes = backlog_bytes
        self.backlog_messages = backlog_messages
        self.session: KernelSession | None = None
        self.closed = False
        self.close_reason: str | None = None
        self.dropped = 0                          # client messages refused while restarting
        self._out: collections.deque[tuple[KernelMessage, int]] = collections.deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._pending: collections.deque[ClientMessage] = collections.deque()

    # --- kernel -> client ---------------------------------------------------------

    def put(self, msg: KernelMessage) -> None:
        if self.closed:
            return
        size = len(msg.raw_content) + len(msg.raw_metadata) + 200
        if self._bytes + size > self.backlog_bytes or len(self._out) >= self.backlog_messages:
            self.close("the client did not read its messages fast enough")
            return
        self._out.append((msg, size))
        self._bytes += size
        self._wake.set()

    async def get(self) -> KernelMessage | None:
        """The next message for the client; None once the relay is closed and drained."""
        while not self._out:
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        msg, size = self._out.popleft()
        self._bytes -= size
        return msg

    @property
    def backlog(self) -> int:
        return self._bytes

    # --- client -> kernel -----------------------------------------------------------

    def send(self, msg: ClientMessage) -> None:
        if self.closed:
            return
        if self.session is not None and not self.session.dead:
            self.session.send_client(self, msg)
        elif len(self._pending) < PENDING:
            self._pending.append(msg)
        else:
            self.dropped += 1

    def attach(self, session: KernelSession | None) -> None:
        """Route through `session` from now on (None: hold messages until the next one)."""
        self.session = session
        while session is not None and self._pending and not self.closed:
            session.send_client(self, self._pending.popleft())

    def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self.session is not None:
            self.session.detach(self)
        self._wake.set()
