"""The course authors' learning pages: the pure aggregates on plain rows, and the pages over a
real server whose learners really ran the exercises (local sandbox, real traces)."""
from __future__ import annotations

import asyncio
import datetime as dt
import re


from kernels.result import Output, RunResult, RunStatus
from server.admin import figures, learning
from server.admin.learning import FailureRow, LearnerRow, LessonBucket
from server.cache.cache import Cache, CacheObserver
from server.cache.freshness import Policy
from server.handlers.admin_learning import seconds
from server.store import progress, users
from server.tracing.tracer import RunTracer
from tests.test_exercise_ws import TOKEN, Page, serve_course
from workers.trace_store import open_store

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.timezone.utc)
EXERCISES = [("a", "First"), ("b", "Second"), ("c", "Third")]


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_exercise_stats_count_learners_runs_and_medians_to_the_first_pass():
    rows = [LearnerRow("a", "u1", 3, at(0), at(2), 2),        # passed on the 2nd run, 2 min
            LearnerRow("a", "u2", 1, at(0), at(0), 1),        # first time
            LearnerRow("a", "u3", 4, at(0), at(10), 4),
            LearnerRow("a", "u4", 5, at(0)),                  # never passed
            LearnerRow("b", "u1", 2, at(5)),
            LearnerRow("b", "u2", 1, at(1), at(1.5), 1),
            LearnerRow("gone", "u9", 7, at(0))]               # an exercise the lesson lost
    a, b, c = learning.exercise_stats(rows, EXERCISES)
    assert (a.learners, a.attempts, a.passed, a.pass_rate) == (4, 13, 3, 0.75)
    assert a.median_attempts == 2 and a.median_seconds == 120
    assert (b.learners, b.passed, b.median_attempts, b.median_seconds) == (2, 1, 1, 30)
    assert (c.learners, c.attempts, c.pass_rate, c.median_attempts, c.median_seconds) == \
        (0, 0, None, None, None)
    # u1 got furthest to b and did not pass it; u3 and u4 stopped at a (u4 never passed it).
    assert (a.stopped, b.stopped, c.stopped) == (1, 1, 0)
    assert [(s.title, s.reached, s.passed, s.of_first) for s in learning.funnel([a, b, c])] == \
        [("First", 4, 3, 1.0), ("Second", 2, 1, 0.5), ("Third", 0, 0, 0.0)]
    assert learning.funnel([]) == []
    assert learning.funnel(learning.exercise_stats([], EXERCISES))[0].of_first is None


def test_errors_group_by_kind_and_the_learners_line():
    rows = [FailureRow("a", "u1", "SyntaxError", "invalid syntax (3811.py, line 2)", None, 2),
            FailureRow("a", "u2", "SyntaxError", "'(' was never closed (12.py, line 2)", None, 1),
            FailureRow("a", "u2", "SyntaxError", "invalid syntax (12.py, line 1)", None, 1),
            FailureRow("a", "u1", "NameError", "name 'x' is not defined", 3, 1),
            FailureRow("a", "u3", "NameError", "name 'y' is not defined", 3, 1),
            FailureRow("a", "u3", "NameError", "name 'y' is not defined", None, 1),
            FailureRow("a", "u4", "timeout", None, None, 1),
            FailureRow("b", "u1", learning.CHECK_FAILED, None, None, 6)]
    groups = learning.common_errors(rows)
    assert [(g.kind, g.line, g.runs, g.learners) for g in groups["a"]] == [
        ("SyntaxError", 2, 3, 2), ("NameError", 3, 2, 2), ("NameError", None, 1, 1),
        ("SyntaxError", 1, 1, 1), ("timeout", None, 1, 1)]
    assert groups["a"][0].example == "invalid syntax (3811.py, line 2)"
    assert [(g.kind, g.runs) for g in groups["b"]] == [("check failed", 6)]
    assert len(learning.common_errors(rows, top=2)["a"]) == 2
    assert learning.learner_line("name 'x' is not defined") is None
    assert learning.learner_line("invalid syntax (/tmp/ipykernel_7/3811.py, line 4)") == 4
    assert learning.learner_line("anything (1.py, line 4)", traced=9) == 9


def test_lesson_stats_from_buckets_of_learners_by_exercises_passed():
    buckets = [LessonBucket("one", 0, 5, 20, 6), LessonBucket("one", 2, 3, 15, 6),
               LessonBucket("one", 1, 1, 4, 2), LessonBucket("gone", 1, 9, 9, 9)]
    one, two = learning.lesson_stats(buckets, [("one", "One", 2), ("two", "Two", 3)])
    assert (one.learners, one.attempts, one.finished, one.tried, one.passed) == (9, 39, 3, 14, 7)
    assert one.pass_rate == 0.5
    assert (two.learners, two.finished, two.pass_rate) == (0, 0, None)
    assert learning.lesson_stats(buckets, [("empty", "Empty", 0)])[0].finished == 0


def test_times_to_pass_read_as_people_say_them():
    assert [seconds(v) for v in (None, 0, 42.4, 150, 7200)] == ["-", "0 s", "42 s", "2.5 min", "2.0 h"]


def run(user: str, exercise: str, minute: float, verdict: bool | None, status=RunStatus.OK,
        error: Output | None = None, lesson: str = "intro"):
    """One run's events as the runner traces them, `minute` minutes after T0."""
    events = []
    tracer = RunTracer(events.append, clock=lambda: (at(minute)).timestamp())
    tracer.requested(user_id=user, lesson_slug=lesson, exercise_id=exercise, kernel="python",
                     code="x")
    if error is not None:
        tracer.output(error)
    if verdict is not None:
        tracer.verdict(verdict)
    tracer.finished(RunResult(status))
    return events


def syntax_error(line: int) -> Output:
    return Output("error", ename="SyntaxError", evalue=f"invalid syntax (2411.py, line {line})")


async def test_the_sql_shell_groups_runs_alike_on_both_databases(db_engine):
    url = db_engine.url.render_as_string(hide_password=False)
    store = open_store(url)
    store.write([e for events in (
        run("u1", "a", 0, False, RunStatus.ERROR, syntax_error(2)),
        run("u1", "a", 1, False, RunStatus.ERROR, syntax_error(2)),
        run("u1", "a", 3, True),
        run("u1", "a", 4, True),                       # after the first pass: not to the pass
        run("u2", "a", 10, False, RunStatus.ERROR, Output("error", ename="NameError",
                                                          evalue="name 'x' is not defined")),
        run("u2", "b", 11, False),                     # the check said no
        run("u1", "b", 12, None, RunStatus.LIMIT),     # ... and a timeout
        run("u3", "a", 5, True, lesson="other"),
        run(None, "a", 5, True)) for e in events])     # an anonymous trace without a user
    store.close()
    rows = sorted(await learning.learner_rows(db_engine, "intro"), key=lambda r: (r.exercise_id, r.user_id))
    assert rows == [LearnerRow("a", "u1", 4, at(0), at(3), 3), LearnerRow("a", "u2", 1, at(10)),
                    LearnerRow("b", "u1", 1, at(12)), LearnerRow("b", "u2", 1, at(11))]
    failures = sorted(await learning.failure_rows(db_engine, "intro"),
                      key=lambda r: (r.exercise_id, r.user_id, r.kind))
    assert failures == [
        FailureRow("a", "u1", "SyntaxError", "invalid syntax (2411.py, line 2)", None, 2),
        FailureRow("a", "u2", "NameError", "name 'x' is not defined", None, 1),
        FailureRow("b", "u1", "limit", None, None, 1),
        FailureRow("b", "u2", "check failed", None, None, 1)]


async def test_the_lessons_index_groups_learners_progress(db_engine):
    for user in ("u1", "u2", "u3"):
        await users.create_anonymous(db_engine, user)
    for user, lesson, exercise, passed in (
            ("u1", "intro", "a", False), ("u1", "intro", "a", True), ("u1", "intro", "a", False),
            ("u1", "intro", "b", False), ("u2", "intro", "a", False), ("u2", "intro", "b", False),
            ("u3", "other", "a", True)):
        await progress.record(db_engine, user, lesson, exercise, passed, "x")
    buckets = sorted(await learning.lesson_buckets(db_engine),
                     key=lambda b: (b.lesson_slug, b.exercises_passed))
    # intro: u2 passed none of 2 (2 runs), u1 passed 1 of 2 (4 runs, a pass stays a pass)
    assert buckets == [LessonBucket("intro", 0, 1, 2, 2), LessonBucket("intro", 1, 1, 4, 2),
                       LessonBucket("other", 1, 1, 1, 1)]


async def test_the_dashboards_figures_are_kept_for_their_ttl_then_recounted(db_engine):
    cache = Cache.embedded(figures.policy(0.5, 0), CacheObserver())
    await users.create_anonymous(db_engine, "u1")
    await progress.record(db_engine, "u1", "intro", "a", True, "x")
    first = await figures.lesson_buckets(cache, db_engine)
    assert first.value == [LessonBucket("intro", 1, 1, 1, 1)]
    await users.create_anonymous(db_engine, "u2")
    await progress.record(db_engine, "u2", "intro", "a", False, "x")
    assert await figures.lesson_buckets(cache, db_engine) == first          # within the TTL
    await asyncio.sleep(0.6)
    later = await figures.lesson_buckets(cache, db_engine)
    assert sorted(later.value, key=lambda b: b.exercises_passed) == [
        LessonBucket("intro", 0, 1, 1, 1), LessonBucket("intro", 1, 1, 1, 1)]
    assert later.computed_at > first.computed_at
    await cache.close()


def test_the_dashboards_figures_are_never_older_than_two_refreshes():
    assert figures.policy(30, 60) == Policy(ttl=figures.REFRESH, grace=figures.REFRESH)
    assert figures.policy(0, 0) == Policy(ttl=0, grace=0)      # no page cache, no figure cache


def cells(body: str, row_id: str) -> list[str]:
    row = body.split(f'id="{row_id}"', 1)[1].split("</tr>", 1)[0]
    return [re.sub("<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


async def admin_cookie(site) -> str:
    login = await site.get("/admin/login")
    xsrf = next(c.split(";", 1)[0] for c in login.headers.get_list("Set-Cookie")
                if c.startswith("_xsrf="))
    signed = await site.get("/admin/login", method="POST", headers={"Cookie": xsrf},
                            body=f"token={TOKEN}&_xsrf={xsrf.split('=', 1)[1]}")
    return next(c.split(";", 1)[0] for c in signed.headers.get_list("Set-Cookie")
                if c.startswith("ls_admin="))


async def test_the_learning_pages_show_what_real_learners_did(tmp_path, make_settings):
    async with serve_course(tmp_path, make_settings) as site:
        ada, bob, cy = [await Page.open(site) for _ in range(3)]
        runs = [(ada, "hello", "print('hello'"),                # SyntaxError on line 1
                (ada, "hello", "x = 1\nprint(hello)"),          # NameError
                (ada, "hello", "print('hello')"),               # passes on the 3rd run
                (ada, "add", "def add(a, b):\n    return a + b"),
                (bob, "hello", "print('hello'"),
                (bob, "hello", "print('hi')"),                  # check failed
                (cy, "hello", "print('hello')")]
        traces = []
        for page, exercise, code in runs:
            result, _ = await page.run(exercise, code)
            traces.append(result["trace"])
        headers = {"Authorization": f"token {TOKEN}"}
        for trace in traces:                                   # the traces arrive through the buffer
            for _ in range(100):
                response = await site.get(f"/api/admin/runs/{trace}", headers=headers)
                if response.code == 200 and '"status": "running"' not in response.body.decode():
                    break
                await asyncio.sleep(0.1)
        cookie = {"Cookie": await admin_cookie(site)}

        index = (await site.get("/admin/learning", headers=cookie)).body.decode()
        # 3 learners, 7 runs; of 4 learner-exercise pairs tried, 3 passed; nobody passed all 3.
        assert cells(index, "lesson-practice")[1:] == ["3", "3", "7", "75.0 %", "0"]
        assert cells(index, "lesson-paid")[1:] == ["1", "0", "0", "-", "0"]

        page = await site.get("/admin/learning/practice", headers=cookie)
        body = page.body.decode()
        assert page.code == 200
        hello = cells(body, "exercise-hello")
        # ada passed at her 3rd run, cy at his 1st: a median of 2; bob stopped here.
        assert hello[1:6] == ["3", "6", "2", "66.7 %", "2"] and hello[7] == "1"
        assert hello[6].endswith(" s"), hello
        assert cells(body, "exercise-add")[1:6] == ["1", "1", "1", "100.0 %", "1"]
        assert cells(body, "exercise-ask")[1:5] == ["0", "0", "0", "-"]
        funnel = body.split('id="funnel"', 1)[1].split("</table>", 1)[0]
        assert [cell for cell in re.findall(r'<td class="num">(\d+)</td>', funnel)] == \
            ["3", "2", "1", "1", "0", "0"]
        errors = body.split('id="errors-hello"', 1)[1].split("</table>", 1)[0]
        groups = [list(g) for g in re.findall(
            r'<tr><td>([^<]*)</td><td>([^<]*)</td><td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>',
            errors)]
        assert ["SyntaxError", "1", "2", "2"] in groups, groups
        # the NameError's line comes from its traceback, traced as the learner's line
        assert ["NameError", "2", "1", "1"] in groups and ["check failed", "-", "1", "1"] in groups
        assert (await site.get("/admin/learning/nope", headers=cookie)).code == 404
        assert (await site.get("/admin/learning/practice")).headers["Location"].startswith(
            "/admin/login")
