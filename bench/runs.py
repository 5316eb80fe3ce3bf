"""A run from the browser's side: click to first output and to verdict, against bare jupyter_client.

One `lessonserver serve` process (embedded mode; LS_SANDBOX from the environment,
docker by default here) with a one-lesson course. Measured on the same kind of kernel,
each path once a round, in shuffled order:
  - bare jupyter_client straight to a kernel's ZMQ sockets (the baseline),
  - the Jupyter channels WebSocket (`/api/kernels/{id}/channels`),
  - the lesson page's WebSocket (`/lessons/{slug}/ws`: run, grade, progress, trace).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import tornado.httpclient
import tornado.websocket
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient

from kernels.manager import start_spec
from kernels.plugins import discover
from kernels.sandbox import create_sandbox
from server import config
from tests.serve_process import lessonserver

RUNS = int(os.environ.get("LS_BENCH_RUNS", "100"))   # rounds; medians of 30 moved 0.1x run to run
TOKEN = uuid.uuid4().hex
CODE = "print('hello')"
LESSON = """---
title: Bench
slug: bench
kernel: python
---
```python exercise id=hello
print("...")
# --- expected output ---
hello
```

```python exercise id=add
def add(a, b):
    return 0
# --- tests ---
assert add(2, 3) == 5
```
"""
ADD = "def add(a, b):\n    return a + b"


def line(what: str, value: str, ratio: str = "") -> None:
    print(f"  {what:<52} {value:>10}  {ratio}", flush=True)


async def connect(request: tornado.httpclient.HTTPRequest):
    socket = await tornado.websocket.websocket_connect(request)
    socket.protocol.set_nodelay(True)   # as browsers do: no Nagle delay on small frames
    return socket


Once = Callable[[], Awaitable[tuple[float, float]]]   # one run: (first output ms, end ms)


async def lesson_socket(base: str, exercise: str = "hello",
                        code: str = CODE) -> tuple[Once, Callable[[], None]]:
    """One run at a time through the lesson page's socket: (first output ms, verdict ms)."""
    client = tornado.httpclient.AsyncHTTPClient()
    await client.fetch(f"{base}/lessons/bench")
    socket = await connect(tornado.httpclient.HTTPRequest(   # its handshake gives the identity
        base.replace("http", "ws") + "/lessons/bench/ws"))
    count = iter(range(1_000_000))

    async def once() -> tuple[float, float]:
        run = str(next(count))
        began = time.perf_counter()
        await socket.write_message(json.dumps({"type": "run", "run": run, "exercise": exercise,
                                               "code": code}))
        seen_output = None
        while True:
            frame = json.loads(await socket.read_message())
            if frame["type"] == "error":     # e.g. over the runs-per-minute quota: say so
                raise RuntimeError(f"run {run} refused: {frame['message']}")
            if frame["type"] == "output" and seen_output is None:
                seen_output = time.perf_counter() - began
            if frame["type"] == "result":
                assert frame["verdict"]["passed"], frame
                break
        first = seen_output * 1000 if seen_output is not None else float("nan")
        return first, (time.perf_counter() - began) * 1000

    return once, socket.close


async def first_output_and_idle(receive, msg_id: str, began: float) -> tuple[float, float]:
    """(ms to the request's first stream output, ms to its idle status); `receive` gives
    messages as dicts or JSON text."""
    first = None
    while True:
        msg = await receive()
        msg = json.loads(msg) if isinstance(msg, str) else msg
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream" and first is None:
            first = time.perf_counter() - began
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return first * 1000, (time.perf_counter() - began) * 1000


async def channels(base: str) -> tuple[Once, Callable[[], Awaitable[None]]]:
    """One run at a time through the Jupyter channels socket: (first output ms, idle ms)."""
    client = tornado.httpclient.AsyncHTTPClient()
    headers = {"Authorization": f"token {TOKEN}"}
    model = json.loads((await client.fetch(f"{base}/api/kernels", method="POST", headers=headers,
                                           body=json.dumps({"name": "python"}))).body)
    socket = await connect(tornado.httpclient.HTTPRequest(
        base.replace("http", "ws") + f"/api/kernels/{model['id']}/channels", headers=headers))

    async def once() -> tuple[float, float]:
        msg_id = uuid.uuid4().hex
        began = time.perf_counter()
        await socket.write_message(json.dumps({
            "channel": "shell", "header": {"msg_id": msg_id, "msg_type": "execute_request",
                                           "session": "bench", "username": "bench", "version": "5.3",
                                           "date": ""},
            "parent_header": {}, "metadata": {}, "buffers": [],
            "content": {"code": CODE, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        return await first_output_and_idle(socket.read_message, msg_id, began)

    async def close() -> None:
        socket.close()
        await client.fetch(f"{base}/api/kernels/{model['id']}", method="DELETE", headers=headers)

    return once, close


async def bare(settings) -> tuple[Once, Callable[[], Awaitable[None]]]:
    """The baseline: jupyter_client straight to a kernel of the same sandbox and plugin."""
    sandbox = create_sandbox(settings)
    python = next(p for p in discover() if p.name == "python")
    kernel = await sandbox.start(start_spec(settings, python))
    context = zmq.asyncio.Context()
    client = AsyncKernelClient(context=context)
    client.load_connection_info(dict(kernel.connection))
    client.start_channels(hb=False)
    await client.wait_for_ready(timeout=20)

    async def once() -> tuple[float, float]:
        began = time.perf_counter()
        msg_id = client.execute(CODE)
        return await first_output_and_idle(lambda: client.get_iopub_msg(timeout=10), msg_id, began)

    async def close() -> None:
        client.stop_channels()
        context.destroy(linger=0)
        await sandbox.kill(kernel)
        await sandbox.close()

    return once, close


async def interleaved(paths: dict[str, Once], runs: int) -> dict[str, list[tuple[float, float]]]:
    """Each path once per round, so a drift of the host's speed (another process waking, a CPU
    clock change) weighs on all of them alike; in an order shuffled per round, since a run
    starts while the server still finishes the one before (traces, checks for stray
    processes), and a fixed order made one path always pay for the same other path's end.
    The first round starts kernels and warms caches: not counted."""
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
    order = random.Random(8)        # the same orders in every run of the bench
    for n in range(runs + 1):
        for name in order.sample(list(paths), len(paths)):
            figures = await paths[name]()
            if n:
                measured[name].append(figures)
    return measured


async def measure(base: str, bare_once: Once) -> tuple[dict[str, list[tuple[float, float]]],
                                                      list[float]]:
    lesson_once, lesson_close = await lesson_socket(base)
    channels_once, channels_close = await channels(base)
    got = await interleaved({"bare": bare_once, "channels": channels_once, "lesson": lesson_once},
                            RUNS)
    lesson_close()
    await channels_close()
    # A check takes a fresh kernel from the pool, which refills while the learner reads.
    check_once, check_close = await lesson_socket(base, "add", ADD)
    await check_once()                          # starts the kernel: not counted
    checked = []
    for _ in range(10):
        await asyncio.sleep(1.5)
        checked.append((await check_once())[1])
    check_close()
    return got, checked


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ls-bench-runs-") as tmp:
        lessons = Path(tmp) / "lessons" / "bench"
        lessons.mkdir(parents=True)
        (lessons / "course.yaml").write_text("title: Bench\n")
        (lessons / "bench.md").write_text(LESSON)
        env = {"LS_LESSONS_DIR": str(lessons.parent), "LS_API_TOKEN": TOKEN,
               "LS_SANDBOX": os.environ.get("LS_SANDBOX", "docker"), "LS_POOL_SIZE": "1",
               "LS_INSTANCE": f"bench-runs-{os.getpid()}", "LS_LOG_LEVEL": "WARNING",
               # The learner's quota (60 a minute) is not what is measured here.
               "LS_ANON_RUNS_PER_MINUTE": str(RUNS * 2 + 100)}
        settings = config.load({**env, "LS_DATA_DIR": f"{tmp}/bare"})
        # The server in its own process, as in production: its work after a write does not
        # hold up the client here, as it would not hold up a browser.
        with lessonserver(Path(tmp), **env) as server:
            bare_once, bare_close = await bare(settings)
            try:
                got, checked = await measure(server.url, bare_once)
            finally:
                await bare_close()
    bare_first, bare_idle = zip(*got["bare"])
    ws_first, ws_idle = zip(*got["channels"])
    first, done = zip(*got["lesson"])
    med = statistics.median
    print(f"  sandbox: {env['LS_SANDBOX']}; medians of {RUNS} runs of {CODE!r}, the three paths "
          "once a round in shuffled order; the server in its own process")
    line("bare jupyter_client: first output (baseline)", f"{med(bare_first):.1f} ms")
    line("bare jupyter_client: run to idle (baseline)", f"{med(bare_idle):.1f} ms")
    line("Jupyter channels WebSocket: first output", f"{med(ws_first):.1f} ms",
         f"{med(ws_first) / med(bare_first):.2f}x bare (goal <= 1.1x)")
    line("Jupyter channels WebSocket: run to idle", f"{med(ws_idle):.1f} ms",
         f"{med(ws_idle) / med(bare_idle):.2f}x bare (goal <= 1.1x)")
    line("lesson socket: click to first output", f"{med(first):.1f} ms",
         f"{med(first) / med(bare_first):.2f}x bare (goal <= 1.0x)")
    line("lesson socket: click to verdict (graded, saved, traced)", f"{med(done):.1f} ms",
         f"{med(done) / med(bare_idle):.2f}x bare run")
    line("lesson socket: verdict of a tests check (fresh kernel)", f"{med(checked):.1f} ms",
         f"{med(checked) / med(done):.2f}x an output check (10 runs, 1.5 s apart)")
