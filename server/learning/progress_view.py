"""What a learner sees of the catalog: per-lesson lock and progress, computed from values."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from server.learning.access import LessonAccess, lesson_access

PASSED = "passed"


@dataclasses.dataclass(frozen=True)
class LessonState:
    slug: str
    title: str
    summary: str
    paid: bool
    kernel: str
    access: LessonAccess
    exercises: int
    passed: int

    @property
    def completed(self) -> bool:
        return self.passed == self.exercises


@dataclasses.dataclass(frozen=True)
class CourseState:
    slug: str
    title: str
    description: str
    lessons: tuple[LessonState, ...]


def statuses_of(rows) -> dict[tuple[str, str], str]:
    """{(lesson slug, exercise id): 'passed' | 'failed'} from a learner's progress rows."""
    return {(row.lesson_slug, row.exercise_id): str(row.status.value) for row in rows}


def passed_in(lesson, statuses: Mapping[tuple[str, str], str]) -> int:
    return sum(1 for ex in exercise_ids(lesson) if statuses.get((lesson.slug, ex)) == PASSED)


def exercise_ids(lesson) -> tuple[str, ...]:
    return tuple(exercise.id for exercise in lesson.exercises)


def completed_lessons(catalog, statuses: Mapping[tuple[str, str], str]) -> frozenset[str]:
    """Lessons whose every exercise has passed (a lesson without exercises counts as read)."""
    return frozenset(
        lesson.slug for course in catalog.courses for lesson in course.lessons
        if all(statuses.get((lesson.slug, ex)) == PASSED for ex in exercise_ids(lesson)))


def lesson_state(lesson, statuses: Mapping[tuple[str, str], str], completed: frozenset[str],
                 subscribed: bool, is_admin: bool) -> LessonState:
    ids = exercise_ids(lesson)
    return LessonState(
        slug=lesson.slug, title=lesson.title, summary=lesson.summary, paid=lesson.paid,
        kernel=lesson.kernel,
        access=lesson_access(paid=lesson.paid, prerequisites=lesson.prerequisites,
                             completed=completed, subscribed=subscribed, is_admin=is_admin),
        exercises=len(ids),
        passed=passed_in(lesson, statuses))


def catalog_state(catalog, statuses: Mapping[tuple[str, str], str], subscribed: bool,
                  is_admin: bool = False) -> tuple[CourseState, ...]:
    completed = completed_lessons(catalog, statuses)
    return tuple(
        CourseState(course.slug, course.title, course.description,
                    tuple(lesson_state(lesson, statuses, completed, subscribed, is_admin)
                          for lesson in course.lessons))
        for course in catalog.courses)
