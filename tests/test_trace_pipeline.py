"""End to end: TraceBuffer -> real Redis -> a real `lessonserver worker` process -> real Postgres."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from kernels.result import LimitHit, Output, RunResult, RunStatus
from server.tracing.buffer import TraceBuffer
from server.tracing.events import TraceEvent, summarize
from server.tracing.spool import Spool
from server.tracing.tracer import RunTracer
from tests.test_trace_support import fetch_all, fresh_postgres, migrate
from workers.queue import open_jobs

LESSONSERVER = Path(sys.executable).with_name("lessonserver")


class WorkerProcess:
    """`lessonserver worker` in its own process group, so a test can SIGKILL all of it."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env, self.log_path = env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(LESSONSERVER), "worker"], env=self.env, stdout=log,
                                     stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError):   # the scheduler child, if it outlived it
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture
def pipeline(request, tmp_path, pg_url, redis_server, make_settings):
    """Settings for production mode on a fresh database and an empty Redis, plus a worker."""
    if redis_server.proc is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    with fresh_postgres(pg_url) as db_url:
        migrate(db_url, make_settings)
        settings = make_settings(LS_REDIS_URL=redis_server.url, LS_DATABASE_URL=db_url,
                                 LS_TRACE_BATCH="50", LS_TRACE_FLUSH="0.05")
        env = {"PATH": os.environ.get("PATH", ""), "LS_REDIS_URL": redis_server.url,
               "LS_DATABASE_URL": db_url, "LS_DATA_DIR": str(tmp_path / "worker"),
               "LS_LOG_LEVEL": "INFO"}
        workers: list[WorkerProcess] = []

        def new_worker() -> WorkerProcess:
            worker = WorkerProcess(env, tmp_path / f"worker{len(workers)}.log")
            workers.append(worker)
            worker.start()
            return worker

        try:
            yield settings, new_worker
        finally:
            for worker in workers:
                worker.stop()
            if redis_server.proc is None:           # a test stopped it: leave it running for others
                redis_server.start()


async def open_buffer(settings) -> tuple[TraceBuffer, object]:
    jobs = open_jobs(settings)
    buffer = TraceBuffer.for_settings(settings, jobs.send_trace_batch)
    buffer.retry_every = 0.2
    await buffer.start()
    return buffer, jobs


def recorder(buffer: TraceBuffer) -> tuple[list[TraceEvent], Callable[[TraceEvent], None]]:
    """An emit that also keeps what it sent, for the test to compare with Postgres."""
    emitted: list[TraceEvent] = []

    def emit(event: TraceEvent) -> None:
        emitted.append(event)
        buffer.emit(event)
    return emitted, emit


async def traced_run(tracer: RunTracer, outputs: int, result: RunResult | None = None) -> None:
    """A run as the handler traces it, with the event loop free between outputs."""
    tracer.requested(user_id="learner", lesson_slug="intro", exercise_id="loops", kernel="python",
                     code="for i in range(3): print(i)")
    tracer.kernel_assigned(pool_hit=True, container_id="c1")
    for i in range(outputs):
        tracer.output(Output("stream", name="stdout", text=f"{i}\n"))
        await asyncio.sleep(0)
    tracer.verdict(True)
    tracer.finished(result or RunResult(RunStatus.OK, bytes_out=2 * outputs))


def stored(url: str) -> list[tuple]:
    return fetch_all(url, "SELECT id, run_id, seq FROM trace_events ORDER BY run_id, seq")


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def expected_rows(emitted: list[TraceEvent]) -> list[tuple]:
    return sorted((e.id, e.run_id, e.seq) for e in emitted)


async def test_events_of_concurrent_runs_arrive_in_order_with_their_summaries(pipeline):
    settings, new_worker = pipeline
    new_worker()
    buffer, jobs = await open_buffer(settings)
    emitted, emit = recorder(buffer)

    tracers = [RunTracer(emit) for _ in range(12)]
    timeout = RunResult(RunStatus.LIMIT, limit=LimitHit.TIMEOUT, message="10 s", bytes_out=5)
    await asyncio.gather(*(traced_run(t, 5 + i, timeout if i == 3 else None)
                           for i, t in enumerate(tracers)))
    await buffer.close()
    url = settings.database_url
    wait_until(lambda: len(stored(url)) == len(emitted), 30, "every event in Postgres")
    assert sorted(stored(url)) == expected_rows(emitted)
    for tracer in tracers:
        seqs = fetch_all(url, "SELECT seq, kind FROM trace_events WHERE run_id = %s ORDER BY seq",
                         (tracer.run_id,))
        mine = [e for e in emitted if e.run_id == tracer.run_id]
        assert seqs == [(e.seq, e.kind.value) for e in mine]
        want = summarize(tracer.run_id, mine)
        row = fetch_all(url, "SELECT status, limit_hit, verdict, bytes_out, event_count, total_ms "
                             "FROM runs WHERE id = %s", (tracer.run_id,))
        assert row == [(want.status, want.limit_hit, want.verdict, want.bytes_out,
                        want.event_count, pytest.approx(want.total_ms))]
    # Batched: far fewer jobs than events went through RQ.
    assert buffer.stats["sent"] == len(emitted) and len(emitted) > 150
    await jobs.close()


async def test_redis_stopped_and_restarted_during_runs_loses_nothing(pipeline, redis_server):
    settings, new_worker = pipeline
    url = settings.database_url
    new_worker()
    buffer, jobs = await open_buffer(settings)
    emitted, emit = recorder(buffer)

    spanning = RunTracer(emit)                       # a run that straddles the outage
    spanning.requested(user_id="learner", lesson_slug="intro", exercise_id="loops",
                       kernel="python", code="print(1)")
    spanning.kernel_assigned(pool_hit=False, container_id="c2", start_ms=300)
    await traced_run(RunTracer(emit), 10)
    await buffer.flush()
    wait_until(lambda: len(stored(url)) == len(emitted), 30, "events before the outage")

    redis_server.stop()
    spanning.output(Output("stream", name="stdout", text="1\n"))
    await asyncio.gather(*(traced_run(RunTracer(emit), 8) for _ in range(5)))
    spanning.finished(RunResult(RunStatus.OK, bytes_out=2))
    await buffer.flush()
    spool = Spool(settings.data_dir / "trace-spool")
    assert spool.pending() and buffer.stats["spooled"] > 0
    during = len(stored(url))

    redis_server.start()
    deadline = time.monotonic() + 30
    while len(stored(url)) < len(emitted) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)                     # the buffer's task replays on its own
    assert sorted(stored(url)) == expected_rows(emitted)
    assert during < len(emitted) and spool.pending() == []
    row = fetch_all(url, "SELECT status, pool_hit, start_ms, event_count FROM runs WHERE id = %s",
                    (spanning.run_id,))
    assert row == [("ok", False, 300.0, 4)]
    await buffer.close()
    await jobs.close()


async def test_a_batch_that_cannot_be_written_lands_in_the_failed_registry_with_its_reason(pipeline):
    settings, new_worker = pipeline
    new_worker()
    jobs = open_jobs(settings)
    poison = [{"id": "b" * 32, "run_id": "r", "seq": 0, "ts": 0.0, "kind": "no-such-kind", "data": {}}]
    await jobs.send_trace_batch(poison)
    deadline = time.monotonic() + 30
    while not (failed := await jobs.failed_trace_batches()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert len(failed) == 1 and failed[0].events == 1
    assert "no-such-kind" in failed[0].reason and "BadBatch" in failed[0].reason
    await jobs.close()
