"""Five kernels flood the server at full speed; does it grow, and do bystanders still get output?

The attack of issue 9 (item 1): lesson code starts a thread that sends 1 MiB
`stream` messages with invented parent ids through the kernel's own session,
as fast as it can, and the run ends at once. Meanwhile a bystander learner
runs `print` on the lesson page once a second. Measured on a real
`lessonserver serve` (docker sandbox) from outside: the server's RSS growth
and the bystander's click-to-first-output. `tests/test_flood.py` runs a
shorter version with the same targets (RSS < 100 MB growth, first output < 1 s).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import tornado.httpclient
import tornado.websocket

from tests.serve_process import Served, lessonserver

TOKEN = uuid.uuid4().hex
FLOOD = ("import threading, time\n"
         "k = get_ipython().kernel\n"
         "def flood(until):\n"
         "    n = 0\n"
         "    while time.time() < until:\n"
         "        k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': 'A' * 2**20},\n"
         "                       parent={'msg_id': f'x{n}'})\n"
         "        n += 1\n"
         "threading.Thread(target=flood, args=(time.time() + {seconds},), daemon=True).start()\n"
         "print('flooding')")
LESSON = """---
title: Bystander
slug: bystander
kernel: python
---
```python exercise id=hello
print("...")
# --- expected output ---
hello
```
"""


@dataclasses.dataclass(frozen=True)
class FloodResult:
    rss_before_mb: float
    rss_peak_mb: float
    first_outputs_ms: tuple[float, ...]     # the bystander's, one per second of flood

    @property
    def growth_mb(self) -> float:
        return self.rss_peak_mb - self.rss_before_mb


def course(root: Path) -> Path:
    lessons = root / "lessons" / "bystander"
    lessons.mkdir(parents=True)
    (lessons / "course.yaml").write_text("title: Bystander\n")
    (lessons / "bystander.md").write_text(LESSON)
    return lessons.parent


async def _flooder(base: str, seconds: float) -> tornado.websocket.WebSocketClientConnection:
    """A kernel through the API whose code floods; its channels socket stays open and read."""
    client = tornado.httpclient.AsyncHTTPClient()
    headers = {"Authorization": f"token {TOKEN}"}
    model = json.loads((await client.fetch(f"{base}/api/kernels", method="POST", headers=headers,
                                           body=json.dumps({"name": "python"}),
                                           request_timeout=120)).body)   # cold starts, busy host
    socket = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        base.replace("http", "ws") + f"/api/kernels/{model['id']}/channels", headers=headers))
    await socket.write_message(json.dumps({
        "channel": "shell", "header": {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request",
                                       "session": "flood", "username": "flood", "version": "5.3"},
        "parent_header": {}, "metadata": {},
        "content": {"code": FLOOD.replace("{seconds}", str(seconds)), "silent": False,
                    "store_history": True, "user_expressions": {}, "allow_stdin": False}}))
    return socket


async def _drain(socket) -> None:
    while await socket.read_message() is not None:
        pass


async def _bystander(base: str, seconds: float) -> list[float]:
    client = tornado.httpclient.AsyncHTTPClient()
    await client.fetch(f"{base}/lessons/bystander")
    socket = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        base.replace("http", "ws") + "/lessons/bystander/ws"))  # its handshake: an identity
    firsts: list[float] = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        began = time.perf_counter()
        await socket.write_message(json.dumps({"type": "run", "run": str(n), "exercise": "hello",
                                               "code": "print('hello')"}))
        first = None
        while True:
            frame = json.loads(await socket.read_message())
            if frame["type"] == "output" and first is None:
                first = (time.perf_counter() - began) * 1000
            if frame["type"] in ("result", "error"):
                break
        if n:                                   # the first run starts the bystander's kernel
            firsts.append(first if first is not None else float("inf"))
        n += 1
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - began)))
    socket.close()
    return firsts


async def flood(served: Served, seconds: float, flooders: int = 5) -> FloodResult:
    """Flood from `flooders` kernels for `seconds`, sampling the server's RSS every 0.2 s."""
    await _bystander(served.url, 1.5)           # warm up: the server's own imports and caches
    before = served.rss_mb()
    sockets = await asyncio.gather(*(_flooder(served.url, seconds) for _ in range(flooders)))
    drains = [asyncio.create_task(_drain(s)) for s in sockets]
    peak = before
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, served.rss_mb())
            await asyncio.sleep(0.2)

    sampler = asyncio.create_task(sample())
    try:
        firsts = await _bystander(served.url, seconds)
    finally:
        sampling = False
        await sampler
        for socket in sockets:
            socket.close()
        await asyncio.gather(*drains, return_exceptions=True)
    return FloodResult(before, peak, tuple(firsts))


def serve_for_flood(root: Path, instance: str):
    return lessonserver(root, LS_LESSONS_DIR=str(course(root)), LS_API_TOKEN=TOKEN,
                        LS_SANDBOX="docker", LS_POOL_SIZE="1", LS_MAX_KERNELS="12",
                        LS_INSTANCE=instance, LS_LOG_LEVEL="WARNING")


async def main() -> None:
    seconds = 30.0
    with tempfile.TemporaryDirectory(prefix="ls-bench-flood-") as tmp:
        with serve_for_flood(Path(tmp), f"bench-flood-{os.getpid()}") as served:
            result = await flood(served, seconds)
    firsts = sorted(result.first_outputs_ms)
    p99 = firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))]
    print(f"  5 kernels flooding 1 MiB messages with invented parent ids for {seconds:.0f} s")
    print(f"  {'server RSS growth (goal < 100 MB)':<52} {result.growth_mb:>8.1f} MB"
          f"  ({result.rss_before_mb:.0f} -> {result.rss_peak_mb:.0f} MB)")
    print(f"  {'bystander first output, median (goal < 1 s)':<52} "
          f"{statistics.median(firsts):>8.1f} ms")
    print(f"  {'bystander first output, p99 / max':<52} {p99:>8.1f} ms  / {firsts[-1]:.1f} ms"
          f"  over {len(firsts)} runs")
