"""The buffer's durability rules with a plain in-memory sink: commit, interrupted ends, the journal."""
from __future__ import annotations

from kernels.result import RunResult, RunStatus
from server.cli import shown
from server.tracing.buffer import INTERRUPTED, INTERRUPTED_SEQ, TraceBuffer, interrupted_event
from server.tracing.events import summarize
from server.tracing.spool import Spool, WriteAheadLog
from server.tracing.tracer import RunTracer
from workers.recovery import Holder, is_dead


class Sink:
    def __init__(self) -> None:
        self.batches: list[list[dict]] = []
        self.away = False

    async def __call__(self, batch) -> None:
        if self.away:
            raise ConnectionError("away")
        self.batches.append(batch)

    def events(self) -> list[dict]:
        return [event for batch in self.batches for event in batch]


def buffer_on(sink: Sink, tmp_path) -> TraceBuffer:
    # A flush window far longer than any test: only commit() and close() send.
    return TraceBuffer(sink, Spool(tmp_path / "spool"), batch_size=50, flush_every=3600)


def start_run(buffer: TraceBuffer) -> RunTracer:
    tracer = RunTracer(buffer.emit)
    tracer.requested(user_id="u", lesson_slug="l", exercise_id="e", kernel="python", code="1")
    return tracer


def wal_events(tmp_path) -> list[dict]:
    return [e for path in WriteAheadLog(tmp_path / "spool" / "wal").leftovers()
            for e in WriteAheadLog.read(path)]


async def test_commit_logs_the_run_ahead_and_the_log_goes_once_the_queue_has_it(tmp_path):
    sink = Sink()
    buffer = buffer_on(sink, tmp_path)
    await buffer.start()
    tracer = start_run(buffer)
    tracer.verdict(True)
    tracer.finished(RunResult(RunStatus.OK))
    await buffer.commit()
    assert [e["kind"] for e in wal_events(tmp_path)] == ["requested", "verdict", "finished"]
    assert sink.events() == []
    await buffer.flush()
    assert [e["kind"] for e in sink.events()] == ["requested", "verdict", "finished"]
    assert wal_events(tmp_path) == []
    assert list((tmp_path / "spool" / "open").iterdir()) == []   # started and ended together
    await buffer.close()


async def test_with_the_queue_away_logged_events_move_to_the_spool(tmp_path):
    sink = Sink()
    sink.away = True
    buffer = buffer_on(sink, tmp_path)
    await buffer.start()
    start_run(buffer).finished(RunResult(RunStatus.OK))
    await buffer.commit()
    await buffer.flush()
    assert sink.events() == [] and len(Spool(tmp_path / "spool").pending()) == 1
    assert buffer.spooling and wal_events(tmp_path) == []
    await buffer.close()


async def test_close_ends_open_runs_as_interrupted_and_the_fold_says_so(tmp_path):
    sink = Sink()
    buffer = buffer_on(sink, tmp_path)
    await buffer.start()
    open_run, done = start_run(buffer), start_run(buffer)
    done.finished(RunResult(RunStatus.OK))
    await buffer.close()
    ends = [e for e in sink.events() if e["kind"] == "finished"]
    assert sorted((e["run_id"], e["data"]["status"]) for e in ends) == sorted(
        [(open_run.run_id, INTERRUPTED), (done.run_id, "ok")])
    assert interrupted_event(open_run.run_id, 0, "x").id == interrupted_event(open_run.run_id, 1, "y").id


async def test_the_next_start_replays_the_log_and_ends_only_runs_that_never_ended(tmp_path):
    sink = Sink()
    first = buffer_on(sink, tmp_path)
    await first.start()
    ended, cut = start_run(first), start_run(first)
    await first.flush()                  # both starts in the queue: both journaled
    assert sorted(p.name for p in (tmp_path / "spool" / "open").iterdir()) == sorted(
        [ended.run_id, cut.run_id])
    ended.verdict(True)
    ended.finished(RunResult(RunStatus.OK))
    await first.commit()                 # the verdict goes out; the process is killed here
    second = buffer_on(sink, tmp_path)
    await second.start()
    await second.flush()
    from server.tracing.events import TraceEvent
    events = [TraceEvent.from_json(e) for e in sink.events()]
    assert summarize(ended.run_id, [e for e in events if e.run_id == ended.run_id]).status == "ok"
    cut_events = [e for e in events if e.run_id == cut.run_id]
    assert summarize(cut.run_id, cut_events).status == INTERRUPTED
    assert cut_events[-1].seq == INTERRUPTED_SEQ
    assert list((tmp_path / "spool" / "open").iterdir()) == [] and wal_events(tmp_path) == []
    await second.close()


def test_dead_workers_are_told_by_their_record_and_pid():
    alive = {10}.__contains__
    assert is_dead(Holder("w", None, None), here="h", pid_alive=alive, me="me")
    assert is_dead(Holder("w", "h", 11), here="h", pid_alive=alive, me="me")
    assert not is_dead(Holder("w", "h", 10), here="h", pid_alive=alive, me="me")
    assert not is_dead(Holder("w", "other", 11), here="h", pid_alive=alive, me="me")
    assert not is_dead(Holder("me", None, None), here="h", pid_alive=alive, me="me")


def test_settings_print_current_values_and_never_secrets():
    assert shown("database_url", "postgresql://u:pw@db/x") == "postgresql://u:***@db/x"
    assert shown("api_token", "t" * 40) == "(set)"
    assert shown("redis_url", None) == "(unset)"
    assert shown("port", 9000) == "9000" and shown("secure_cookies", True) == "1"
