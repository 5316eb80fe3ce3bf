"""The loaded course with each lesson body rendered once, at load time, not per request."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from server.course.model import Catalog
from server.course.render import render_lesson


@dataclasses.dataclass(frozen=True)
class Library:
    catalog: Catalog
    bodies: Mapping[str, str]   # lesson slug -> sanitized HTML fragment


def build_library(catalog: Catalog) -> Library:
    bodies = {lesson.slug: render_lesson(lesson)
              for course in catalog.courses for lesson in course.lessons}
    return Library(catalog, MappingProxyType(bodies))


class Shelf:
    """The library served now. A reload (server/admin/operations.py) puts a new one in its
    place with one assignment; each request takes `current` once, so it sees one library."""

    def __init__(self, library: Library) -> None:
        self.current = library

    def swap(self, library: Library) -> Library:
        old, self.current = self.current, library
        return old
