"""Issue 11: 200 learners press Run at once on a live event's lesson, its pool pre-warmed.

A real `lessonserver serve` (Postgres, Redis, local sandbox) whose admin schedules a live
event on /admin/live-events; the planner grows the python pool to the host's capacity
(LS_MAX_KERNELS). Then 200 new visitors open the lesson and its socket and all press Run in
the same instant. Printed: time to first output p50/p99 (goal p99 < 1 s), for those handed
a warm kernel and for those who waited in the queue, how many waited, errors, and the load
average. Two hosts:
- sized for the event (capacity 200: a warm kernel for every learner, who stays on the page);
- smaller than the event (capacity 40: 160 wait in the queue; each learner leaves after its
  result, LS_RECONNECT_GRACE=0, which frees a kernel for the queue's head).
LS_BENCH_LEARNERS and LS_BENCH_CAPACITY (one host of that size) change them, and
LS_BENCH_SANDBOX=docker runs the kernels in containers. Loopback only; bounded by DEADLINE.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import tempfile
import time
import uuid
from pathlib import Path

import tornado.httpclient
import tornado.websocket

from bench._load import Sample
from server import config, db
from tests import services
from tests.accounts_support import Client
from tests.serve_process import served
from tests.test_exercise_ws import COURSE, LESSON   # a lesson whose `hello` prints hello

LEARNERS = int(os.environ.get("LS_BENCH_LEARNERS", "200"))
HOSTS = ((int(os.environ["LS_BENCH_CAPACITY"]),) if "LS_BENCH_CAPACITY" in os.environ
         else (LEARNERS, 40))    # LS_MAX_KERNELS of each host tried
SANDBOX = os.environ.get("LS_BENCH_SANDBOX", "local")
DEADLINE = 180.0         # seconds the learners are given, all told
PREWARM_WAIT = 300.0
TOKEN = "bench-" + "t" * 30


def pool_ready(metrics: str) -> int:
    found = re.search(r'^lessonserver_pool_ready\{kernel="python"\} (\S+)$', metrics, re.M)
    return int(float(found.group(1))) if found else 0


async def schedule_event(base: str) -> None:
    admin = Client(base)
    await admin.get("/admin/login")                       # its form sets the XSRF cookie
    assert (await admin.post("/admin/login", {"token": TOKEN})).code == 302
    starts = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
    answer = await admin.post("/admin/live-events", {
        "starts_at": starts.strftime("%Y-%m-%dT%H:%M:%S"), "minutes": "30", "lesson": "practice",
        "learners": str(LEARNERS)})
    assert answer.code == 302, answer.body


async def prewarm(base: str, capacity: int) -> float:
    http = tornado.httpclient.AsyncHTTPClient()
    began = time.monotonic()
    while time.monotonic() - began < PREWARM_WAIT:
        if pool_ready((await http.fetch(base + "/metrics")).body.decode()) >= capacity:
            return time.monotonic() - began
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the pool did not reach {capacity} warm kernels in {PREWARM_WAIT:.0f} s")


class Learner:
    def __init__(self) -> None:
        self.started: float | None = None        # the page shows the run as running
        self.first_output: float | None = None
        self.queued = False
        self.error: str | None = None
        self.seen: list[str] = []                 # the frames' types, for a learner that failed

    async def arrive(self, base: str) -> None:
        """The lesson page (the same cached bytes for every newcomer) and its socket, whose
        handshake gives the visitor its cookie (no row yet), ready to press Run."""
        await tornado.httpclient.AsyncHTTPClient().fetch(base + "/lessons/practice")
        self.socket = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
            base.replace("http", "ws") + "/lessons/practice/ws"))

    async def press_run(self, deadline: float, leave: bool) -> None:
        began = time.perf_counter()
        await self.socket.write_message(json.dumps(
            {"type": "run", "run": "r1", "exercise": "hello", "code": "print('hello')"}))
        try:
            while True:
                raw = await asyncio.wait_for(self.socket.read_message(),
                                             max(0.1, deadline - time.perf_counter()))
                if raw is None:
                    self.error = "socket closed"
                    return
                frame = json.loads(raw)
                self.seen.append(frame["type"])
                if frame["type"] == "queued":
                    self.queued = True
                # The page shows a run as running from its first frame: its output, or
                # "started", which the server sends only for a run silent for 50 ms.
                if frame["type"] in ("started", "output") and self.started is None:
                    self.started = time.perf_counter() - began
                if frame["type"] == "output" and self.first_output is None:
                    self.first_output = time.perf_counter() - began
                elif frame["type"] == "error":
                    self.error = frame["message"]
                    return
                elif frame["type"] == "result":
                    return
        except asyncio.TimeoutError:
            self.error = "no result before the deadline"
        finally:
            if leave:
                self.socket.close()   # the learner leaves: its kernel goes to the queue's head


def line(label: str, learners: list[Learner]) -> str:
    if not learners:
        return f"  {label}: none"
    first = Sample(tuple(one.first_output for one in learners), 0, 1)
    started = Sample(tuple(one.started for one in learners), 0, 1)
    return (f"  {label}: {len(learners)} learners, first output p50 {first.pct(50) * 1000:.0f} ms,"
            f" p99 {first.pct(99) * 1000:.0f} ms (shown running: p50"
            f" {started.pct(50) * 1000:.0f} ms, p99 {started.pct(99) * 1000:.0f} ms)")


async def event(base: str, capacity: int, server_pid: int) -> None:
    await schedule_event(base)
    print(f"  pool pre-warmed to {capacity} python kernels (LS_MAX_KERNELS) in "
          f"{await prewarm(base, capacity):.1f} s for {LEARNERS} expected learners", flush=True)
    leave = capacity < LEARNERS
    learners = [Learner() for _ in range(LEARNERS)]
    for i in range(0, LEARNERS, 20):                  # arrive in small groups, then wait together
        await asyncio.gather(*(one.arrive(base) for one in learners[i:i + 20]))
    print(f"  all {LEARNERS} learners are on the page, their sockets open; they press Run",
          flush=True)
    load_before = os.getloadavg()
    server_before, learners_before = cpu_seconds(server_pid), cpu_seconds(os.getpid())
    loop_before = loop_waited(server_pid)
    deadline = time.perf_counter() + DEADLINE
    began = time.perf_counter()
    await asyncio.gather(*(one.press_run(deadline, leave) for one in learners))
    took = time.perf_counter() - began
    load_after = os.getloadavg()
    server_cpu = cpu_seconds(server_pid) - server_before
    loop_wait = loop_waited(server_pid) - loop_before
    learners_cpu = cpu_seconds(os.getpid()) - learners_before
    outputs = [one for one in learners if one.first_output is not None]
    print(line(f"{LEARNERS} learners press Run at once, all", outputs), flush=True)
    print(line("handed a warm kernel", [one for one in outputs if not one.queued]), flush=True)
    print(line("waited in the queue", [one for one in outputs if one.queued]), flush=True)
    errors: dict[str, int] = {}
    for one in learners:
        if one.error:
            errors[one.error] = errors.get(one.error, 0) + 1
            print(f"  a learner's error: {one.error}; frames it got: {' '.join(one.seen) or 'none'}")
    print(f"  waited in the queue: {sum(one.queued for one in learners)}; no output: "
          f"{LEARNERS - len(outputs)}; errors: {errors or 0}; all done in {took:.1f} s; goal p99 "
          f"< 1 s; load average before {load_before[0]:.1f}, after {load_after[0]:.1f} "
          f"({os.cpu_count()} cores)", flush=True)
    print(f"  the server process spent {server_cpu:.2f} s of CPU on them, "
          f"{server_cpu / LEARNERS * 1000:.1f} ms a learner; the {LEARNERS} learners' sockets (this "
          f"process, on the same cores) {learners_cpu:.2f} s", flush=True)
    print(f"  the server's event loop was ready to run but waited for a core {loop_wait:.2f} s of"
          f" the {took:.1f} s{AUTOGROUPS if SANDBOX == 'local' and autogroups() else ''}", flush=True)
    for one in learners:
        one.socket.close()


def kernel_cpu_per_run(runs: int = 200) -> float:
    """Seconds of CPU a warm python kernel (with our plugin's options) spends on one run of
    the bench's print('hello'): 200 at once need this x 200 of the host's cores, before any
    server work."""
    from jupyter_client.manager import start_new_kernel
    from kernels.plugins import discover
    python = next(p for p in discover() if p.name == "python")
    manager, client = start_new_kernel(
        kernel_name="python3", extra_arguments=[a for a in python.local_argv if a.startswith("--")])
    try:
        pid = manager.provisioner.process.pid
        for _ in range(10):
            client.execute_interactive("print('hello')", output_hook=lambda msg: None)
        before = cpu_seconds(pid)
        for _ in range(runs):
            client.execute_interactive("print('hello')", output_hook=lambda msg: None)
        return (cpu_seconds(pid) - before) / runs
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


AUTOGROUPS = ("; the scheduler's autogroups are on, so each local kernel's session (bwrap's"
              " --new-session) weighs on a core as much as the server's")


def autogroups() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def loop_waited(pid: int) -> float:
    """Seconds the process's main thread (the event loop) has spent runnable on a run queue,
    not running: what the other processes on the cores cost it."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9


def main() -> None:
    per_run = kernel_cpu_per_run()
    print(f"  the floor: a warm kernel spends {per_run * 1000:.1f} ms of CPU on the run, so "
          f"{LEARNERS} at once need {per_run * LEARNERS:.2f} s of CPU, "
          f"{per_run * LEARNERS / os.cpu_count():.2f} s on all {os.cpu_count()} cores, "
          f"before any server work", flush=True)
    redis_server = services.RedisServer()
    redis_server.start()
    try:
        with services.throwaway_postgres() as pg_url, \
                tempfile.TemporaryDirectory(prefix="ls-bench-live-") as tmp:
            root = Path(tmp)
            (root / "lessons" / "live").mkdir(parents=True)
            (root / "lessons" / "live" / COURSE).write_text("title: Live\n")
            (root / "lessons" / "live" / "practice.md").write_text(LESSON)
            for capacity in HOSTS:
                print(f"  a host for {capacity} kernels:", flush=True)
                env = {"LS_DATABASE_URL": pg_url, "LS_REDIS_URL": redis_server.url,
                       "LS_LESSONS_DIR": str(root / "lessons"), "LS_DATA_DIR": str(root / "data"),
                       "LS_INSTANCE": f"bench-{uuid.uuid4().hex[:6]}", "LS_SANDBOX": SANDBOX,
                       "LS_POOL_SIZE": "0", "LS_MAX_KERNELS": str(capacity),
                       "LS_LIVE_LEAD": "3600", "LS_LIVE_EVERY": "1", "LS_API_TOKEN": TOKEN,
                       "LS_COOKIE_SECRET": "c" * 40,
                       "LS_RECONNECT_GRACE": "0" if capacity < LEARNERS else "300",
                       "LS_START_QUEUE": str(LEARNERS * 2), "LS_WS_PER_IP": str(LEARNERS * 2),
                       "LS_NEW_LEARNERS_PER_IP": f"{LEARNERS * 4}/60", "LS_LOG_LEVEL": os.environ.get("LS_BENCH_LOG", "WARNING")}
                db.upgrade(config.load(env))
                log = Path(tempfile.gettempdir()) / f"ls-bench-live-event-{capacity}-serve.log"
                with served(env, log) as server:
                    asyncio.run(event(server.url, capacity, server.pid))
                print(f"  the server's log: {log}", flush=True)
    finally:
        redis_server.close()
