"""The course authors' pages: every lesson's learners and pass rate, and one lesson's exercises,
errors and funnel (`/admin/learning`, `/admin/learning/{slug}`). Admin only."""
from __future__ import annotations

import tornado.web

from server.accounts.limiter import CredentialLimiter
from server.admin import display, figures, learning, overview
from server.cache.cache import Cache
from server.handlers.admin_pages import AdminPage
from server.handlers.base import Common
from server.library import Shelf


class LearningPage(AdminPage):
    def initialize(self, common: Common, api_token: str | None, limiter: CredentialLimiter,
                   library: Shelf, figures_cache: Cache) -> None:
        super().initialize(common, api_token, limiter)
        self.library = library
        self.figures_cache = figures_cache

    def helpers(self) -> dict:
        return {**display.HELPERS, "percent": overview.percent, "seconds": seconds}


class LessonsIndex(LearningPage):
    async def get(self) -> None:
        await self.require_admin()
        buckets = await figures.lesson_buckets(self.figures_cache, self.common.engine)
        courses = [(course, learning.lesson_stats(
            buckets.value, [(lesson.slug, lesson.title, len(lesson.exercises))
                            for lesson in course.lessons]))
            for course in self.library.catalog.courses]
        self.render("admin_learning.html", courses=courses,
                    counted_at=buckets.computed_at.isoformat(), **self.helpers())


class LessonReportPage(LearningPage):
    async def get(self, slug: str) -> None:
        await self.require_admin()
        lesson = next((lesson for course in self.library.catalog.courses
                       for lesson in course.lessons if lesson.slug == slug), None)
        if lesson is None:
            raise tornado.web.HTTPError(404, f"There is no lesson {slug!r} in the course.")
        report = await learning.lesson_report(self.common.engine, slug,
                                              [(e.id, e.title) for e in lesson.exercises])
        self.render("admin_lesson_learning.html", lesson=lesson, report=report, **self.helpers())


def seconds(value: float | None) -> str:
    """A time to pass as people say it: 40 s, 3.5 min, 2.1 h; "-" when nobody passed."""
    if value is None:
        return display.MISSING
    if value < 90:
        return f"{value:.0f} s"
    if value < 90 * 60:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def routes(common: Common, api_token: str | None, limiter: CredentialLimiter,
           library: Shelf, figures_cache: Cache) -> list[tuple]:
    deps = {"common": common, "api_token": api_token, "limiter": limiter, "library": library,
            "figures_cache": figures_cache}
    return [(r"/admin/learning", LessonsIndex, deps),
            (r"/admin/learning/([A-Za-z0-9_-]+)", LessonReportPage, deps)]
