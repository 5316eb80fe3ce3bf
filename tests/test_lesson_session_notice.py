"""A run's "started" frame goes to the page only when the run lasts (LessonSession.announce)."""
import asyncio

from server.learning.lesson_sessions import LessonSession

STARTED = {"type": "started", "run": "r1", "exercise": "hello", "session": "tag"}
OUTPUT = {"type": "output", "run": "r1", "output": {"output_type": "stream", "name": "stdout",
                                                    "text": "hi\n"}}


def session_with_page() -> tuple[LessonSession, list[dict]]:
    got: list[dict] = []
    session = LessonSession("u1", "intro")
    session.sink = got.append
    return session, got


async def test_a_run_that_lasts_is_said_to_have_started():
    session, got = session_with_page()
    session.announce(STARTED, 0.05)
    await asyncio.sleep(0.01)
    assert got == []
    await asyncio.sleep(0.1)
    session.send(OUTPUT)
    assert got == [STARTED, OUTPUT]


async def test_a_fast_runs_first_frame_is_its_start_and_no_started_follows():
    session, got = session_with_page()
    session.announce(STARTED, 0.05)
    session.send({"type": "kernel", "state": "busy", "message": None})   # not the run's own
    session.send({**OUTPUT, "run": "r0"})                              # another run's
    session.send(OUTPUT)
    await asyncio.sleep(0.1)
    assert [f["type"] for f in got] == ["kernel", "output", "output"]


async def test_a_run_that_ends_silently_before_the_notice_gets_none():
    session, got = session_with_page()
    session.announce(STARTED, 0.05)
    session.settle("r1")
    await asyncio.sleep(0.1)
    assert got == []


async def test_a_page_away_gets_the_notice_with_the_frames_it_missed():
    session, got = session_with_page()
    session.sink = None
    session.announce(STARTED, 0.01)
    await asyncio.sleep(0.05)
    assert list(session.missed) == [STARTED] and got == []
