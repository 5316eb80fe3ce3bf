"""`SocketReader`: a kernel socket's messages handed on as they arrive, without a Future each.

zmq.asyncio makes a Future, a loop callback and several flag operations for every
message received; a lesson run gets five or more. Here the socket's file descriptor
sits on the event loop and each readiness drains what is waiting, so a message costs
one non-blocking receive. The descriptor signals a change of the socket's state,
not each message, and a send on the socket can take that signal: whoever sends
calls `after_send`. At most BATCH messages go per turn, so a kernel's flood
cannot keep the loop from other learners' sockets.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

import zmq

BATCH = 64      # messages handled per loop turn before the loop's other callbacks


class SocketReader:
    def __init__(self, sock: zmq.Socket, on_frames: Callable[[list[bytes]], None]) -> None:
        """`on_frames` gets each message's frames in order; it must not raise."""
        self._sock = sock
        self._on_frames = on_frames
        self._loop = asyncio.get_running_loop()
        self._fd = sock.getsockopt(zmq.FD)
        self._scheduled = False
        self._closed = False
        self._loop.add_reader(self._fd, self._drain)
        self._look_again()    # messages may be waiting already: the descriptor signals changes

    def after_send(self) -> None:
        """A send can consume the signal of waiting input: look whether some waits."""
        if not self._closed and self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._look_again()

    def close(self) -> None:
        """Stop reading; before the socket is closed (its descriptor goes with it)."""
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._fd)

    def _look_again(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        sock = self._sock
        for _ in range(BATCH):
            if self._closed or not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return
            self._on_frames(sock.recv_multipart(zmq.NOBLOCK))
        self._look_again()    # more may wait: the rest after the loop's other callbacks
