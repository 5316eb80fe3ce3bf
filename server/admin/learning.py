"""What a course author needs to fix a lesson: per exercise, who tried, how often, who passed,
how long it took, which errors stopped them, and where learners stop.

Pure aggregates over plain rows (one row per learner and exercise, one per error group), and
the thin SQL behind them. The database groups the runs (a lesson may have millions); Python
only sees one row per learner and exercise of one lesson, or one per lesson on the index page.
Only runs of a lesson page count (a Jupyter client's runs have no lesson). The lessons index
reads the progress rows instead (see lesson_buckets).
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import statistics
from collections.abc import Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.learning.messages import TEMP_IN_MESSAGE
from server.models import Progress, TraceEvent as TraceEventRow, UtcDateTime
from server.tracing.queries import RUNS

TOP_ERRORS = 5                  # error groups shown per exercise
CHECK_FAILED = "check failed"   # the code ran, the exercise's check said no
# A SyntaxError's message names the learner's line: "invalid syntax (1234.py, line 2)".
LINE_IN_MESSAGE = TEMP_IN_MESSAGE


# --- pure: one lesson ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LearnerRow:
    """One learner's runs of one exercise."""
    exercise_id: str
    user_id: str
    runs: int
    first_at: dt.datetime
    passed_at: dt.datetime | None = None      # the first passing run
    runs_to_pass: int | None = None           # runs up to and including the first pass


@dataclasses.dataclass(frozen=True)
class ExerciseStats:
    exercise_id: str
    title: str
    learners: int               # learners who ran it at least once
    attempts: int               # their runs
    passed: int                 # learners who passed it at least once
    median_attempts: float | None   # runs to the first pass, of those who passed
    median_seconds: float | None    # from the first run to the first pass
    stopped: int                # learners for whom this is the furthest exercise reached, not passed

    @property
    def pass_rate(self) -> float | None:
        return None if self.learners == 0 else self.passed / self.learners


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def exercise_stats(rows: Iterable[LearnerRow],
                   exercises: Sequence[tuple[str, str]]) -> list[ExerciseStats]:
    """Per exercise of the lesson, in lesson order (`exercises`: id and title). Rows of exercises
    the lesson no longer has are left out: the page follows the lesson as it is now."""
    order = {exercise_id: i for i, (exercise_id, _) in enumerate(exercises)}
    by_exercise: dict[str, list[LearnerRow]] = collections.defaultdict(list)
    furthest: dict[str, LearnerRow] = {}
    for row in rows:
        if row.exercise_id not in order:
            continue
        by_exercise[row.exercise_id].append(row)
        best = furthest.get(row.user_id)
        if best is None or order[row.exercise_id] > order[best.exercise_id]:
            furthest[row.user_id] = row
    stopped = collections.Counter(row.exercise_id for row in furthest.values()
                                  if row.passed_at is None)
    stats = []
    for exercise_id, title in exercises:
        learners = by_exercise.get(exercise_id, [])
        passed = [r for r in learners if r.passed_at is not None]
        stats.append(ExerciseStats(
            exercise_id, title, len(learners), sum(r.runs for r in learners), len(passed),
            _median([r.runs_to_pass for r in passed if r.runs_to_pass is not None]),
            _median([(r.passed_at - r.first_at).total_seconds() for r in passed]),
            stopped[exercise_id]))
    return stats


@dataclasses.dataclass(frozen=True)
class FunnelStep:
    exercise_id: str
    title: str
    reached: int
    passed: int
    of_first: float | None      # reached, as a share of those who reached the first exercise


def funnel(stats: Sequence[ExerciseStats]) -> list[FunnelStep]:
    """Where learners stop, in lesson order."""
    first = stats[0].learners if stats else 0
    return [FunnelStep(s.exercise_id, s.title, s.learners, s.passed,
                       None if first == 0 else s.learners / first) for s in stats]


@dataclasses.dataclass(frozen=True)
class FailureRow:
    """Failing runs of one learner that share an exercise and a failure (as the SQL groups them)."""
    exercise_id: str
    user_id: str
    kind: str                   # an exception's name, a limit ("timeout"), or CHECK_FAILED
    message: str | None         # the exception's message, as traced (None for the others)
    line: int | None            # the learner's line, when the trace names it
    runs: int


@dataclasses.dataclass(frozen=True)
class ErrorGroup:
    kind: str
    line: int | None
    runs: int
    learners: int
    example: str | None         # one message of the group, as the kernel said it


def learner_line(message: str | None, traced: int | None = None) -> int | None:
    """The line of the learner's code a failure points at: the trace's own when it has one, else
    the one a SyntaxError's message names ("invalid syntax (1234.py, line 2)")."""
    if traced is not None:
        return traced
    match = LINE_IN_MESSAGE.search(message or "")
    return int(match["line"]) if match else None


def common_errors(rows: Iterable[FailureRow], top: int = TOP_ERRORS) -> dict[str, list[ErrorGroup]]:
    """Per exercise, its failures grouped by kind and learner's line, most runs first."""
    runs: dict[tuple, int] = collections.Counter()
    learners: dict[tuple, set[str]] = collections.defaultdict(set)
    examples: dict[tuple, str | None] = {}
    for row in rows:
        key = (row.exercise_id, row.kind, learner_line(row.message, row.line))
        runs[key] += row.runs
        learners[key].add(row.user_id)
        if row.message and not examples.get(key):
            examples[key] = row.message
    groups: dict[str, list[ErrorGroup]] = collections.defaultdict(list)
    for key in sorted(runs, key=lambda k: (-runs[k], -len(learners[k]), k[1], k[2] or 0)):
        exercise_id, kind, line = key
        if len(groups[exercise_id]) < top:
            groups[exercise_id].append(ErrorGroup(kind, line, runs[key], len(learners[key]),
                                                  examples.get(key)))
    return dict(groups)


# --- pure: the lessons index --------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LessonStats:
    slug: str
    title: str
    exercises: int
    learners: int               # learners who ran any of its exercises
    attempts: int
    finished: int               # learners who passed every exercise
    tried: int                  # learner-exercise pairs with a run
    passed: int                 # learner-exercise pairs with a pass

    @property
    def pass_rate(self) -> float | None:
        return None if self.tried == 0 else self.passed / self.tried


@dataclasses.dataclass(frozen=True)
class LessonBucket:
    """Learners of one lesson who passed the same number of its exercises (as the SQL groups)."""
    lesson_slug: str
    exercises_passed: int
    learners: int
    attempts: int
    tried: int


def lesson_stats(buckets: Iterable[LessonBucket],
                 lessons: Sequence[tuple[str, str, int]]) -> list[LessonStats]:
    """Per lesson (`lessons`: slug, title and number of exercises, in course order)."""
    by_lesson: dict[str, list[LessonBucket]] = collections.defaultdict(list)
    for bucket in buckets:
        by_lesson[bucket.lesson_slug].append(bucket)
    out = []
    for slug, title, count in lessons:
        rows = by_lesson.get(slug, [])
        out.append(LessonStats(
            slug, title, count, sum(b.learners for b in rows), sum(b.attempts for b in rows),
            sum(b.learners for b in rows if count and b.exercises_passed >= count),
            sum(b.tried for b in rows), sum(b.exercises_passed * b.learners for b in rows)))
    return out


# --- the SQL shell ------------------------------------------------------------------------

EVENTS = TraceEventRow.__table__


async def learner_rows(engine: AsyncEngine, lesson_slug: str) -> list[LearnerRow]:
    """One row per learner and exercise of the lesson (the runs grouped in SQL). The index
    ix_runs_lesson_learner holds every column read, in the window's order: an index-only scan,
    no sort (runs at the same microsecond are numbered in any order)."""
    numbered = (sa.select(RUNS.c.exercise_id, RUNS.c.user_id, RUNS.c.requested_at, RUNS.c.verdict,
                          sa.func.row_number().over(
                              partition_by=(RUNS.c.exercise_id, RUNS.c.user_id),
                              order_by=RUNS.c.requested_at).label("n"))
                .where(RUNS.c.lesson_slug == lesson_slug, RUNS.c.user_id.is_not(None),
                       RUNS.c.exercise_id.is_not(None), RUNS.c.requested_at.is_not(None))
                .subquery())
    passed = numbered.c.verdict == "passed"
    query = (sa.select(numbered.c.exercise_id, numbered.c.user_id, sa.func.count(),
                       sa.type_coerce(sa.func.min(numbered.c.requested_at), UtcDateTime()),
                       sa.type_coerce(sa.func.min(numbered.c.requested_at).filter(passed),
                                      UtcDateTime()),
                       sa.func.min(numbered.c.n).filter(passed))
             .group_by(numbered.c.exercise_id, numbered.c.user_id))
    rows = await _all(engine, query)
    return [LearnerRow(*row) for row in rows]


async def failure_rows(engine: AsyncEngine, lesson_slug: str) -> list[FailureRow]:
    """The lesson's failing runs, per learner: exceptions (from the traced error outputs),
    limits, and checks that said no."""
    data = EVENTS.c.data
    ename, evalue = data["ename"].as_string(), data["evalue"].as_string()
    line = data["line"].as_integer()      # traced by newer servers; older traces have none
    errors = (sa.select(RUNS.c.exercise_id, RUNS.c.user_id, ename, evalue, line,
                        sa.func.count(sa.distinct(RUNS.c.id)))
              .select_from(RUNS.join(EVENTS, EVENTS.c.run_id == RUNS.c.id))
              .where(RUNS.c.lesson_slug == lesson_slug, RUNS.c.status == "error",
                     RUNS.c.user_id.is_not(None), EVENTS.c.kind == "output", ename.is_not(None))
              .group_by(RUNS.c.exercise_id, RUNS.c.user_id, ename, evalue, line))
    kind = sa.case((RUNS.c.status == "limit", sa.func.coalesce(RUNS.c.limit_hit, "limit")),
                   else_=sa.literal(CHECK_FAILED))
    others = (sa.select(RUNS.c.exercise_id, RUNS.c.user_id, kind, sa.func.count())
              .where(RUNS.c.lesson_slug == lesson_slug, RUNS.c.user_id.is_not(None),
                     sa.or_(RUNS.c.status == "limit",
                            sa.and_(RUNS.c.status == "ok", RUNS.c.verdict == "failed")))
              .group_by(RUNS.c.exercise_id, RUNS.c.user_id, kind))
    failed, stopped = await asyncio.gather(_all(engine, errors), _all(engine, others))
    return ([FailureRow(ex, user, name, message, line, n) for ex, user, name, message, line, n in failed]
            + [FailureRow(ex, user, name, None, None, n) for ex, user, name, n in stopped])


async def _all(engine: AsyncEngine, query: sa.Select) -> list[sa.Row]:
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def lesson_buckets(engine: AsyncEngine) -> list[LessonBucket]:
    """Learners per lesson, bucketed by how many of its exercises they passed, from the progress
    rows (one per learner and exercise, a tenth of the runs or less, and carried over when an
    anonymous learner signs up): two nested groupings in SQL, a few rows per lesson out."""
    passed = sa.case((Progress.status == "passed", 1), else_=0)
    learners = (sa.select(Progress.lesson_slug, Progress.user_id,
                          sa.func.sum(passed).label("passed"),
                          sa.func.sum(Progress.attempts).label("runs"),
                          sa.func.count().label("tried"))
                .group_by(Progress.lesson_slug, Progress.user_id).subquery())   # a hash, not the
    # primary key's order: on Postgres a sequential read beats a walk of the key at 100k rows
    query = (sa.select(learners.c.lesson_slug, learners.c.passed, sa.func.count(),
                       sa.func.sum(learners.c.runs), sa.func.sum(learners.c.tried))
             .group_by(learners.c.lesson_slug, learners.c.passed))
    rows = await _all(engine, query)
    return [LessonBucket(slug, int(passed), int(n), int(runs), int(tried))
            for slug, passed, n, runs, tried in rows]


@dataclasses.dataclass(frozen=True)
class LessonReport:
    exercises: list[ExerciseStats]
    funnel: list[FunnelStep]
    errors: Mapping[str, list[ErrorGroup]]


async def lesson_report(engine: AsyncEngine, lesson_slug: str,
                        exercises: Sequence[tuple[str, str]]) -> LessonReport:
    """The lesson page's numbers; its queries run at once, each on its own connection."""
    learners, failures = await asyncio.gather(learner_rows(engine, lesson_slug),
                                              failure_rows(engine, lesson_slug))
    stats = exercise_stats(learners, exercises)
    return LessonReport(stats, funnel(stats), common_errors(failures))
