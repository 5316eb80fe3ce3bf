"""An exercise's last run, kept in its progress row so a reloaded page shows it again:
the bounded snapshot (pure) and the store (real SQLite and Postgres)."""
from __future__ import annotations

import json

from kernels.result import LimitHit, Output, RunResult, RunStatus
from server.course.grade import Verdict
from server.learning import last_run
from server.store import progress, users


def test_a_snapshot_keeps_what_the_page_showed():
    result = RunResult(RunStatus.LIMIT, outputs=(Output("stream", name="stdout", text="looping\n"),),
                       limit=LimitHit.TIMEOUT, message="Your code ran longer than 10 s")
    snap = last_run.snapshot(result, Verdict(False, "Your code did not finish."))
    assert snap == {"status": "limit", "limit": "timeout", "message": "Your code ran longer than 10 s",
                    "verdict": {"passed": False, "message": "Your code did not finish."},
                    "outputs": [{"output_type": "stream", "name": "stdout", "text": "looping\n"}],
                    "cut": False}
    assert last_run.parse(last_run.dumps(snap)) == snap


def test_a_snapshot_is_bounded_cutting_text_and_leaving_out_what_follows():
    outputs = (Output("stream", name="stdout", text="x" * 5000),
               Output("display_data", data={"image/png": "A" * 4000}),
               Output("stream", name="stdout", text="after"))
    snap = last_run.snapshot(RunResult(RunStatus.OK, outputs=outputs), Verdict(True, ""),
                             max_bytes=3000)
    assert snap["cut"] is True and len(snap["outputs"]) == 1
    assert 2000 < len(snap["outputs"][0]["text"]) < 3000
    assert len(last_run.dumps(snap).encode()) < 3000 + 300
    small = last_run.snapshot(RunResult(RunStatus.OK, outputs=outputs), Verdict(True, ""),
                              max_bytes=20000)
    assert small["cut"] is False and len(small["outputs"]) == 3
    image_first = last_run.snapshot(RunResult(RunStatus.OK, outputs=outputs[1:]), Verdict(True, ""),
                                    max_bytes=3000)
    assert image_first["outputs"] == [] and image_first["cut"] is True   # an image is never halved


def test_unreadable_rows_read_as_none():
    for text in (None, "", "{", "[]", json.dumps({"verdict": {}}), json.dumps({"outputs": []})):
        assert last_run.parse(text) is None, text


async def test_the_store_keeps_the_latest_run_per_exercise_of_a_lesson(db_engine):
    user = await users.create_anonymous(db_engine)
    other = await users.create_anonymous(db_engine)
    for user_id, slug, exercise, passed, snap in (
            (user.id, "intro", "a", True, '{"n": 1}'), (user.id, "intro", "a", False, '{"n": 2}'),
            (user.id, "intro", "b", False, None),          # no record of the run
            (user.id, "other", "a", True, '{"n": 3}'), (other.id, "intro", "a", True, '{"n": 4}')):
        await progress.record(db_engine, user_id, slug, exercise, passed, "x", snap)
    await progress.record(db_engine, user.id, "intro", "a", False, "y")   # none given: kept
    assert await progress.last_runs(db_engine, user.id, "intro") == {"a": '{"n": 2}'}
    rows = {r.exercise_id: r for r in await progress.get_for_user(db_engine, user.id)
            if r.lesson_slug == "intro"}
    assert rows["a"].status.value == "passed" and rows["a"].attempts == 3   # passed stays passed
