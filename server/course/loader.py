"""Read a lessons folder into a Catalog: every file parsed, every error kept, nothing raised.

Layout: <root>/<course-slug>/course.yaml (title, description, order) and the
course's lessons as <root>/<course-slug>/*.md and *.ipynb; a root with its own
course.yaml, or with lesson files of its own, is a course folder too (a folder of
loose lessons without course.yaml is a course titled after the folder). README.md
files are the authors' notes, not lessons. A broken lesson is left out with all
its errors; so is every lesson that needs it, one error each.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from server.course.model import Bounds, Catalog, Course, Lesson, LessonError
from server.course.notebook import read_notebook
from server.course.parse import front_matter, read_lesson, suggest

PARSERS = {".md": read_lesson, ".ipynb": read_notebook}
NOT_LESSONS = frozenset({"readme.md"})
COURSE_KEYS = frozenset({"title", "description", "order"})


def lesson_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.suffix in PARSERS and p.is_file() and p.name.lower() not in NOT_LESSONS)


@dataclasses.dataclass(frozen=True)
class _CourseHeader:
    slug: str
    title: str
    description: str
    order: int


def load_catalog(root: str | Path, known_kernels: frozenset[str], bounds: Bounds = Bounds()) -> Catalog:
    """`bounds`: the host's ceilings for an exercise's own limits."""
    root = Path(root)
    errors: list[LessonError] = []
    headers: list[_CourseHeader] = []
    lessons: list[Lesson] = []
    texts: dict[str, str] = {}
    failed: set[str] = set()   # stems of files that did not parse: most likely their slugs
    left_out: list[tuple[str, str]] = []
    for folder in _course_folders(root):
        files = lesson_files(folder)
        if not files and not (folder / "course.yaml").exists():
            continue  # not a course folder (assets, caches)
        try:
            headers.append(_course_header(folder))
        except LessonError as exc:
            errors.append(exc)
            continue
        for file in files:
            path = str(file)
            try:
                texts[path] = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                errors.append(LessonError(path, None, f"cannot read: {exc}"))
                failed.add(file.stem)
                left_out.append((file.stem, path))
                continue
            parsed = PARSERS[file.suffix](texts[path], path, known_kernels, headers[-1].slug, bounds)
            errors.extend(parsed.errors)
            if parsed.lesson is None:
                failed.add(file.stem)
                left_out.append((_slug_of(texts[path], file), path))
            else:
                lessons.append(parsed.lesson)
    kept, cross = _cross_checks(lessons, texts, failed)
    errors.extend(cross)
    kept_paths = {lesson.path for lesson in kept}
    left_out.extend((l.slug, l.path) for l in lessons if l.path not in kept_paths)
    courses = tuple(
        Course(h.slug, h.title, h.description,
               tuple(sorted((l for l in kept if l.course == h.slug), key=lambda l: (l.order, l.slug))))
        for h in sorted(headers, key=lambda h: (h.order, h.slug)))
    return Catalog(courses, tuple(errors), tuple(left_out))


def _slug_of(text: str, file: Path) -> str:
    """The slug a broken lesson file asks for: its front matter's, else its stem."""
    if file.suffix == ".md":
        try:
            data = front_matter(text, str(file)).data
        except LessonError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("slug"), str):
            return data["slug"]
    return file.stem


def _course_folders(root: Path) -> list[Path]:
    """The course folders under root; root itself when it is one course (has a course.yaml),
    and besides its subfolders when it holds loose lessons."""
    if (root / "course.yaml").is_file():
        return [root]
    own = [root] if lesson_files(root) else []
    return own + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _course_header(folder: Path) -> _CourseHeader:
    path = folder / "course.yaml"
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except FileNotFoundError:   # loose lessons: a course of their own, named after the folder
        name = folder.resolve().name
        return _CourseHeader(name, name.replace("-", " ").replace("_", " ").capitalize(), "", 0)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise LessonError(str(path), mark.line + 1 if mark else None,
                          f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("title"), str):
        raise LessonError(str(path), 1, "course.yaml needs at least `title: ...`")
    unknown = sorted(str(key) for key in data if key not in COURSE_KEYS)
    if unknown:
        line = next((n for n, row in enumerate(text.splitlines(), 1) if row.startswith(unknown[0])), 1)
        raise LessonError(str(path), line, f"unknown key {unknown[0]!r} in course.yaml",
                          suggest(unknown[0], COURSE_KEYS)
                          or f"known keys: {', '.join(sorted(COURSE_KEYS))}")
    order = data.get("order", 0)
    if isinstance(order, bool) or not isinstance(order, int):
        raise LessonError(str(path), 1, f"bad order {order!r}: it must be a whole number")
    return _CourseHeader(folder.resolve().name, data["title"].strip(),
                         str(data.get("description") or "").strip(), order)


def _cross_checks(lessons: list[Lesson], texts: dict[str, str],
                  failed: set[str]) -> tuple[list[Lesson], list[LessonError]]:
    """Drop duplicate slugs, then lessons whose prerequisites are unknown, left out or cyclic."""
    left_out = failed | {lesson.slug for lesson in lessons}
    errors: list[LessonError] = []
    kept: dict[str, Lesson] = {}
    for lesson in sorted(lessons, key=lambda l: l.path):
        if lesson.slug in kept:
            errors.append(_header_error(lesson, texts, "slug", None,
                                        f"duplicate slug {lesson.slug!r}: {kept[lesson.slug].path} has it too"))
        else:
            kept[lesson.slug] = lesson
    while True:
        dropped = _missing_prerequisites(kept, left_out, texts) or _cycles(kept, texts)
        if not dropped:
            return sorted(kept.values(), key=lambda l: l.path), errors
        for slug, error in dropped.items():
            kept.pop(slug)
            errors.append(error)


def _missing_prerequisites(kept: dict[str, Lesson], left_out: set[str],
                           texts: dict[str, str]) -> dict[str, LessonError]:
    dropped = {}
    for lesson in kept.values():
        for needed in lesson.prerequisites:
            if needed in kept:
                continue
            reason = (f"prerequisite {needed!r} was left out because of its own error" if needed in left_out
                      else f"unknown prerequisite {needed!r}")
            dropped[lesson.slug] = _header_error(lesson, texts, "prerequisites", needed, reason)
            break
    return dropped


def _cycles(kept: dict[str, Lesson], texts: dict[str, str]) -> dict[str, LessonError]:
    """Every lesson on a prerequisite cycle, each with the cycle spelled out."""
    dropped = {}
    for start in sorted(kept):
        path = _cycle_from(start, kept)
        if path:
            dropped[start] = _header_error(kept[start], texts, "prerequisites", path[1],
                                           "prerequisite cycle: " + " -> ".join(path))
    return dropped


def _cycle_from(start: str, kept: dict[str, Lesson]) -> list[str] | None:
    """A path start -> ... -> start through prerequisites, if there is one (depth first)."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        slug, path = stack.pop()
        for needed in kept[slug].prerequisites:
            if needed == start:
                return path + [start]
            if needed in kept and needed not in seen:
                seen.add(needed)
                stack.append((needed, path + [needed]))
    return None


def _header_error(lesson: Lesson, texts: dict[str, str], key: str, item: str | None,
                  message: str) -> LessonError:
    """An error at the front-matter line of `key` (or of its list item); notebooks have no lines."""
    text = texts.get(lesson.path, "")
    if not lesson.path.endswith(".md"):
        return LessonError(lesson.path, None, f"metadata: {message}")
    front = front_matter(text, lesson.path)
    line = front.item_lines.get((key, item)) if item is not None else None
    return LessonError(lesson.path, line or front.key_lines.get(key, 1), message)
