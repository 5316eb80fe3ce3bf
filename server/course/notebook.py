"""A Jupyter notebook lesson -> Lesson; errors name the notebook and "cell N".

The header comes from the notebook metadata `lessonserver` (kernel from there or
from `kernelspec.name`). Markdown cells are prose; a code cell whose metadata has
`lessonserver: {exercise: <id>, title, check: output|tests, expected|tests, setup, hints}`
is an exercise; other code cells are plain code blocks in the body.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import nbformat

from server.course.model import Exercise, Lesson, LessonError
from server.course.parse import check_id, default_title, fences, make_check, read_header, section_text

CELL_KEYS = frozenset({"exercise", "title", "check", "expected", "tests", "setup", "hints"})


def parse_notebook(text: str, path: str, known_kernels: frozenset[str], course: str = "") -> Lesson:
    try:
        json.loads(text)
    except ValueError as exc:
        raise LessonError(path, getattr(exc, "lineno", None), f"not a notebook: {exc}") from None
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises several kinds for a malformed notebook
        raise LessonError(path, None, f"not a valid notebook: {_first_line(exc)}") from None
    meta = dict(nb.metadata.get("lessonserver") or {})
    kernelspec = nb.metadata.get("kernelspec") or {}
    if "kernel" not in meta and kernelspec.get("name"):
        meta["kernel"] = kernelspec["name"]
    header = read_header(meta, PurePath(path).stem, known_kernels,
                         lambda key, message: LessonError(path, None, f"metadata: {message}"))
    blocks: list[str] = []
    exercises: list[Exercise] = []
    language = (nb.metadata.get("language_info") or {}).get("name") or header.kernel
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "markdown":
            # An open fence would swallow every cell after it once the cells are joined.
            if not all(closed for _, closed in fences(cell.source)):
                raise LessonError(path, None, f"cell {number}: a code block is never closed")
            blocks.append(cell.source)
        elif cell.cell_type == "code":
            settings = cell.metadata.get("lessonserver")
            if settings is None:
                blocks.append(_fence(language, cell.source))
                continue
            try:
                exercise = _exercise(settings, cell.source, language, number)
            except ValueError as exc:
                raise LessonError(path, None, f"cell {number}: {exc}") from None
            if any(ex.id == exercise.id for ex in exercises):
                raise LessonError(path, None, f"cell {number}: duplicate exercise id {exercise.id!r}")
            exercises.append(exercise)
            # Only the starter goes into the body: hidden parts stay in the Exercise.
            blocks.append(_fence(f"{language} exercise id={exercise.id}", exercise.starter))
    return Lesson(slug=header.slug, title=header.title, summary=header.summary, kernel=header.kernel,
                  paid=header.paid, order=header.order, prerequisites=header.prerequisites,
                  exercises=tuple(exercises), body="\n\n".join(blocks) + "\n", path=path,
                  course=course)


def _exercise(settings: Any, source: str, language: str, number: int) -> Exercise:
    """One exercise cell; its `line` is the cell number."""
    if not isinstance(settings, Mapping):
        raise ValueError("metadata lessonserver must be a mapping")
    unknown = sorted(set(settings) - CELL_KEYS)
    if unknown:
        raise ValueError(f"unknown exercise key {unknown[0]!r} (known: {', '.join(sorted(CELL_KEYS))})")
    ex_id = settings.get("exercise")
    check_id(ex_id)
    check = make_check(_str(settings, "expected"), _str(settings, "tests"))
    kind = settings.get("check", check.kind.value)
    if kind != check.kind.value:
        raise ValueError(f"check is {kind!r} but the cell gives "
                         f"{'tests' if check.code else 'an expected output'}")
    hints = settings.get("hints") or []
    if isinstance(hints, str):
        hints = [hints]
    if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
        raise ValueError("hints must be a list of texts")
    title = settings.get("title") or default_title(ex_id)
    if not isinstance(title, str):
        raise ValueError("title must be text")
    return Exercise(id=ex_id, title=title, language=language,
                    starter=section_text(source.splitlines()), check=check,
                    setup=section_text((_str(settings, "setup") or "").splitlines()),
                    hints=tuple(h for h in hints if h.strip()),
                    line=number)


def _str(settings: Mapping[str, Any], key: str) -> str | None:
    value = settings.get(key)
    if value is None:
        return None
    if isinstance(value, list):  # notebook style: a list of lines
        value = "".join(value)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text")
    return value


def _fence(info: str, code: str) -> str:
    """A fence long enough that backticks inside the code cannot close it."""
    longest = max((len(run) for run in code.split("\n") if run.strip("`") == "" and run), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{code.rstrip()}\n{ticks}"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
