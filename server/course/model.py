"""The course as frozen values: what the parser makes and everyone else reads. No I/O."""
from __future__ import annotations

import dataclasses
import enum
import functools


class LessonError(Exception):
    """A lesson file that cannot be served, named as `path:line: message` for editors to jump to."""

    def __init__(self, path: str, line: int | None, message: str, hint: str | None = None) -> None:
        self.path = path
        self.line = line
        self.message = message
        self.hint = hint             # how to fix it, when there is a likely fix ("did you mean ...?")
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}" + (f" ({hint})" if hint else ""))

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "message": self.message, "hint": self.hint}


class CheckKind(str, enum.Enum):
    OUTPUT = "output"   # stdout must equal `expected` (trailing whitespace ignored)
    TESTS = "tests"     # hidden `code` runs after the learner's; passes when it raises nothing


@dataclasses.dataclass(frozen=True)
class Check:
    kind: CheckKind
    expected: str | None = None
    code: str | None = None


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The host's ceilings for an exercise's own limits (LS_RUN_TIMEOUT, LS_MEMORY_MB): a lesson
    asking for more is refused with its file and line, never silently given less."""
    timeout: float = 10.0
    memory_mb: int = 256

    @classmethod
    def of(cls, settings) -> "Bounds":
        """From the server's Settings (or anything with run_timeout and memory_mb)."""
        return cls(timeout=settings.run_timeout, memory_mb=settings.memory_mb)


@dataclasses.dataclass(frozen=True)
class ExerciseSettings:
    """An exercise's own limits and solution rule, from its fence or the lesson's front matter."""
    timeout: float | None = None       # seconds per run; None: the host's
    memory_mb: int | None = None       # MiB; None: the host's
    reveal_after: int | None = None    # failed attempts after which the solution may be shown

    def over(self, defaults: "ExerciseSettings") -> "ExerciseSettings":
        """These settings, the lesson's defaults where this one says nothing."""
        return ExerciseSettings(*(mine if mine is not None else theirs for mine, theirs in
                                  zip(dataclasses.astuple(self), dataclasses.astuple(defaults))))


@dataclasses.dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    language: str
    starter: str
    check: Check
    setup: str = ""                  # hidden code run before the learner's
    hints: tuple[str, ...] = ()
    line: int = 0                    # 1-based line of the fence (cell number in a notebook)
    solution: str | None = None      # hidden reference solution, run by `lessons check --run`
    starter_passes: bool = False     # the untouched starter passes its check on purpose
    solution_line: int = 0           # line of the solution marker (cell number in a notebook)
    settings: ExerciseSettings = ExerciseSettings()


@dataclasses.dataclass(frozen=True)
class Example:
    """A code block of the prose marked `runnable`: the learner runs it as written, in the
    lesson's kernel, with its own output; no check, no attempt (the run is traced)."""
    id: str          # its position among the lesson's examples, from "1"
    language: str
    code: str
    line: int = 0


@dataclasses.dataclass(frozen=True)
class Lesson:
    slug: str
    title: str
    summary: str
    kernel: str
    paid: bool
    order: int
    prerequisites: tuple[str, ...]
    exercises: tuple[Exercise, ...]
    body: str                        # the Markdown source without its front matter
    path: str
    course: str
    examples: tuple[Example, ...] = ()

    def exercise(self, exercise_id: str) -> Exercise | None:
        return next((ex for ex in self.exercises if ex.id == exercise_id), None)

    def example(self, example_id: str) -> Example | None:
        return next((ex for ex in self.examples if ex.id == example_id), None)


@dataclasses.dataclass(frozen=True)
class Course:
    slug: str
    title: str
    description: str
    lessons: tuple[Lesson, ...]      # by order, then slug


@dataclasses.dataclass(frozen=True)
class Catalog:
    courses: tuple[Course, ...]
    errors: tuple[LessonError, ...] = ()
    # (slug, path) of each lesson file left out because of an error, so that `serve --dev`
    # can show the errors at the lesson's own address (the slug is the file's stem when
    # the front matter cannot tell it).
    left_out: tuple[tuple[str, str], ...] = ()

    # Pages look lessons up per request; the index is built once per catalog.
    @functools.cached_property
    def _by_slug(self) -> dict[str, tuple[Course, Lesson]]:
        return {lesson.slug: (course, lesson) for course in self.courses for lesson in course.lessons}

    def lesson(self, slug: str) -> Lesson | None:
        found = self._by_slug.get(slug)
        return found[1] if found else None

    def course_of(self, slug: str) -> Course | None:
        found = self._by_slug.get(slug)
        return found[0] if found else None

    def exercise(self, lesson_slug: str, exercise_id: str) -> Exercise | None:
        lesson = self.lesson(lesson_slug)
        return lesson.exercise(exercise_id) if lesson else None
