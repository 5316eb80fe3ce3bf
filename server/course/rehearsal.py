"""`lessons check --run`: every exercise rehearsed in a real kernel, as a learner's run goes
(server.learning.exercise_steps: hidden setup, the code, hidden tests). The untouched starter must
fail its check (unless the exercise says `starter=passes`) and the reference solution
must pass it. Each exercise gets a fresh kernel: the starter runs first, then the solution.

`problems` is the pure rule (verdicts in, errors out); `rehearse` is the thin shell that
talks to a KernelManager, and `rehearse_in_sandbox` builds one from the settings.
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

from kernels.manager import KernelManager
from kernels.plugins import discover
from kernels.quotas import Tier
from kernels.result import RunResult, RunStatus
from kernels.sandbox import create_sandbox
from server.learning.exercise_attempt import attempt
from server.course.grade import Verdict
from server.course.model import Exercise, Lesson, LessonError
from server.learning.exercise_steps import StepKind

if TYPE_CHECKING:
    from server.config import Settings


@dataclasses.dataclass(frozen=True)
class Rehearsal:
    """What one exercise did in a kernel: the starter's verdict, and the solution's if it has one."""
    lesson: Lesson
    exercise: Exercise
    starter: Verdict
    solution: Verdict | None
    setup_error: str | None = None    # what stopped the hidden setup, when it did
    kernel_died: bool = False         # a run ended with a dead kernel: the code's doing, or the host's


@dataclasses.dataclass(frozen=True)
class RehearsalReport:
    exercises: int
    solutions: int                    # exercises that have a reference solution
    errors: tuple[LessonError, ...]


def problems(rehearsal: Rehearsal) -> list[LessonError]:
    """The author's errors shown by one rehearsal, at the exercise's file:line."""
    lesson, exercise = rehearsal.lesson, rehearsal.exercise
    errors = []
    if rehearsal.setup_error is not None:
        return [_error(lesson, exercise, exercise.line, f"the hidden setup fails: {rehearsal.setup_error}")]
    if rehearsal.starter.passed and not exercise.starter_passes:
        errors.append(_error(lesson, exercise, exercise.line, "the untouched starter already passes "
                             "its check", "make the check stricter, or write `starter=passes` "
                             "in the fence if that is intended"))
    if not rehearsal.starter.passed and exercise.starter_passes:
        errors.append(_error(lesson, exercise, exercise.line, "starter=passes, but the starter fails: "
                             + rehearsal.starter.message))
    if rehearsal.solution is not None and not rehearsal.solution.passed:
        errors.append(_error(lesson, exercise, exercise.solution_line,
                             "the solution fails its check: " + rehearsal.solution.message))
    return errors


def _error(lesson: Lesson, exercise: Exercise, line: int, message: str,
           hint: str | None = None) -> LessonError:
    if lesson.path.endswith(".ipynb"):   # notebooks: the line is the cell number
        return LessonError(lesson.path, None, f"cell {line}: {message} (exercise {exercise.id!r})", hint)
    return LessonError(lesson.path, line, f"{message} (exercise {exercise.id!r})", hint)


async def rehearse_in_sandbox(settings: Settings, lessons: Iterable[Lesson]) -> RehearsalReport:
    """`rehearse` in kernels of the configured sandbox, under an instance label of its own
    (`<LS_INSTANCE>-check`) so that starting up never reaps a running server's kernels."""
    settings = settings.replace(instance=f"{settings.instance}-check", pool_size=0)
    sandbox = create_sandbox(settings)
    manager = KernelManager(settings, sandbox, discover())
    try:
        await manager.startup()
        return await rehearse(manager, lessons, settings.start_concurrency)
    finally:
        await manager.close()
        await sandbox.close()


async def rehearse(manager: KernelManager, lessons: Iterable[Lesson],
                   concurrency: int = 4) -> RehearsalReport:
    """Run every exercise of `lessons`, `concurrency` kernels at a time."""
    gate = asyncio.Semaphore(max(1, concurrency))
    jobs = [(lesson, exercise) for lesson in lessons for exercise in lesson.exercises]

    async def one(lesson: Lesson, exercise: Exercise) -> list[LessonError]:
        async with gate:
            try:
                rehearsal = await _rehearse_one(manager, lesson, exercise)
                if rehearsal.kernel_died:   # a loaded host can lose a kernel: believe it twice
                    rehearsal = await _rehearse_one(manager, lesson, exercise)
                return problems(rehearsal)
            except Exception as exc:  # a kernel that cannot start or dies: the author must know
                detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
                return [_error(lesson, exercise, exercise.line,
                               f"could not run in a {lesson.kernel!r} kernel: "
                               f"{detail or type(exc).__name__}")]

    found = await asyncio.gather(*(one(lesson, exercise) for lesson, exercise in jobs))
    return RehearsalReport(len(jobs), sum(ex.solution is not None for _, ex in jobs),
                           tuple(error for errors in found for error in errors))


async def _rehearse_one(manager: KernelManager, lesson: Lesson, exercise: Exercise) -> Rehearsal:
    kernel = await manager.start("lessons-check", lesson.kernel, Tier.EXEMPT)
    try:
        starter, setup_error, died = await _attempt(manager, kernel.id, lesson.kernel, exercise,
                                                    exercise.starter)
        solution = None
        if exercise.solution is not None and setup_error is None:
            solution, setup_error, died_too = await _attempt(manager, kernel.id, lesson.kernel,
                                                             exercise, exercise.solution)
            died = died or died_too
    finally:
        await manager.shutdown(kernel.id)
    return Rehearsal(lesson, exercise, starter, solution, setup_error, died)


async def _attempt(manager: KernelManager, kernel_id: str, plugin: str, exercise: Exercise,
                   code: str) -> tuple[Verdict, str | None, bool]:
    """The verdict on one run of `code` (judged as a learner's run is), what stopped the
    hidden setup if it failed, and whether a kernel died."""
    done = await attempt(manager, kernel_id, plugin, exercise, code, owner="lessons-check")
    setups = [done.results.get(StepKind.SETUP), done.checked.get(StepKind.SETUP)]
    failed = next((s for s in setups if s is not None and s.status is not RunStatus.OK), None)
    setup_error = None if failed is None else _what_stopped(failed)
    died = any(result.status is RunStatus.DIED
               for result in (*done.results.values(), *done.checked.values()))
    return done.verdict, setup_error, died


def _what_stopped(result: RunResult) -> str:
    error = result.error
    if result.message:
        return result.message
    if error is not None and error.ename:
        return f"{error.ename}: {error.evalue}" if error.evalue else error.ename
    return f"it ended with status {result.status.value}"
