"""What `lessonserver lessons check PATH...` finds: every lesson under files and folders,
and every error, read the way the server reads its lessons folder (loader.load_catalog)."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

from server.course.loader import PARSERS, load_catalog
from server.course.model import Bounds, Catalog, Lesson, LessonError


@dataclasses.dataclass(frozen=True)
class CheckResult:
    lessons: tuple[Lesson, ...]
    courses: int
    errors: tuple[LessonError, ...]

    def to_json(self) -> dict[str, object]:
        return {"lessons": len(self.lessons), "courses": self.courses,
                "exercises": sum(len(lesson.exercises) for lesson in self.lessons),
                "errors": [error.to_json() for error in self.errors]}


def check_paths(paths: Iterable[Path], known_kernels: frozenset[str],
                bounds: Bounds = Bounds()) -> CheckResult:
    """A folder is read as the server reads LS_LESSONS_DIR; a file is read with its course
    folder (so its prerequisites resolve) and only its own errors and its course's are kept."""
    lessons: dict[str, Lesson] = {}
    courses: set[tuple[str, str]] = set()
    errors: list[LessonError] = []
    for path in paths:
        if path.is_dir():
            catalog = load_catalog(path, known_kernels, bounds)
            keep = None
        elif path.suffix not in PARSERS:
            errors.append(LessonError(str(path), None, "not a lesson file: lessons end in "
                                      + " or ".join(sorted(PARSERS))))
            continue
        else:
            catalog = load_catalog(path.parent, known_kernels, bounds)
            keep = {str(path.parent / path.name), str(path.parent / "course.yaml")}
        _collect(catalog, keep, lessons, courses, errors)
    if not lessons and not errors:
        errors.append(LessonError(", ".join(map(str, paths)) or ".", None,
                                  "no lessons found: a lesson is a .md file with front matter "
                                  "or a .ipynb notebook (see lessons/README.md)"))
    return CheckResult(tuple(lessons.values()), len(courses),
                       tuple({str(error): error for error in errors}.values()))


def _collect(catalog: Catalog, keep: set[str] | None, lessons: dict[str, Lesson],
             courses: set[tuple[str, str]], errors: list[LessonError]) -> None:
    for course in catalog.courses:
        for lesson in course.lessons:
            if keep is None or lesson.path in keep:
                lessons[lesson.path] = lesson
                courses.add((str(Path(lesson.path).parent.resolve()), course.slug))
    errors.extend(e for e in catalog.errors if keep is None or e.path in keep)
