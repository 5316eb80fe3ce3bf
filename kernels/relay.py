"""One Jupyter client's connection to a managed kernel: a bounded mailbox both ways.

The channels WebSocket holds a Relay; the kernel manager attaches it to the
kernel's current session and moves it to the replacement when the kernel is
restarted or dies. Kernel -> client messages are written at once, from the
kernel's reader, into the client's connection (`deliver_to`): no task hop on
the way. What the connection has not flushed yet is counted, and a client
that stops reading is disconnected once its backlog passes the bound, instead
of growing the server. Before the connection is given (during its handshake)
messages wait in a bounded outbox, and go first once it is. Client -> kernel
messages sent while no session is attached (a restart in progress) wait in a
short bounded list.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from kernels.messages import ClientMessage, KernelMessage

if TYPE_CHECKING:
    from kernels.session import KernelSession

log = logging.getLogger(__name__)

BACKLOG_BYTES = 8 * 1024 * 1024     # unflushed bytes a client may leave before it is dropped
BACKLOG_MESSAGES = 10_000
PENDING = 256                       # client messages kept while the kernel restarts

# Writes one message to the client; returns a future that resolves once it is flushed.
# Raises ConnectionError when the client is gone.
Write = Callable[[KernelMessage], "asyncio.Future[None]"]
Closed = Callable[[str], None]


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
        self._bytes = 0                           # queued here or written and not yet flushed
        self._unflushed = 0                       # messages written and not yet flushed
        self._write: Write | None = None          # until the connection is given: the outbox
        self._on_close: Closed | None = None
        self._pending: collections.deque[ClientMessage] = collections.deque()

    # --- kernel -> client ---------------------------------------------------------

    def put(self, msg: KernelMessage) -> None:
        if self.closed:
            return
        size = len(msg.raw_content) + len(msg.raw_metadata) + 200
        if self._bytes + size > self.backlog_bytes \
                or len(self._out) + self._unflushed >= self.backlog_messages:
            self.close("the client did not read its messages fast enough")
            return
        self._bytes += size
        if self._write is None:
            self._out.append((msg, size))
        else:
            self._send(msg, size)

    def _send(self, msg: KernelMessage, size: int) -> None:
        assert self._write is not None
        try:
            flushed = self._write(msg)
        except ConnectionError:
            self._bytes -= size
            self.close("the client went away")
            return
        self._unflushed += 1
        if flushed.done():       # went out whole at once: no callback to schedule
            self._flushed(flushed, size)
        else:
            flushed.add_done_callback(lambda done: self._flushed(done, size))

    def _flushed(self, done: asyncio.Future, size: int) -> None:
        self._bytes -= size
        self._unflushed -= 1
        if not done.cancelled() and done.exception() is not None:   # retrieved: the client is gone
            self.close("the client went away")

    def deliver_to(self, write: Write, on_close: Closed) -> None:
        """Write every message to the client as it comes (what waited goes first); call
        `on_close(reason)` once the relay closes."""
        self._write, self._on_close = write, on_close
        while self._out and self._write is not None:
            self._send(*self._out.popleft())
        if self.closed:
            self._on_close, callback = None, self._on_close
            callback(self.close_reason or "closed")

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
        if self._on_close is not None:
            self._on_close, callback = None, self._on_close
            callback(reason)
