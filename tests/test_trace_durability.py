"""The buffer's durability rules with a plain in-memory sink: commit, interrupted ends, the journal."""
from __future__ import annotations

from kernels.result import RunResult, RunStatus
from server.cli import shown
from server.tracing.buffer import INTERRUPTED, INTERRUPTED_SEQ, TraceBuffer, interrupted_event
from server.tracing.events import summarize
from server.tracing.spool import Spool
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


async def test_commit_sends_everything_emitted_before_the_verdict(tmp_path):
    sink = Sink()
    buffer = buffer_on(sink, tmp_path)
    await buffer.start()
    tracer = start_run(buffer)
    tracer.verdict(True)
    tracer.finished(RunResult(RunStatus.OK))
    assert sink.events() == []
    await buffer.commit()
    assert [e["kind"] for e in sink.events()] == ["requested", "verdict", "finished"]
    assert list((tmp_path / "spool" / "open").iterdir()) == []   # started and ended together
    await buffer.close()


async def test_commit_with_the_sink_away_lands_in_the_spool(tmp_path):
    sink = Sink()
    sink.away = True
    buffer = buffer_on(sink, tmp_path)
    await buffer.start()
    start_run(buffer).finished(RunResult(RunStatus.OK))
    await buffer.commit()
    assert sink.events() == [] and len(Spool(tmp_path / "spool").pending()) == 1
    assert buffer.spooling
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


async def test_a_killed_process_s_open_runs_are_ended_by_the_next_start(tmp_path):
    sink = Sink()
    first = buffer_on(sink, tmp_path)
    await first.start()
    run = start_run(first)
    await first.commit()                 # its start is in the sink; the process dies here
    assert [p.name for p in (tmp_path / "spool" / "open").iterdir()] == [run.run_id]
    second = buffer_on(sink, tmp_path)
    await second.start()
    await second.commit()
    end = sink.events()[-1]
    assert (end["run_id"], end["seq"], end["data"]["status"]) == (run.run_id, INTERRUPTED_SEQ,
                                                                 INTERRUPTED)
    assert list((tmp_path / "spool" / "open").iterdir()) == []
    from server.tracing.events import TraceEvent
    summary = summarize(run.run_id, [TraceEvent.from_json(e) for e in sink.events()])
    assert summary.status == INTERRUPTED
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
