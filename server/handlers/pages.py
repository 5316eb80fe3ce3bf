"""Catalog and lesson pages, and the lesson list as JSON."""
from __future__ import annotations

import time

import tornado.web

from server import access, progress_view
from server.access import Lock
from server.handlers.base import BaseHandler, Common, json_response
from server.library import Library
from server.store import progress, subscriptions

class LearnerPage(BaseHandler):
    def initialize(self, common: Common, library: Library) -> None:
        super().initialize(common)
        self.library = library
        self.progress_rows: list = []

    async def learner_state(self) -> tuple[dict, bool, bool]:
        """(exercise statuses, subscribed, is admin) of the visitor; empty for a new visitor."""
        user = self.user or await self.load_user()
        if user is None:
            return {}, False, False
        rows = await progress.get_for_user(self.common.engine, user.id)
        self.progress_rows = rows
        sub = await subscriptions.get(self.common.engine, user.id)
        subscribed = sub is not None and access.subscribed(
            sub.status, sub.current_period_start, sub.updated_at, time.time(),
            self.settings_.billing_grace_days)
        return progress_view.statuses_of(rows), subscribed, user.is_admin

    async def lesson_state(self, lesson) -> progress_view.LessonState:
        """The visitor's view of one lesson: its lock and how much of it has passed."""
        statuses, subscribed, is_admin = await self.learner_state()
        completed = progress_view.completed_lessons(self.library.catalog, statuses)
        return progress_view.lesson_state(lesson, statuses, completed, subscribed, is_admin)


class CatalogHandler(LearnerPage):
    route = "catalog"

    async def get(self) -> None:
        statuses, subscribed, is_admin = await self.learner_state()
        courses = progress_view.catalog_state(self.library.catalog, statuses, subscribed, is_admin)
        self.set_header("Cache-Control", "private, no-cache")
        self.render("catalog.html", courses=courses)


class LessonHandler(LearnerPage):
    route = "lesson"

    async def get(self, slug: str) -> None:
        catalog = self.library.catalog
        lesson = catalog.lesson(slug)
        if lesson is None:
            raise tornado.web.HTTPError(404, f"There is no lesson called {slug!r}.")
        if lesson.exercises:  # its runs and progress need a learner (anonymous until claimed)
            await self.ensure_user()
        state = await self.lesson_state(lesson)
        course = catalog.course_of(slug)
        titles = {l.slug: l.title for c in catalog.courses for l in c.lessons}
        self.set_header("Cache-Control", "private, no-cache")
        if not state.access.open:
            self.set_status(403 if state.access.lock is Lock.PREREQUISITES else 402)
        self.render("lesson.html", lesson=lesson, course=course, state=state, titles=titles,
                    body=self.library.bodies[slug] if state.access.open else "",
                    saved=_saved_work(self.progress_rows, lesson) if state.access.open else {},
                    next_lesson=_next_lesson(course, slug))


def _saved_work(rows, lesson) -> dict:
    """Each exercise's status, attempts and last submitted code, for the page's editors."""
    ids = {exercise.id for exercise in lesson.exercises}
    return {row.exercise_id: {"status": row.status.value,
                              "attempts": row.attempts, "code": row.code}
            for row in rows if row.lesson_slug == lesson.slug and row.exercise_id in ids}


def _next_lesson(course, slug: str):
    lessons = list(course.lessons)
    index = next(i for i, lesson in enumerate(lessons) if lesson.slug == slug)
    return lessons[index + 1] if index + 1 < len(lessons) else None


class LessonsApiHandler(BaseHandler):
    route = "api_lessons"

    def initialize(self, common: Common, library: Library) -> None:
        super().initialize(common)
        self.library = library

    def get(self) -> None:
        json_response(self, {"courses": [
            {"slug": course.slug, "title": course.title, "description": course.description,
             "lessons": [{"slug": lesson.slug, "title": lesson.title, "url": f"/lessons/{lesson.slug}",
                          "access": "paid" if lesson.paid else "free", "kernel": lesson.kernel,
                          "order": lesson.order, "prerequisites": list(lesson.prerequisites),
                          "exercises": [{"id": ex.id, "title": ex.title, "check": ex.check.kind.value}
                                        for ex in lesson.exercises]}
                         for lesson in course.lessons]}
            for course in self.library.catalog.courses]})
