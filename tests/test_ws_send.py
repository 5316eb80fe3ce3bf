"""server/handlers/ws_send.py: frames written past Tornado's write path, read by a real client."""
from __future__ import annotations

import asyncio
import json
import socket
import struct

import pytest
import tornado.web
import tornado.websocket

from server.handlers import ws_send


@pytest.mark.parametrize("length, header", [
    (0, b"\x81\x00"), (125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"),
    (0xFFFF, b"\x81\x7e\xff\xff"), (0x10000, b"\x81\x7f" + struct.pack("!Q", 0x10000)),
])
def test_the_header_is_rfc_6455s_for_each_length_class(length, header):
    assert ws_send.frame_header(length) == header


class Sender(tornado.websocket.WebSocketHandler):
    """On "go", sends the sizes asked for, each as a frame naming its place and size."""

    def initialize(self, results: list) -> None:
        self.results = results

    def get_compression_options(self):
        return {}      # offered: a client that accepts it gets large frames compressed

    def on_message(self, message):
        """A small send buffer takes part of a large frame; grown right after, it has room
        for the next frames while the large frame's rest still waits in the stream."""
        sock = self.ws_connection.stream.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        for n, size in enumerate(json.loads(message)):
            body = json.dumps({"n": n, "pad": "x" * size}).encode()
            flushed = ws_send.send_text(self, body)
            self.results.append((flushed, flushed.done()))
            if size > 100_000:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)


@pytest.fixture
async def server():
    results: list = []
    app = tornado.web.Application([("/ws", Sender, {"results": results})])
    http = app.listen(0, "127.0.0.1")
    port = next(iter(http._sockets.values())).getsockname()[1]
    yield f"ws://127.0.0.1:{port}/ws", results
    http.stop()


async def receive(url: str, sizes: list[int], **options) -> list[dict]:
    client = await tornado.websocket.websocket_connect(url, max_message_size=64 << 20, **options)
    await client.write_message(json.dumps(sizes))
    frames = [json.loads(await client.read_message()) for _ in sizes]
    client.close()
    return frames


@pytest.mark.parametrize("compressed", [False, True])
async def test_frames_arrive_whole_and_in_order_when_the_socket_cannot_take_one_at_once(
        server, compressed):
    """A frame too big for the socket's buffer is queued in the stream: the small frames after
    it must queue behind it, not jump ahead of its rest (the client would read garbage)."""
    url, results = server
    sizes = [10, 1 << 20, 10, 200, 70_000, 5]
    options = {"compression_options": {}} if compressed else {}
    frames = await receive(url, sizes, **options)
    assert [(f["n"], len(f["pad"])) for f in frames] == list(enumerate(sizes))
    await asyncio.gather(*(flushed for flushed, _ in results))   # each resolves once flushed
    at_once = [done for _, done in results]
    assert at_once[0]                       # a small frame on an idle stream: sent whole, now
    if not compressed:                      # 1 MiB does not fit the socket: it and what follows wait
        assert at_once[1:3] == [False, False]


async def test_a_frame_to_a_closed_socket_raises_as_write_message_does():
    seen: list = []

    class Late(Sender):
        def on_close(self):
            try:
                ws_send.send_text(self, b"{}")
            except tornado.websocket.WebSocketClosedError:
                seen.append("refused")

    app = tornado.web.Application([("/late", Late, {"results": []})])
    http = app.listen(0, "127.0.0.1")
    port = next(iter(http._sockets.values())).getsockname()[1]
    client = await tornado.websocket.websocket_connect(f"ws://127.0.0.1:{port}/late")
    client.close()
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    http.stop()
    assert seen == ["refused"]
