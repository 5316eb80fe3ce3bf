"""Catalog and lesson pages, and the lesson list as JSON.

What every anonymous visitor sees is rendered once per TTL across all processes
(server.cache) and answered with an ETag; a shared cache (CDN) may keep it when the
request carried no identity. A learner's own view (progress, saved code, locks) is
rendered per request, marked private, and never stored in a shared cache.
"""
from __future__ import annotations

import json
import time

import tornado.web

from server.learning import access, progress_view
from server.learning.access import Lock
from server.cache import keys
from server.cache.cache import Cache, Computed
from server.cache.freshness import Entry
from server.handlers.base import BaseHandler, Common
from server.library import Shelf
from server.store import grants, progress, subscriptions

PRIVATE = "private, no-cache"


class CachedAnswers(BaseHandler):
    """Answers from the cache, with the HTTP caching headers that fit who asked."""

    def initialize(self, common: Common, library: Shelf, cache: Cache | None = None) -> None:
        super().initialize(common)
        self.library = library.current     # one library for the whole request, even mid-reload
        self.cache = cache

    def public_cache_control(self) -> str:
        ttl, grace = self.common.settings.cache_ttl, self.common.settings.cache_grace
        return f"public, max-age=0, s-maxage={ttl:.0f}, stale-while-revalidate={grace:.0f}"

    def answer(self, entry: Entry, content_type: str, *, shared: bool) -> None:
        """The cached bytes, or 304 when the client has them; `shared` allows a CDN to keep them."""
        self.set_status(entry.status)
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", self.public_cache_control() if shared else PRIVATE)
        self.set_header("Etag", entry.etag)
        if entry.status == 200 and self.check_etag_header():
            self.set_status(304)
            self.finish()
            return
        self.finish(entry.value)


class LearnerPage(CachedAnswers):
    progress_rows: list = []

    async def learner_state(self) -> tuple[dict, bool, bool]:
        """(exercise statuses, subscribed, is admin) of the visitor; empty for a new visitor."""
        user = self.user or await self.load_user()
        if user is None or not self.persisted:
            return {}, False, False
        rows = await progress.get_for_user(self.common.engine, user.id)
        self.progress_rows = rows
        sub = await subscriptions.get(self.common.engine, user.id)
        grant = await grants.get(self.common.engine, user.id)
        now = time.time()
        subscribed = access.paid_access(sub is not None and access.subscribed(
            sub.status, sub.current_period_start, sub.updated_at, now,
            self.settings_.billing_grace_days), grant and grant.until, now)
        return progress_view.statuses_of(rows), subscribed, user.is_admin

    async def lesson_state(self, lesson) -> progress_view.LessonState:
        """The visitor's view of one lesson: its lock and how much of it has passed."""
        statuses, subscribed, is_admin = await self.learner_state()
        completed = progress_view.completed_lessons(self.library.catalog, statuses)
        return progress_view.lesson_state(lesson, statuses, completed, subscribed, is_admin)

    async def has_own_state(self) -> bool:
        """Whether this visitor's view can differ from an anonymous one (a learner with a row)."""
        return await self.load_user() is not None and self.persisted

    def vary_on_identity(self) -> None:
        self.set_header("Vary", "Cookie")


class CatalogHandler(LearnerPage):
    route = "catalog"

    async def get(self) -> None:
        self.vary_on_identity()
        if not await self.has_own_state():
            entry = await self.cache.get(keys.CATALOG, "anonymous", self.render_anonymous)
            self.answer(entry, "text/html; charset=UTF-8", shared=not self.has_identity())
            return
        statuses, subscribed, is_admin = await self.learner_state()
        courses = progress_view.catalog_state(self.library.catalog, statuses, subscribed, is_admin)
        self.set_header("Cache-Control", PRIVATE)
        self.render("catalog.html", courses=courses)

    async def render_anonymous(self) -> Computed:
        courses = progress_view.catalog_state(self.library.catalog, {}, False, False)
        return Computed(self.application.shared_pages.render("catalog.html", courses=courses))


class LessonHandler(LearnerPage):
    route = "lesson"

    async def get(self, slug: str) -> None:
        self.vary_on_identity()
        library = self.library if self.settings_.dev else None
        if library is not None and slug in library.problems and library.catalog.lesson(slug) is None:
            # `serve --dev`: the author sees why the lesson is left out, where it would be
            self.set_header("Cache-Control", "no-store")
            self.render("lesson_problems.html", slug=slug, errors=library.problems[slug],
                        version=library.versions.get(slug, ""))
            return
        if not await self.has_own_state():
            entry = await self.cache.get(keys.LESSON, slug, lambda: self.render_anonymous(slug))
            if entry.negative:
                raise tornado.web.HTTPError(404, f"There is no lesson called {slug!r}.")
            lesson = self.library.catalog.lesson(slug)
            if lesson is None:   # another process's answer, from a course this one lacks
                raise tornado.web.HTTPError(404, f"There is no lesson called {slug!r}.")
            # A new visitor's identity comes with the lesson's socket (its handshake sets the
            # cookie), so the page is the same bytes for every newcomer: shared caches keep it,
            # and a live event's spike of new visitors costs no signing here.
            self.answer(entry, "text/html; charset=UTF-8", shared=not self.has_identity())
            return
        lesson = self.library.catalog.lesson(slug)
        if lesson is None:
            raise tornado.web.HTTPError(404, f"There is no lesson called {slug!r}.")
        state = await self.lesson_state(lesson)
        self.set_header("Cache-Control", PRIVATE)
        self.set_status(lock_status(state))
        self.render("lesson.html", **self.page_args(lesson, state))

    async def render_anonymous(self, slug: str) -> Computed:
        lesson = self.library.catalog.lesson(slug)
        if lesson is None:
            return Computed(b"", 404, negative=True)
        completed = progress_view.completed_lessons(self.library.catalog, {})
        state = progress_view.lesson_state(lesson, {}, completed, False, False)
        return Computed(self.application.shared_pages.render("lesson.html",
                                                             **self.page_args(lesson, state)),
                        lock_status(state))

    def page_args(self, lesson, state: progress_view.LessonState) -> dict:
        catalog = self.library.catalog
        course = catalog.course_of(lesson.slug)
        return dict(lesson=lesson, course=course, state=state,
                    titles={l.slug: l.title for c in catalog.courses for l in c.lessons},
                    body=self.library.bodies[lesson.slug] if state.access.open else "",
                    saved=_saved_work(self.progress_rows, lesson) if state.access.open else {},
                    next_lesson=_next_lesson(course, lesson.slug),
                    billing_configured=self.settings_.billing_configured,
                    version=self.library.versions.get(lesson.slug, "") if self.settings_.dev else "")


def lock_status(state: progress_view.LessonState) -> int:
    if state.access.open:
        return 200
    return 403 if state.access.lock is Lock.PREREQUISITES else 402


def _saved_work(rows, lesson) -> dict:
    """Each exercise's status, attempts and last submitted code, for the page's editors."""
    ids = {exercise.id for exercise in lesson.exercises}
    shown = {exercise.id: exercise.solution for exercise in lesson.exercises}
    return {row.exercise_id: {"status": row.status.value,
                              "attempts": row.attempts, "code": row.code,
                              # a solution once shown (reveal=N) stays shown
                              **({"solution": shown[row.exercise_id]} if row.solution_shown_at else {})}
            for row in rows if row.lesson_slug == lesson.slug and row.exercise_id in ids}


def _next_lesson(course, slug: str):
    lessons = list(course.lessons)
    index = next(i for i, lesson in enumerate(lessons) if lesson.slug == slug)
    return lessons[index + 1] if index + 1 < len(lessons) else None


class LessonsApiHandler(CachedAnswers):
    """The same for everyone: public, whoever asks."""
    route = "api_lessons"

    async def get(self) -> None:
        entry = await self.cache.get(keys.LESSONS_API, "all", self.render)
        self.answer(entry, "application/json; charset=utf-8", shared=True)

    async def render(self) -> Computed:
        return Computed(json.dumps({"courses": [
            {"slug": course.slug, "title": course.title, "description": course.description,
             "lessons": [{"slug": lesson.slug, "title": lesson.title, "url": f"/lessons/{lesson.slug}",
                          "access": "paid" if lesson.paid else "free", "kernel": lesson.kernel,
                          "order": lesson.order, "prerequisites": list(lesson.prerequisites),
                          "exercises": [{"id": ex.id, "title": ex.title, "check": ex.check.kind.value}
                                        for ex in lesson.exercises]}
                         for lesson in course.lessons]}
            for course in self.library.catalog.courses]}, default=str).encode())
