"""The learning and users pages' time at 100,000 users and 1,000,000 runs on Postgres, over HTTP.

`python -m tests.bench_admin_learning` (a throwaway Postgres cluster; the runs of
tests.bench_admin_runs, plus an error output traced for each failed run and the progress rows
those runs would have left). The served course
has one lesson whose exercises are the seeded ones, so its page reads real rows.
Prints the median and worst of 10 requests for the lessons index, one lesson's page, and the
users list (first, deep and searched pages)."""
from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import tornado.httpclient
import tornado.web

from server import config, db
from server.handlers.admin_pages import ADMIN_COOKIE
from tests import services
from tests.bench_admin_runs import BUDGET_MS, RUNS, SECRET, SEED, USERS
from tests.test_pages import start
from tests.test_trace_support import fresh_postgres

LESSON = 7                      # lesson-7 has the exercises ex-7, ex-47, ... ex-367
ERRORS = f"""
INSERT INTO trace_events (id, run_id, seq, ts, kind, data)
SELECT md5('e' || i), md5('r' || i), 2, now(), 'output',
       jsonb_build_object('output_type', 'error', 'ename',
                          (ARRAY['NameError','SyntaxError','TypeError'])[i % 3 + 1],
                          'evalue', 'invalid syntax (12.py, line ' || (i % 4 + 1) || ')')
FROM generate_series(1, {RUNS}) AS i WHERE i % 7 = 3;
ANALYZE trace_events;
INSERT INTO progress (user_id, lesson_slug, exercise_id, status, attempts)
SELECT user_id, lesson_slug, exercise_id,
       CASE WHEN bool_or(verdict = 'passed') THEN 'passed' ELSE 'failed' END, count(*)
FROM runs GROUP BY user_id, lesson_slug, exercise_id;
"""
# What autovacuum does soon after a bulk insert (it sets the visibility map that lets Postgres
# answer from an index alone); without it the first minutes after seeding read the heap.
SETTLE = "VACUUM (ANALYZE) runs; VACUUM (ANALYZE) progress; VACUUM (ANALYZE) trace_events"
PAGES = ["/admin/learning", f"/admin/learning/lesson-{LESSON}", "/admin/users",
         "/admin/users?page=500", "/admin/users?q=learner4242", "/admin/users?role=all&page=1000"]


def write_course(root: Path) -> None:
    course = root / "bench"
    course.mkdir(parents=True)
    (course / "course.yaml").write_text("title: Bench\ndescription: seeded\n")
    fences = "\n".join(f'```python exercise id=ex-{k} title="Exercise {k}"\nprint(1)\n'
                       f"# --- expected output ---\n1\n```\n" for k in range(LESSON, 400, 40))
    (course / "lesson.md").write_text(f"---\ntitle: Lesson {LESSON}\nslug: lesson-{LESSON}\n"
                                      f"kernel: python\n---\n# Seeded\n\n{fences}")


async def measure(url: str, lessons: Path) -> list[tuple[str, float, float]]:
    """Each page's median and worst time of 10 requests, signed in with the admin cookie."""
    with tempfile.TemporaryDirectory() as data:
        server, stop, task = await start(config.load({
            "LS_DATABASE_URL": url, "LS_DATA_DIR": data, "LS_PORT": "0", "LS_POOL_SIZE": "0",
            "LS_COOKIE_SECRET": SECRET, "LS_LESSONS_DIR": str(lessons),
            "LS_INSTANCE": f"bench-{os.getpid()}"}))
        signed = {"Cookie": f"{ADMIN_COOKIE}="
                            f"{tornado.web.create_signed_value(SECRET, ADMIN_COOKIE, '1').decode()}"}
        try:
            return [(path, *await timed(server.base + path, signed)) for path in PAGES]
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)


async def timed(url: str, headers: dict[str, str], times: int = 10) -> tuple[float, float]:
    client, spent = tornado.httpclient.AsyncHTTPClient(), []
    for _ in range(times):
        began = time.perf_counter()
        response = await client.fetch(url, raise_error=False, headers=headers)
        spent.append((time.perf_counter() - began) * 1000)
        assert response.code == 200, (url, response.code)
    return statistics.median(spent), max(spent)


def main() -> int:
    with services.throwaway_postgres() as cluster, fresh_postgres(cluster, prefix="bench") as url, \
            tempfile.TemporaryDirectory() as lessons:
        write_course(Path(lessons))
        db.upgrade(config.load({"LS_DATABASE_URL": url, "LS_DATA_DIR": tempfile.mkdtemp()}))
        began = time.monotonic()
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(SEED + ERRORS)
        with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
            conn.autocommit = True
            for statement in SETTLE.split("; "):
                cur.execute(statement)
        print(f"seeded {USERS:,} users, {RUNS:,} runs, their error outputs and progress in "
              f"{time.monotonic() - began:.0f} s")
        results = asyncio.run(measure(url, Path(lessons)))
    print("\n".join(f"{path:40} median {median:7.1f} ms   worst {worst:7.1f} ms"
                    for path, median, worst in results))
    slow = [path for path, median, _ in results if median > BUDGET_MS]
    print(f"budget: median under {BUDGET_MS} ms: {'MISSED by ' + ', '.join(slow) if slow else 'met'}")
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
