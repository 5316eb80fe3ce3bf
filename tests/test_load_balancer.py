"""Two `serve` processes behind the shipped HAProxy config: a learner stays on one process,
and when that process dies it reconnects through the balancer to the other, its progress kept,
and is told in plain words that its kernel restarted. A read that a dying process took and
dropped is sent again; a write never is."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socketserver
import subprocess
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import tornado.httpclient
import tornado.websocket

from server import config, db
from server.config import PROJECT_ROOT
from server.handlers.exercise_ws import KERNEL_RESTARTED
from tests import services
from tests.serve_process import lessonserver, listening
from tests.test_exercise_ws import COURSE, LESSON, handshake_cookie

HAPROXY_CFG = PROJECT_ROOT / "deploy" / "haproxy.cfg"


@contextlib.contextmanager
def haproxy(backends: list[str], log: Path):
    port = services.free_port()
    env = {**os.environ, "LB_BIND": f"127.0.0.1:{port}",
           **{f"LS_SERVE_{i + 1}": url.removeprefix("http://") for i, url in enumerate(backends)}}
    with log.open("w") as out, listening(["haproxy", "-db", "-f", str(HAPROXY_CFG)], port, "haproxy",
                                         env=env, stdout=out, stderr=subprocess.STDOUT) as url:
        yield url


class _Threaded(socketserver.ThreadingTCPServer):
    daemon_threads = True


@contextlib.contextmanager
def stand_in(answers: bool):
    """A serve process's stand-in on a free port: it passes health checks, and notes the method
    of any other request, then answers it (`answers`) or drops it unanswered, as a process does
    that is killed while it takes the connection. Yields (its URL, the methods it got)."""
    got: list[str] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            method, path, _ = self.rfile.readline().decode().split(" ", 2)
            length = 0
            while (header := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode().partition(":")
                length = int(value) if name.lower() == "content-length" else length
            self.rfile.read(length)
            if path != "/healthz":
                got.append(method)
            if answers or path == "/healthz":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    server = _Threaded(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()


def status(url: str, data: bytes | None = None) -> int:
    try:
        with urllib.request.urlopen(url, data=data, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_read_that_a_dying_process_dropped_goes_to_another_but_a_write_is_never_sent_twice(tmp_path):
    with stand_in(answers=False) as (dying, dropped), stand_in(answers=True) as (alive, answered), \
            haproxy([dying, alive], tmp_path / "haproxy.log") as lb:
        assert [status(lb + "/lessons") for _ in range(4)] == [200] * 4
        assert "GET" in dropped and answered.count("GET") == 4
        posted = [status(lb + "/login", b"name=a") for _ in range(6)]
        assert set(posted) == {200, 502} and dropped.count("POST") == posted.count(502)
        assert answered.count("POST") == posted.count(200)


async def kernels_on(url: str) -> float:
    body = (await tornado.httpclient.AsyncHTTPClient().fetch(url + "/metrics")).body.decode()
    return float(re.search(r"^lessonserver_kernels (\S+)$", body, re.M).group(1))


async def open_socket(lb: str, cookie: str) -> tornado.websocket.WebSocketClientConnection:
    return await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        lb.replace("http", "ws") + "/lessons/practice/ws", headers={"Cookie": cookie}))


async def run(socket, exercise: str, code: str, frames: list | None = None) -> dict:
    """The run's result frame; every frame read on the way is added to `frames`."""
    await socket.write_message(json.dumps({"type": "run", "run": uuid.uuid4().hex[:8],
                                           "exercise": exercise, "code": code}))
    while True:
        frame = json.loads(await asyncio.wait_for(socket.read_message(), 60))
        if frames is not None:
            frames.append(frame)
        if frame["type"] == "result":
            return frame


def kernel_tag(frames: list) -> str:
    """What the page keeps of its kernel (notebook.js): the last tag the server sent."""
    return [f["session"] for f in frames if f["type"] == "kernel" and f.get("session")][-1]


def printed(frames: list) -> str:
    return "".join(f["output"].get("text", "") for f in frames if f["type"] == "output")


async def reconnect(lb: str, cookie: str, tag: str):
    """The page's socket again, and its hello naming the kernel it had."""
    socket = await open_socket(lb, cookie)
    await socket.write_message(json.dumps({"type": "hello", "session": tag}))
    return socket


def test_a_learner_whose_process_dies_carries_on_in_the_other(tmp_path, fresh_pg_url, redis_url,
                                                              instance_name):
    lessons = tmp_path / "lessons" / "practice"
    lessons.mkdir(parents=True)
    (lessons / COURSE).write_text("title: Practice\n")
    (lessons / "practice.md").write_text(LESSON)
    env = {"LS_DATABASE_URL": fresh_pg_url, "LS_REDIS_URL": redis_url, "LS_INSTANCE": instance_name,
           "LS_LESSONS_DIR": str(tmp_path / "lessons"), "LS_SANDBOX": "local", "LS_POOL_SIZE": "0",
           "LS_COOKIE_SECRET": "c" * 40, "LS_API_TOKEN": "t" * 40, "LS_TRUSTED_PROXIES": "127.0.0.1"}
    db.upgrade(config.load({**env, "LS_DATA_DIR": str(tmp_path / "data")}))
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    with lessonserver(tmp_path / "a", **env) as a, lessonserver(tmp_path / "b", **env) as b, \
            haproxy([a.url, b.url], tmp_path / "haproxy.log") as lb:
        async def learner() -> None:
            client = tornado.httpclient.AsyncHTTPClient()
            page = await client.fetch(lb + "/lessons/practice")
            assert page.code == 200
            socket = await open_socket(lb, "")
            cookie = handshake_cookie(socket)      # a new visitor's identity comes with its socket
            frames: list = []
            first = await run(socket, "hello", "x = 41\nprint('hello')", frames)
            assert first["verdict"]["passed"] and first["progress"]["passed"] == 1
            tag = kernel_tag(frames)
            socket.close()                         # a dropped socket, the same process: no notice
            socket, frames = await reconnect(lb, cookie, tag), []
            kept = await run(socket, "hello", "print(x + 1)", frames)
            assert kept["status"] == "ok" and "42" in printed(frames)
            assert not any(f.get("restarted") for f in frames), frames
            holder = a if await kernels_on(a.url) >= 1 else b
            other = b if holder is a else a
            for _ in range(3):                     # the learner sticks to its process
                again = await client.fetch(lb + "/", headers={"Cookie": cookie})
                assert again.code == 200
            assert await kernels_on(holder.url) >= 1 and await kernels_on(other.url) == 0

            os.kill(holder.pid, signal.SIGKILL)    # its process goes away
            assert await asyncio.wait_for(socket.read_message(), 10) is None
            socket = await reconnect(lb, cookie, tag)  # the page reconnects, through the balancer
            told = json.loads(await asyncio.wait_for(socket.read_message(), 10))
            while not told.get("restarted"):       # the page is told at once, in plain words
                assert told["type"] in ("kernel", "restore"), told
                told = json.loads(await asyncio.wait_for(socket.read_message(), 10))
            assert told == {"type": "kernel", "state": "none", "message": KERNEL_RESTARTED,
                            "restarted": True}
            frames = []
            second = await run(socket, "add", "def add(a, b):\n    return a + b\n", frames)
            assert second["verdict"]["passed"], second
            assert f"[{KERNEL_RESTARTED}]" in printed(frames)   # and again in the run's output
            assert kernel_tag(frames) != tag
            assert second["progress"] == {"passed": 2, "total": 3}   # the first pass was kept
            assert await kernels_on(other.url) >= 1
            view = await client.fetch(lb + "/lessons/practice", headers={"Cookie": cookie})
            assert "2 of 3 exercises passed" in view.body.decode()
            socket.close()
        asyncio.run(learner())
