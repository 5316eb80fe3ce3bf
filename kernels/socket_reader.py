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
# pyzmq's constants are IntFlag enums, and every `|` or `&` on them is a call into enum.py:
# plain ints here, and our own multipart loop, take 4 of recv_multipart's 26 us a message
# and 2 of each readiness check's 5.
EVENTS, POLLIN, NOBLOCK, RCVMORE = (int(c) for c in (zmq.EVENTS, zmq.POLLIN, zmq.NOBLOCK,
                                                     zmq.RCVMORE))


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
        if not self._closed and self._sock.get(EVENTS) & POLLIN:
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
        recv, get = sock.recv, sock.get
        for _ in range(BATCH):
            if self._closed or not get(EVENTS) & POLLIN:
                return
            frames = [recv(NOBLOCK)]
            while get(RCVMORE):             # the rest of a message is there once its first is
                frames.append(recv(NOBLOCK))
            self._on_frames(frames)
        self._look_again()    # more may wait: the rest after the loop's other callbacks
