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
