"""A no-op relay for bench.relay_floor: WebSocket in, the kernel's ZMQ out, in its own process.

It does only what any relay must: sign and send an execute_request for each frame (the frame is
the code), and write back the raw content of that request's first stream message. No checks,
no tracing, no JSON parsing of what the kernel sends.
`python -m bench._relay '<connection info JSON>'` prints its port.
"""
from __future__ import annotations

import asyncio
import json
import sys

import tornado.web
import tornado.websocket
import zmq
import zmq.asyncio
from jupyter_client.session import DELIM, Session


def url(info: dict, port: int) -> str:
    if info["transport"] == "ipc":
        return f"ipc://{info['ip']}-{port}"
    return f"tcp://{info['ip']}:{port}"


class Relay(tornado.websocket.WebSocketHandler):
    def initialize(self, info: dict, context: zmq.asyncio.Context) -> None:
        self.info, self.context = info, context
        self.session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
        self.want: bytes | None = None       # the msg_id whose first stream goes back

    def open(self) -> None:
        self.set_nodelay(True)
        self.shell = self.context.socket(zmq.DEALER)
        self.shell.connect(url(self.info, self.info["shell_port"]))
        self.iopub = self.context.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.iopub.connect(url(self.info, self.info["iopub_port"]))
        self.reader = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        while True:
            frames = await self.iopub.recv_multipart()
            at = frames.index(DELIM)
            header, parent = frames[at + 2], frames[at + 3]
            if self.want and b'"stream"' in header and self.want in parent:
                self.want = None
                self.write_message(frames[at + 5])

    def on_message(self, code: str | bytes) -> None:
        msg = self.session.msg("execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        self.want = msg["header"]["msg_id"].encode()
        self.session.send(self.shell, msg)


async def main(info: dict) -> None:
    app = tornado.web.Application([("/ws", Relay, {"info": info,
                                                   "context": zmq.asyncio.Context()})])
    server = app.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    print(port, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
