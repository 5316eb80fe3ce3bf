"""Trace pipeline throughput and the cost of tracing on a run's path, as ratios.

1. Events per second into Postgres: TraceBuffer -> RQ (a real Redis) -> one
   `lessonserver worker` process -> Postgres, against the baseline of one
   INSERT (one transaction) per event from this process, in the same run.
2. The cost of tracing a run (the events a typical run emits, built and
   handed to the buffer) against the latency of a trivial run on a bare local
   ipykernel (jupyter_client round-trip), also measured here.

3. The verdict-latency cost of durability: the runner awaits `TraceBuffer.commit`
   before the learner sees a verdict, which appends the run's events to the
   write-ahead log on local disk (one write, no fsync on the run's path).
   Without it the cost is nil (events wait for the flush window). Measured per
   run, one learner at a time and five at once; for comparison, what sending
   the run's batch to Redis before the verdict would cost, and the fdatasync
   that the log gets once a second off the run's path.

Starts a throwaway Postgres cluster and redis-server (as the tests do).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
from psycopg2.extras import Json

from kernels.result import Output, RunResult, RunStatus
from server import config
from server.tracing.buffer import TraceBuffer
from server.tracing.tracer import RunTracer
from tests import services
from tests.test_trace_support import migrate
from workers.queue import open_jobs

RUNS = 2000                  # runs traced through the pipeline
OUTPUTS_PER_RUN = 8          # stream outputs per run: 12 events per run in all
BASELINE_EVENTS = 3000       # single-row INSERTs for the baseline
EMIT_RUNS = 5000             # runs traced into a buffer that sends nowhere, for the emit cost
KERNEL_ROUND_TRIPS = 30
COMMIT_RUNS = 400            # runs committed before their verdict, per configuration
CONCURRENT = 5               # learners whose verdicts are committed at once


def trace_run(tracer: RunTracer) -> None:
    tracer.requested(user_id="learner", lesson_slug="intro", exercise_id="loops", kernel="python",
                     code="for i in range(8): print(i)")
    tracer.kernel_assigned(pool_hit=True, container_id="c1")
    for i in range(OUTPUTS_PER_RUN):
        tracer.output(Output("stream", name="stdout", text=f"{i}\n"))
    tracer.verdict(True)
    tracer.finished(RunResult(RunStatus.OK, bytes_out=2 * OUTPUTS_PER_RUN))


def count_events(url: str) -> int:
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM trace_events")
        return cur.fetchone()[0]


def baseline_inserts(url: str) -> float:
    """Events per second with one INSERT and one commit per event."""
    events = []
    tracer = RunTracer(events.append)
    while len(events) < BASELINE_EVENTS:
        trace_run(tracer)
    conn = psycopg2.connect(url)
    began = time.perf_counter()
    with conn.cursor() as cur:
        for e in events[:BASELINE_EVENTS]:
            cur.execute("INSERT INTO trace_events (id, run_id, seq, ts, kind, data) "
                        "VALUES (%s, %s, %s, to_timestamp(%s), %s, %s) ON CONFLICT (id) DO NOTHING",
                        (e.id, e.run_id, e.seq, e.ts, e.kind.value, Json(dict(e.data))))
            conn.commit()
    elapsed = time.perf_counter() - began
    with conn.cursor() as cur:
        cur.execute("TRUNCATE trace_events, runs")
    conn.commit()
    conn.close()
    return BASELINE_EVENTS / elapsed


async def pipeline_rate(settings: config.Settings, url: str) -> tuple[float, int, float]:
    """Events per second from the first emit until every event is in Postgres."""
    jobs = open_jobs(settings)
    buffer = TraceBuffer.for_settings(settings, jobs.send_trace_batch)
    await buffer.start()
    emitted = 0

    def emit(event) -> None:
        nonlocal emitted
        emitted += 1
        buffer.emit(event)

    began = time.perf_counter()
    for i in range(RUNS):
        trace_run(RunTracer(emit))
        if i % 50 == 0:
            await asyncio.sleep(0)          # let the flusher run, as a busy server would
    await buffer.flush()
    while count_events(url) < emitted:
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - began
    await buffer.close()
    await jobs.close()
    batches = -(-emitted // settings.trace_batch)
    return emitted / elapsed, emitted, batches


async def emit_cost_us(tmp: Path) -> float:
    """Microseconds on the run's path to trace one whole run (build + emit every event)."""
    async def nowhere(batch) -> None:
        pass

    settings = config.load({"LS_DATA_DIR": str(tmp / "emit")})
    buffer = TraceBuffer.for_settings(settings, nowhere)
    await buffer.start()
    began = time.perf_counter()
    for _ in range(EMIT_RUNS):
        trace_run(RunTracer(buffer.emit))
    elapsed = time.perf_counter() - began
    await buffer.close()
    return elapsed / EMIT_RUNS * 1e6


def percentiles(timings: list[float]) -> tuple[float, float]:
    timings = sorted(timings)
    return statistics.median(timings), timings[int(len(timings) * 0.99)]


async def verdict_cost_ms(settings: config.Settings, concurrent: int = 1) -> tuple[float, float]:
    """Median and 99th percentile of `commit()` after a traced run: what a verdict waits for."""
    async def nowhere(batch) -> None:
        pass

    buffer = TraceBuffer.for_settings(settings, nowhere)
    await buffer.start()
    timings: list[float] = []

    async def one_run() -> None:
        trace_run(RunTracer(buffer.emit))
        began = time.perf_counter()
        await buffer.commit()
        timings.append((time.perf_counter() - began) * 1000)

    for _ in range(COMMIT_RUNS // concurrent):
        await asyncio.gather(*(one_run() for _ in range(concurrent)))
        await buffer.flush()              # as the flusher would: the log is acknowledged and dropped
    await buffer.close()
    return percentiles(timings)


async def enqueue_cost_ms(settings: config.Settings) -> tuple[float, float]:
    """The alternative: one run's batch into Redis (an RQ enqueue) before each verdict."""
    jobs = open_jobs(settings)
    events: list = []
    trace_run(RunTracer(events.append))
    batch = [e.to_json() for e in events]
    timings = []
    for _ in range(COMMIT_RUNS):
        began = time.perf_counter()
        await jobs.send_trace_batch(batch)
        timings.append((time.perf_counter() - began) * 1000)
    await jobs.close()
    return percentiles(timings)


def fdatasync_ms(tmp: Path) -> tuple[float, float]:
    """One run's events appended and fdatasync'd: the log's once-a-second sync, off the run path."""
    events: list = []
    trace_run(RunTracer(events.append))
    line = b"".join(json.dumps(e.to_json()).encode() + b"\n" for e in events)
    timings = []
    with open(tmp / "sync-bench.wal", "ab") as out:
        for _ in range(100):
            out.write(line)
            out.flush()
            began = time.perf_counter()
            os.fdatasync(out.fileno())
            timings.append((time.perf_counter() - began) * 1000)
    return percentiles(timings)


async def verdict_costs(settings: config.Settings, tmp: Path) -> list[tuple[str, float, float]]:
    local = settings.replace(data_dir=tmp / "verdict-bench")
    return [("write-ahead log (the commit), 1 at once", *await verdict_cost_ms(local)),
            (f"write-ahead log (the commit), {CONCURRENT} at once",
             *await verdict_cost_ms(local, CONCURRENT)),
            ("instead: RQ enqueue to Redis (AOF everysec)", *await enqueue_cost_ms(settings)),
            ("off the path: fdatasync once a second", *fdatasync_ms(tmp))]


def kernel_run_ms() -> float:
    """Median latency of `print('hi')` on a bare local ipykernel: the cheapest real run."""
    from jupyter_client.manager import start_new_kernel
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        timings = []
        for _ in range(KERNEL_ROUND_TRIPS):
            began = time.perf_counter()
            client.execute_interactive("print('hi')", output_hook=lambda msg: None, timeout=30)
            timings.append((time.perf_counter() - began) * 1000)
        return statistics.median(timings)
    finally:
        client.stop_channels()
        client.context.destroy(linger=0)  # not left to GC: its term() can hang a thread
        manager.shutdown_kernel(now=True)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ls-bench-traces-") as tmp_name, \
            services.throwaway_postgres() as pg_url:
        tmp = Path(tmp_name)
        redis_server = services.RedisServer()
        redis_server.start()
        worker = None
        try:
            env = {"LS_DATA_DIR": str(tmp / "data"), "LS_DATABASE_URL": pg_url,
                   "LS_REDIS_URL": redis_server.url, "LS_TRACE_BATCH": "200",
                   "LS_TRACE_FLUSH": "0.05", "LS_LOG_LEVEL": "WARNING"}
            settings = config.load(env)
            migrate(pg_url, lambda **over: config.load({**env, **over}))
            baseline = baseline_inserts(pg_url)
            worker = subprocess.Popen(
                [str(Path(sys.executable).with_name("lessonserver")), "worker"],
                env={"PATH": os.environ.get("PATH", ""), **env}, stdin=subprocess.DEVNULL)
            rate, events, batches = await pipeline_rate(settings, pg_url)
            verdicts = await verdict_costs(settings, tmp)
            cost_us = await emit_cost_us(tmp)
            run_ms = kernel_run_ms()
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=30)
            redis_server.close()
    per_run_ms = cost_us / 1000
    print(f"one INSERT per event (baseline)   {baseline:10.0f} events/s")
    print(f"buffer -> RQ -> worker -> Postgres {rate:10.0f} events/s  "
          f"({events} events in ~{batches} jobs)  x{rate / baseline:.1f} the baseline")
    print(f"tracing one run ({4 + OUTPUTS_PER_RUN} events) on the run's path  {cost_us:8.1f} us")
    print(f"bare ipykernel run of print('hi')  {run_ms:8.2f} ms  "
          f"-> tracing adds {per_run_ms / run_ms * 100:.2f}% to the cheapest run")
    print("verdict latency added by making the trace durable first (without: 0, budget 2 ms):")
    for name, median, p99 in verdicts:
        print(f"  {name:40} median {median:6.3f} ms  p99 {p99:6.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
