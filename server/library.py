"""The loaded course with each lesson body rendered once, at load time, not per request."""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from types import MappingProxyType

from server.course.model import Catalog, LessonError
from server.course.render import render_lesson


@dataclasses.dataclass(frozen=True)
class Library:
    catalog: Catalog
    bodies: Mapping[str, str]   # lesson slug -> sanitized HTML fragment
    # slug -> the errors of a lesson file left out (shown on its page by `serve --dev`)
    problems: Mapping[str, tuple[LessonError, ...]] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}))
    # slug -> a token that changes whenever what its page shows changes (dev reload)
    versions: Mapping[str, str] = dataclasses.field(default_factory=lambda: MappingProxyType({}))


def build_library(catalog: Catalog) -> Library:
    lessons = [lesson for course in catalog.courses for lesson in course.lessons]
    bodies = {lesson.slug: render_lesson(lesson) for lesson in lessons}
    problems: dict[str, tuple[LessonError, ...]] = {}
    for slug, path in catalog.left_out:
        if slug not in bodies:
            problems[slug] = problems.get(slug, ()) + tuple(e for e in catalog.errors if e.path == path)
    versions = {lesson.slug: _token(repr(lesson)) for lesson in lessons}
    versions.update({slug: _token("\n".join(map(str, errors))) for slug, errors in problems.items()})
    return Library(catalog, MappingProxyType(bodies), MappingProxyType(problems),
                   MappingProxyType(versions))


def _token(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class Shelf:
    """The library being served. Handlers read it through here, so that `serve --dev` can put
    a newly loaded library in its place in one assignment: a request sees the old or the new
    one, never a mix (read `current` once per step that needs both catalog and bodies)."""

    def __init__(self, library: Library) -> None:
        self.current = library

    def swap(self, library: Library) -> Library:
        old, self.current = self.current, library
        return old

    @property
    def catalog(self) -> Catalog:
        return self.current.catalog

    @property
    def bodies(self) -> Mapping[str, str]:
        return self.current.bodies

    @property
    def problems(self) -> Mapping[str, tuple[LessonError, ...]]:
        return self.current.problems

    @property
    def versions(self) -> Mapping[str, str]:
        return self.current.versions
