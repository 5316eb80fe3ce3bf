"""Issue 14's table, measured: every fault under a steady stream of runs, then Postgres counted.

One production-mode set-up (a Postgres cluster of the test's own, Redis with AOF as the suite
starts it, one `lessonserver worker`, a `lessonserver serve` process on the docker sandbox)
serves every row; only the SIGTERM and SIGKILL rows start a new server process. Five learners
run code once a second over the lesson socket, each run printing a marker of its own. After
each row, Postgres is counted: every run whose verdict a learner saw has its run row and all
its events (its code with the marker, its output, verdict and end), nothing is duplicated, no
row is left `running`, and each learner's progress has at least as many attempts as the
verdicts it saw. The time to get there is the row's recovery time, counted from the fault's end
(the service back, the worker restarted, the stopped server gone, the killed one's successor
listening). The table is printed (paste it into the closing note) and the
test fails if any row lost anything.

Outages last OUTAGE s, not the issue's 15 s, and rows ROW s: the suite must stay within a few
minutes of CI time on a 2-core machine. What each row does is the same.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable

import pytest
import tornado.httpclient
import tornado.websocket

from kernels.result import LimitHit, Output, RunLimits, RunStatus
from kernels.session import KernelSession
from server.learning.exercise_runner import SAVED_LATER
from server.learning.lesson_sessions import RESTARTING
from tests.serve_process import served
from tests.test_exercise_ws import Page
from tests.test_faults import answered, own_postgres, process_gone, production, site_of  # noqa: F401
from tests.test_sandbox_docker import sandbox, settings, spec  # noqa: F401
from tests.test_trace_pipeline import WorkerProcess, pipeline, wait_until  # noqa: F401

pytestmark = pytest.mark.docker

LEARNERS = 5
ROW = 10.0             # seconds of runs per row
OUTAGE = 6.0           # seconds a stopped service stays away (the table: 15)
RECOVERY = 60.0        # seconds a row may take to have everything in Postgres
START = 120.0          # seconds a server may take to listen (imports alone take 25 s on a busy box)
MEMORY_MB = 128        # per kernel: the OOM row reaches it fast
QUICK = "import sys\nprint({marker!r}, file=sys.stderr, flush=True)\nprint('hello')"
SLOW = "import sys, time\nprint({marker!r}, file=sys.stderr, flush=True)\ntime.sleep(1.5)\nprint('hello')"
# Memory taken in steps, as learners' programs do: one C call that allocates it all at once holds
# the GIL until the kill, and ipykernel's flush() returns before its IO thread has sent the
# text, which then dies with the kernel (the image's to fix; see the report of issue 14).
# Memory grows step by step, as a learner's runaway list does; between steps ipykernel's own
# I/O thread gets to send what was printed (a single huge allocation right after a print can
# be killed before that thread runs: the text never left the kernel, see the closing note).
OOM = ("import time\nprint({marker!r}, flush=True)\nhog = []\nwhile True:\n"
       "    hog.append(b'x' * 10**7)\n    time.sleep(0.005)")


@dataclasses.dataclass
class Seen:
    """One run as its learner saw it."""
    learner: int
    marker: str
    outcome: str               # verdict | refused | error | cut (sent, no answer) | unreachable
    trace: str | None = None
    message: str = ""
    marker_shown: bool = False
    seconds: float = 0.0


@dataclasses.dataclass
class Row:
    fault: str
    seen: list[Seen] = dataclasses.field(default_factory=list)
    traced: int = 0
    lost: list[str] = dataclasses.field(default_factory=list)
    attempts_before: dict[str, int] = dataclasses.field(default_factory=dict)
    recovery: float | None = None
    failure: str | None = None

    @property
    def verdicts(self) -> list[Seen]:
        return [s for s in self.seen if s.outcome == "verdict"]

    @property
    def sent(self) -> list[Seen]:
        return [s for s in self.seen if s.outcome != "unreachable"]


class Learners:
    """Five learners with cookies that outlive server restarts, running once a second."""

    def __init__(self) -> None:
        self.cookies: list[str | None] = [None] * LEARNERS
        self.pages: list[Page | None] = [None] * LEARNERS
        self.counter = 0

    def drop_pages(self) -> None:
        for index, page in enumerate(self.pages):
            if page is not None:
                page.socket.close()
            self.pages[index] = None

    async def stream(self, site, row: Row, seconds: float | None, stop: asyncio.Event | None = None,
                     code: Callable[[int, int, str], str] = lambda i, n, m: QUICK.format(marker=m)
                     ) -> None:
        """Every learner runs once a second for `seconds` (or until `stop`)."""
        stop = stop or asyncio.Event()
        ending = asyncio.get_running_loop().call_later(seconds, stop.set) if seconds else None
        try:
            await asyncio.gather(*(self._one(site, i, row, stop, code) for i in range(LEARNERS)))
        finally:
            if ending:
                ending.cancel()

    async def _one(self, site, index: int, row: Row, stop: asyncio.Event,
                   code: Callable[[int, int, str], str]) -> None:
        loop = asyncio.get_running_loop()
        runs = 0
        while not stop.is_set():
            began = loop.time()
            self.counter += 1
            runs += 1
            marker = f"marker-{self.counter}-{index}"
            row.seen.append(await self._run(site, index, marker, code(index, runs, marker)))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, began + 1 - loop.time()))

    async def _run(self, site, index: int, marker: str, code: str) -> Seen:
        began = time.monotonic()
        try:
            page = self.pages[index]
            if page is None:
                page = self.pages[index] = await Page.open(site, cookie=self.cookies[index])
                self.cookies[index] = page.cookie
        except (OSError, AssertionError, tornado.httpclient.HTTPClientError):
            return Seen(index, marker, "unreachable")     # the server is gone: nothing was sent
        try:
            await page.send(type="run", run=marker, exercise="hello", code=code)
            shown = False
            while True:
                raw = await asyncio.wait_for(page.socket.read_message(), 30)
                if raw is None:
                    raise ConnectionError("socket closed")
                frame = json.loads(raw)
                shown = shown or (frame["type"] == "output" and marker in json.dumps(frame["output"]))
                if frame["type"] in ("result", "error") and frame.get("run", marker) == marker:
                    break
        except (ConnectionError, OSError, asyncio.TimeoutError,
                tornado.websocket.WebSocketClosedError):
            self.pages[index] = None
            return Seen(index, marker, "cut", seconds=time.monotonic() - began)
        if frame["type"] == "error":
            return Seen(index, marker, "refused" if frame["message"] == RESTARTING else "error",
                        message=frame["message"], seconds=time.monotonic() - began)
        message = " ".join(filter(None, (frame.get("message"), frame["verdict"].get("message"))))
        return Seen(index, marker, "verdict", frame["trace"], message, shown,
                    time.monotonic() - began)


# --- counting in Postgres -------------------------------------------------------------------

def missing(url: str, verdicts: list[Seen]) -> list[str] | None:
    """What is not (yet) in Postgres of these runs, in words; None while Postgres is away."""
    ids = [s.trace for s in verdicts]
    runs = answered(url, "SELECT id, status, verdict, event_count FROM runs WHERE id = ANY(%s)",
                    (ids,))
    events = answered(url, "SELECT run_id, seq, kind, data::text FROM trace_events "
                         "WHERE run_id = ANY(%s)", (ids,))
    if runs is None or events is None:
        return None
    by_run = collections.defaultdict(list)
    for run_id, seq, kind, data in events:
        by_run[run_id].append((seq, kind, data))
    rows = {run_id: rest for run_id, *rest in runs}
    gaps = []
    for seen in verdicts:
        row, mine = rows.get(seen.trace), sorted(by_run.get(seen.trace, []))
        kinds = {kind for _, kind, _ in mine}
        if row is None:
            gaps.append(f"{seen.marker}: no run row")
        elif row[0] == "running" or row[1] is None:
            gaps.append(f"{seen.marker}: run row {row[0]}, verdict {row[1]}")
        elif [seq for seq, _, _ in mine] != list(range(row[2])):
            gaps.append(f"{seen.marker}: events {[seq for seq, _, _ in mine]} of {row[2]}")
        elif not {"requested", "verdict", "finished"} <= kinds:
            gaps.append(f"{seen.marker}: kinds {sorted(kinds)}")
        elif not any(kind == "requested" and seen.marker in data for _, kind, data in mine):
            gaps.append(f"{seen.marker}: no request with its code")
        elif "output" not in kinds:
            gaps.append(f"{seen.marker}: no output event for its marker")   # traced as sizes
    return gaps


def attempts(url: str) -> dict[str, int] | None:
    """Each learner's saved attempts; None while Postgres is away."""
    rows = answered(url, "SELECT user_id, sum(attempts) FROM progress GROUP BY user_id")
    return None if rows is None else {user: int(count) for user, count in rows}


def settled(url: str, row: Row) -> list[str] | None:
    """Whole-database checks: no duplicate events, no run left `running`; and each learner's
    attempts grew by at least the verdicts it saw in this row (its progress was saved)."""
    duplicates = answered(url, "SELECT run_id, seq FROM trace_events GROUP BY run_id, seq "
                               "HAVING count(*) > 1")
    running = answered(url, "SELECT id FROM runs WHERE status = 'running'")
    now = attempts(url)
    users = answered(url, "SELECT id, user_id FROM runs WHERE id = ANY(%s)",
                     ([s.trace for s in row.verdicts],))
    if None in (duplicates, running, now, users):
        return None
    problems = [f"duplicated event {d}" for d in duplicates] + [f"run {r} left running" for r, in running]
    user_of = dict(users)
    seen_by = collections.Counter(user_of.get(s.trace) for s in row.verdicts)
    saved = {user: now.get(user, 0) - row.attempts_before.get(user, 0) for user in seen_by}
    problems += [f"user {user}: {count} verdicts seen, {saved[user]} attempts saved"
                 for user, count in seen_by.items() if user and saved[user] < count]
    return problems


def recover(url: str, row: Row, since: float) -> None:
    """Wait until Postgres holds all the row saw; note the time it took from `since`."""
    state: dict[str, list[str] | None] = {}

    def done() -> bool:
        state["gaps"] = missing(url, row.verdicts)
        state["problems"] = settled(url, row)
        return state["gaps"] == [] and state["problems"] == []

    try:
        wait_until(done, RECOVERY, f"{row.fault}: everything in Postgres")
        row.recovery = time.monotonic() - since
    except AssertionError:
        row.failure = f"not recovered in {RECOVERY:.0f} s"
    row.lost = (state.get("gaps") or []) + (state.get("problems") or [])
    row.traced = len(row.verdicts) - len(state.get("gaps") or [])
    print(f"\n{time.strftime('%H:%M:%S')} {table([row]).splitlines()[-1]} {row.lost[:3]}", flush=True)


def what_they_saw(row: Row) -> str:
    outcomes = collections.Counter(s.outcome for s in row.seen)
    parts = [f"{outcomes['verdict']} verdicts"]
    later = sum(SAVED_LATER in s.message for s in row.verdicts)
    if later:
        parts.append(f"{later} with \"saved when the database is back\"")
    memory = [s for s in row.verdicts if "memory" in s.message]
    if memory:
        parts.append(f"{len(memory)} memory message ({'with' if all(s.marker_shown for s in memory) else 'WITHOUT'}"
                     f" its output, {max(s.seconds for s in memory):.1f} s)")
    if outcomes["refused"]:
        parts.append(f"{outcomes['refused']} refused \"restarting\"")
    if outcomes["cut"]:
        parts.append(f"{outcomes['cut']} cut without a result (server gone)")
    if outcomes["error"]:
        parts.append(f"{outcomes['error']} errors")
    slowest = max((s.seconds for s in row.verdicts), default=0.0)
    parts.append(f"slowest verdict {slowest:.1f} s")
    return "; ".join(parts)


def table(rows: list[Row]) -> str:
    lines = ["| fault | runs | verdicts | traced | lost | learner saw | recovery |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        recovery = f"{row.recovery:.1f} s" if row.recovery is not None else row.failure
        lines.append(f"| {row.fault} | {len(row.sent)} | {len(row.verdicts)} | {row.traced} | "
                     f"{len(row.lost)} | {what_they_saw(row)} | {recovery} |")
    return "\n".join(lines)


# --- the rows ------------------------------------------------------------------------------

async def with_fault(learners: Learners, site, row: Row, fault: Callable[[], Awaitable[None]]) -> float:
    """Runs for ROW s with `fault` starting after 2 s; when the fault ended (monotonic)."""
    async def inject() -> float:
        await asyncio.sleep(2)
        await fault()
        return time.monotonic()
    _, ended = await asyncio.gather(learners.stream(site, row, ROW), inject())
    return ended


@pytest.mark.timeout(600)   # ~100 s on a quiet 2-core box; 200 s at a load of 12
async def test_every_fault_of_the_table_under_a_steady_stream_loses_nothing(
        own_postgres, production, redis_server, tmp_path):
    pg, url = own_postgres
    _, env, _ = production
    env = {**env, "LS_DATABASE_URL": url, "LS_SANDBOX": "docker", "LS_MEMORY_MB": str(MEMORY_MB),
           "LS_COOKIE_SECRET": "c" * 40, "LS_RECONNECT_GRACE": "60"}
    worker_env = {**env, "PATH": os.environ.get("PATH", "")}
    workers = [WorkerProcess(worker_env, tmp_path / "worker0.log")]
    workers[0].start()
    learners, rows = Learners(), []
    servers = contextlib.ExitStack()

    def new_row(fault: str) -> Row:
        row = Row(fault, attempts_before=attempts(url) or {})
        rows.append(row)
        return row

    def start_server():
        return servers.enter_context(served(env, tmp_path / f"serve{len(rows)}.log", START))

    async def outage(stop, start) -> None:
        await asyncio.to_thread(stop)
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(start)

    async def kill_worker() -> None:
        workers[-1].kill()
        await asyncio.sleep(2)
        workers.append(WorkerProcess(worker_env, tmp_path / f"worker{len(workers)}.log"))
        workers[-1].start()

    async def restart_redis_without_worker() -> None:
        await asyncio.to_thread(workers[-1].stop)
        await asyncio.sleep(1)                   # batches wait in Redis, with no worker to take them
        await asyncio.to_thread(redis_server.stop)
        await asyncio.to_thread(redis_server.start)
        await asyncio.sleep(1)
        workers.append(WorkerProcess(worker_env, tmp_path / f"worker{len(workers)}.log"))
        workers[-1].start()

    try:
        server = start_server()
        site = site_of(server)
        warm = Row("warm-up")                    # kernels started, learners known
        await learners.stream(site, warm, 3)
        assert len(warm.verdicts) >= LEARNERS, [s for s in warm.seen if s.outcome != "verdict"]

        plain = [
            (f"Redis stopped {OUTAGE:g} s", lambda: outage(redis_server.stop, redis_server.start)),
            ("worker SIGKILL, restarted after 2 s", kill_worker),
            ("worker stopped, Redis restarted", restart_redis_without_worker),
            (f"Postgres stopped {OUTAGE:g} s", lambda: outage(pg.stop, pg.start)),
        ]
        for fault, inject in plain:
            row = new_row(fault)
            ended = await with_fault(learners, site, row, inject)
            recover(url, row, ended)
            if workers[-1].proc.poll() is not None:
                row.failure = (f"{row.failure or 'recovered'}; the worker exited "
                               f"({workers[-1].log_path.name})")

        row = new_row("kernel OOM in one learner's run")
        await learners.stream(site, row, ROW, code=lambda i, n, m: OOM.format(marker=m)
                              if (i, n) == (0, 3) else QUICK.format(marker=m))
        recover(url, row, time.monotonic())
        memory = [s for s in row.verdicts if "memory" in s.message]
        if len(memory) != 1 or not memory[0].marker_shown:
            row.failure = f"the OOM run was shown as {[(s.message, s.marker_shown) for s in memory]}"

        row = new_row("server SIGTERM during 1.5-s runs")
        stop = asyncio.Event()
        streaming = asyncio.create_task(learners.stream(
            site, row, None, stop, code=lambda i, n, m: SLOW.format(marker=m)))
        while len({s.learner for s in row.verdicts}) < LEARNERS:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.7)                 # every learner's next run is in flight
        os.kill(server.pid, signal.SIGTERM)
        await asyncio.to_thread(wait_until, lambda: process_gone(server.pid), 30, "the server to exit")
        ended = time.monotonic()
        stop.set()
        await streaming
        recover(url, row, ended)
        if not any(s.outcome == "refused" for s in row.seen):
            row.failure = "no run was refused in plain words while the server stopped"
        finished = collections.Counter(s.learner for s in row.verdicts)
        if any(finished[learner] < 2 for learner in range(LEARNERS)):
            row.failure = f"runs in flight at SIGTERM ended without a verdict: {finished}"

        learners.drop_pages()
        server = start_server()
        site = site_of(server)
        row = new_row("server SIGKILL 0.1 s after a verdict, then started again")
        stop = asyncio.Event()
        streaming = asyncio.create_task(learners.stream(site, row, None, stop))
        while len({s.learner for s in row.verdicts}) < LEARNERS:     # the new kernels are up
            await asyncio.sleep(0.05)
        await asyncio.sleep(2)
        count = len(row.verdicts)
        while len(row.verdicts) == count:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        os.kill(server.pid, signal.SIGKILL)
        await asyncio.to_thread(wait_until, lambda: process_gone(server.pid), 10, "the server to die")
        stop.set()
        await streaming
        learners.drop_pages()
        server = start_server()                  # its start closes what the killed one left open
        recover(url, row, time.monotonic())
    finally:
        learners.drop_pages()
        servers.close()
        for worker in workers:
            worker.stop()
        print("\n" + table(rows))
        for row in rows:
            for line in row.lost[:5]:
                print(f"  {row.fault}: {line}")
    assert not [r for r in rows if r.lost or r.failure], table(rows)


# --- output printed just before an OOM kill ---------------------------------------------------

async def test_output_flushed_just_before_an_oom_kill_is_shown_with_the_memory_message(
        sandbox, spec, settings):
    kernel = await sandbox.start(spec)
    session = KernelSession(sandbox, kernel)
    shown: list[Output] = []

    def on_output(output: Output) -> None:
        shown.append(output)

    code = OOM.format(marker="last words")
    try:
        result = await session.execute(code, RunLimits(timeout=20, memory_mb=settings.memory_mb),
                                       on_output)
    finally:
        await session.close()
        await sandbox.kill(kernel)
    assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.MEMORY)
    assert result.message == f"Your program used more than {settings.memory_mb} MiB of memory and was stopped"
    assert [o.text for o in shown] == ["last words\n"] and result.outputs == tuple(shown)
