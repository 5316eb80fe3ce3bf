"""TraceBuffer on its own: batching by size and time, spooling while the sink fails, replay."""
from __future__ import annotations

import asyncio
import time

from kernels.result import Output, RunResult, RunStatus
from server.tracing.buffer import BatchRejected, TraceBuffer
from server.tracing.events import EventKind, TraceEvent
from server.tracing.spool import Spool
from server.tracing.tracer import RunTracer


class Sink:
    """Stands in for the queue: records batches, and fails while `up` is False."""

    def __init__(self) -> None:
        self.batches: list[list[dict]] = []
        self.up = True
        self.calls = 0

    async def __call__(self, batch: list[dict]) -> None:
        self.calls += 1
        if not self.up:
            raise ConnectionError("connection refused")
        self.batches.append(batch)

    @property
    def events(self) -> list[dict]:
        return [e for batch in self.batches for e in batch]


def make_buffer(tmp_path, sink, *, batch_size=10, flush_every=0.05, retry_every=0.05):
    return TraceBuffer(sink, Spool(tmp_path / "spool"), batch_size=batch_size,
                       flush_every=flush_every, retry_every=retry_every)


def run_events(tracer: RunTracer, outputs: int) -> None:
    tracer.requested(user_id="u", lesson_slug="l", exercise_id="e", kernel="python", code="x")
    for _ in range(outputs):
        tracer.output(Output("stream", name="stdout", text="x"))
    tracer.finished(RunResult(RunStatus.OK, bytes_out=outputs))


async def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_full_batches_go_out_at_once_and_the_rest_after_the_time_window(tmp_path):
    sink = Sink()
    buffer = make_buffer(tmp_path, sink, batch_size=10, flush_every=0.3)
    await buffer.start()
    tracer = RunTracer(buffer.emit)
    run_events(tracer, 23)                        # 25 events: two full batches and 5 left over
    await wait_for(lambda: len(sink.batches) == 2, timeout=0.2)
    assert [len(b) for b in sink.batches] == [10, 10]
    await wait_for(lambda: len(sink.batches) == 3, timeout=1.0)
    assert len(sink.batches[2]) == 5
    assert [e["seq"] for e in sink.events] == list(range(25))
    await buffer.close()


async def test_a_few_events_alone_go_out_when_their_window_ends_not_before(tmp_path):
    """No full batch and no commit: only the window's end sends them (the flusher sleeps
    until then)."""
    sink = Sink()
    buffer = make_buffer(tmp_path, sink, batch_size=10, flush_every=0.25)
    await buffer.start()
    began = time.monotonic()
    run_events(RunTracer(buffer.emit), 1)         # 3 events
    await asyncio.sleep(0.15)
    assert sink.batches == []
    await wait_for(lambda: sink.batches, timeout=1.0)
    assert time.monotonic() - began >= 0.24
    assert [len(b) for b in sink.batches] == [3]
    await buffer.close()


async def test_emit_never_waits_for_the_sink(tmp_path):
    release = asyncio.Event()

    async def slow_sink(batch):
        await release.wait()

    buffer = make_buffer(tmp_path, slow_sink, batch_size=5)
    await buffer.start()
    tracer = RunTracer(buffer.emit)
    started = time.perf_counter()
    run_events(tracer, 1000)                      # the sink is stuck the whole time
    assert time.perf_counter() - started < 0.5
    release.set()
    await buffer.close()


async def test_while_the_sink_is_down_batches_are_spooled_and_replayed_in_order(tmp_path):
    sink = Sink()
    buffer = make_buffer(tmp_path, sink, batch_size=4)
    await buffer.start()
    tracer = RunTracer(buffer.emit)
    run_events(tracer, 2)                         # 4 events: sent
    await wait_for(lambda: len(sink.events) == 4)
    sink.up = False
    run_events(tracer, 10)                        # 12 events: spooled
    await wait_for(lambda: buffer.stats["spooled"] == 12)
    assert len(Spool(tmp_path / "spool").pending()) == 3
    sink.up = True
    run_events(tracer, 2)                         # sent after the replay
    await wait_for(lambda: len(sink.events) == 20)
    assert [e["seq"] for e in sink.events] == list(range(20))
    # A replayed file goes once its batch was taken: just after the sink has the events.
    await wait_for(lambda: Spool(tmp_path / "spool").pending() == [])
    stats = buffer.stats            # the last 4 may have met the retry pause and been spooled too
    assert stats["spooled"] >= 12 and stats["replayed"] == stats["spooled"]
    assert stats["sent"] + stats["replayed"] == 20
    await buffer.close()


async def test_close_spools_what_it_cannot_send_and_the_next_process_replays_it(tmp_path):
    sink = Sink()
    sink.up = False
    buffer = make_buffer(tmp_path, sink, flush_every=60)
    await buffer.start()
    run_events(RunTracer(buffer.emit), 3)
    await buffer.close()
    assert sink.events == [] and len(Spool(tmp_path / "spool").pending()) == 1

    sink.up = True
    again = make_buffer(tmp_path, sink, flush_every=60)
    await again.start()
    await wait_for(lambda: len(sink.events) == 5)
    await wait_for(lambda: Spool(tmp_path / "spool").pending() == [])
    await again.close()


async def test_a_failing_sink_is_not_hammered_while_down(tmp_path):
    sink = Sink()
    sink.up = False
    buffer = make_buffer(tmp_path, sink, batch_size=1, retry_every=10)
    await buffer.start()
    for _ in range(20):
        run_events(RunTracer(buffer.emit), 0)
        await asyncio.sleep(0.005)
    await wait_for(lambda: buffer.stats["spooled"] == 40)
    assert sink.calls == 1                        # one try, then straight to the spool
    await buffer.close()


async def test_a_batch_the_sink_refuses_is_set_aside_and_the_rest_flows_on(tmp_path):
    class Refusing(Sink):
        async def __call__(self, batch):
            if any(e["data"].get("text") == "poison" for e in batch):
                raise BatchRejected("bad event")
            await super().__call__(batch)

    sink = Refusing()
    buffer = make_buffer(tmp_path, sink, batch_size=100)
    await buffer.start()
    buffer.emit(TraceEvent("a" * 32, "r", 0, 0.0, EventKind.KERNEL_EVENT, {"text": "poison"}))
    await buffer.flush()
    run_events(RunTracer(buffer.emit), 1)
    await buffer.flush()
    assert len(sink.events) == 3 and buffer.stats["rejected"] == 1
    spool = Spool(tmp_path / "spool")
    assert spool.pending() == [] and len(list(spool.directory.glob("*.bad"))) == 1
    await buffer.close()


def test_spool_sets_aside_a_file_it_cannot_read(tmp_path):
    spool = Spool(tmp_path)
    good = spool.append([{"id": "a"}])
    bad = tmp_path / "00000000000000000001-deadbeef.json"
    bad.write_text("{not json")
    assert spool.pending() == [bad, good]
    assert spool.load(bad) is None and spool.load(good) == [{"id": "a"}]
    assert spool.pending() == [good] and bad.with_suffix(".bad").exists()
    assert spool.load(tmp_path / "gone.json") is None

