"""What any relay between a browser and a kernel costs here, for reading bench.runs' ratios.

A no-op relay (bench/_relay.py: a Tornado WebSocket to the kernel's ZMQ sockets in its own
process, nothing checked, traced or parsed) against bare jupyter_client, each with a kernel
of its own from the same sandbox, in rounds of shuffled order. The relay's ratio is the floor
of the lesson socket's: the server's checks, tracing and bookkeeping are what it adds above.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import tornado.httpclient

from bench.runs import CODE, bare, connect, line
from kernels.manager import start_spec
from kernels.plugins import discover
from kernels.sandbox import create_sandbox
from server import config

ROUNDS = 200


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ls-bench-floor-") as tmp:
        settings = config.load({"LS_DATA_DIR": tmp, "LS_INSTANCE": f"bench-floor-{os.getpid()}",
                                "LS_SANDBOX": os.environ.get("LS_SANDBOX", "docker")})
        bare_once, bare_close = await bare(settings)
        sandbox = create_sandbox(settings)
        kernel = await sandbox.start(start_spec(settings, next(p for p in discover()
                                                              if p.name == "python")))
        info = {k: v.decode() if isinstance(v, bytes) else v for k, v in kernel.connection.items()}
        relay = subprocess.Popen([sys.executable, "-m", "bench._relay", json.dumps(info)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            port = int(relay.stdout.readline())
            socket = await connect(tornado.httpclient.HTTPRequest(f"ws://127.0.0.1:{port}/ws"))

            async def relay_once() -> tuple[float, float]:
                began = time.perf_counter()
                await socket.write_message(CODE)
                await socket.read_message()
                return (time.perf_counter() - began) * 1000, 0.0

            paths = {"bare": bare_once, "relay": relay_once}
            for once in paths.values():      # kernels ready, iopub subscribed: not counted
                await asyncio.wait_for(once(), 20)
            got: dict[str, list[float]] = {name: [] for name in paths}
            order = random.Random(8)
            for _ in range(ROUNDS):
                for name in order.sample(list(paths), len(paths)):
                    got[name].append((await paths[name]())[0])
            socket.close()
        finally:
            relay.kill()
            relay.wait()
            await sandbox.kill(kernel)
            await sandbox.close()
            await bare_close()
    base, floor = statistics.median(got["bare"]), statistics.median(got["relay"])
    print(f"  sandbox: {settings.sandbox}; medians of {ROUNDS} shuffled rounds of {CODE!r}; "
          "a kernel each", flush=True)
    line("bare jupyter_client: first output (baseline)", f"{base:.1f} ms")
    line("no-op relay (WebSocket -> ZMQ): first output", f"{floor:.1f} ms",
         f"{floor / base:.2f}x bare (the lesson socket's floor)")
