"""A Jupyter notebook lesson -> Lesson plus every error in it; errors name the notebook
and "cell N" (a notebook has no lines an editor could jump to).

The header comes from the notebook metadata `lessonserver` (kernel from there or
from `kernelspec.name`, where Jupyter's `python3` means our `python`). Markdown
cells are prose; a code cell whose metadata has
`lessonserver: {exercise: <id>, title, check: output|tests, expected|tests, setup,
solution, starter: fails|passes, hints, timeout, memory, reveal}` is an exercise; other
code cells are plain code blocks in the body. timeout, memory and reveal mean what they
mean in a fence; in the notebook metadata they apply to every exercise, and a cell's own
win. `lessonserver lessons import` writes the notebook metadata.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

# nbformat imports jsonschema, which imports rfc3987_syntax when it is installed (Jupyter
# Server's extras bring it) and builds an IRI grammar at import: 3 s of CPU in every server
# start. No notebook field has an IRI format, so validation does not miss it.
sys.modules.setdefault("rfc3987_syntax", None)  # noqa: E402 - before nbformat's import
import nbformat  # noqa: E402

from server.course.model import Bounds, Exercise, Lesson, LessonError
from server.course.parse import (DOES_NOT_COMPILE, SETTING_KEYS, Parsed, check_id, default_title,
                                 exercise_settings, fences, first_or_raise, make_check,
                                 python_syntax_errors, read_header, resolve_kernel,
                                 runnable_examples, section_text, solution_rule, starter_passes,
                                 suggest)

CELL_KEYS = frozenset({"exercise", "title", "check", "expected", "tests", "setup", "solution",
                       "starter", "hints", *SETTING_KEYS})
WHERE = 'the notebook metadata under "lessonserver" (`lessonserver lessons import NOTEBOOK` writes it)'


def read_notebook(text: str, path: str, known_kernels: frozenset[str], course: str = "",
                  bounds: Bounds = Bounds()) -> Parsed:
    try:
        json.loads(text)
    except ValueError as exc:
        return Parsed(None, (LessonError(path, getattr(exc, "lineno", None), f"not a notebook: {exc}"),))
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises several kinds for a malformed notebook
        return Parsed(None, (LessonError(path, None, f"not a valid notebook: {_first_line(exc)}"),))
    errors: list[LessonError] = []

    def report(key: str | None, message: str, hint: str | None = None) -> None:
        errors.append(LessonError(path, None, f"metadata: {message}", hint))

    meta = nb.metadata.get("lessonserver")
    meta = dict(meta) if isinstance(meta, Mapping) else {} if meta is None else meta
    kernelspec = nb.metadata.get("kernelspec") or {}
    if isinstance(meta, dict) and "kernel" not in meta and kernelspec.get("name"):
        meta["kernel"] = kernelspec["name"]
    header = read_header(meta, PurePath(path).stem, known_kernels, report, WHERE, bounds)
    blocks: list[str] = []
    exercises: list[Exercise] = []
    kernel = meta.get("kernel") if isinstance(meta, dict) else None
    language = ((nb.metadata.get("language_info") or {}).get("name")
                or (resolve_kernel(kernel, known_kernels) if isinstance(kernel, str) else None) or "")
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "markdown":
            # An open fence would swallow every cell after it once the cells are joined.
            if not all(closed for _, closed in fences(cell.source)):
                errors.append(LessonError(path, None, f"cell {number}: a code block is never closed"))
            blocks.append(cell.source)
        elif cell.cell_type == "code":
            settings = cell.metadata.get("lessonserver")
            if settings is None:
                blocks.append(_fence(language, cell.source))
                continue
            problems: list[tuple[str, str | None]] = []
            exercise = _exercise(settings, cell.source, language, number, problems, bounds)
            if exercise is not None and any(ex.id == exercise.id for ex in exercises):
                problems.append((f"duplicate exercise id {exercise.id!r}", None))
            errors.extend(LessonError(path, None, f"cell {number}: {message}", hint)
                          for message, hint in problems)
            if exercise is None or problems:
                continue
            exercises.append(exercise)
            # Only the starter goes into the body: hidden parts stay in the Exercise.
            blocks.append(_fence(f"{language} exercise id={exercise.id}", exercise.starter))
    if errors or header is None:
        return Parsed(None, tuple(errors))
    # A cell's own limits and solution rule, the notebook metadata's where it says nothing.
    exercises = [dataclasses.replace(ex, settings=solution_rule(ex.settings.over(header.defaults),
                                                                ex.solution is not None))
                 for ex in exercises]
    body = "\n\n".join(blocks) + "\n"
    return Parsed(Lesson(slug=header.slug, title=header.title, summary=header.summary,
                         kernel=header.kernel, paid=header.paid, order=header.order,
                         prerequisites=header.prerequisites, exercises=tuple(exercises),
                         body=body, path=path, course=course, examples=runnable_examples(body)), ())


def parse_notebook(text: str, path: str, known_kernels: frozenset[str], course: str = "") -> Lesson:
    """The lesson, or its first error raised (read_notebook gives them all)."""
    return first_or_raise(read_notebook(text, path, known_kernels, course))


def _exercise(settings: Any, source: str, language: str, number: int,
              problems: list[tuple[str, str | None]], bounds: Bounds = Bounds()) -> Exercise | None:
    """One exercise cell (its `line` is the cell number); problems collects every error."""
    if not isinstance(settings, Mapping):
        problems.append(("metadata lessonserver must be a mapping", None))
        return None
    for key in sorted(set(settings) - CELL_KEYS):
        problems.append((f"unknown exercise key {key!r}",
                         suggest(key, CELL_KEYS) or f"known keys: {', '.join(sorted(CELL_KEYS))}"))
    values: dict[str, Any] = {}
    for key, rule in (("exercise", check_id), ("title", _title), ("starter", starter_passes),
                      ("hints", _hints), *((k, lambda v, k=k: _str(k, v)) for k in
                                           ("expected", "tests", "setup", "solution"))):
        try:
            values[key] = rule(settings.get(key))
        except ValueError as exc:
            problems.append((str(exc), None))
    check = None
    if "expected" in values and "tests" in values:
        try:
            check = make_check(values["expected"], values["tests"])
        except ValueError as exc:
            problems.append((str(exc), None))
    kind = settings.get("check")
    if check is not None and kind is not None and kind != check.kind.value:
        problems.append((f"check is {kind!r} but the cell gives "
                         f"{'tests' if check.code else 'an expected output'}", None))
    own, wrong = exercise_settings({k: settings[k] for k in SETTING_KEYS if k in settings}, bounds)
    problems.extend((message, None) for _, message in wrong)
    if own.reveal_after is not None and values.get("solution") is None:
        problems.append((f"reveal={own.reveal_after} shows the solution, but there is none",
                         'add "solution" to the cell\'s lessonserver metadata'))
    hidden = {part: values.get(part) or "" for part in ("setup", "tests", "solution")}
    for part, line, message in python_syntax_errors(language, hidden):
        problems.append((f"{DOES_NOT_COMPILE[part]}: line {line}: {message}", None))
    if problems or check is None:
        return None
    ex_id = settings["exercise"]
    solution = values.get("solution")
    return Exercise(id=ex_id, title=values["title"] or default_title(ex_id), language=language,
                    starter=section_text(source.splitlines()), check=check,
                    setup=section_text((values.get("setup") or "").splitlines()),
                    hints=values["hints"], line=number,
                    solution=section_text(solution.splitlines()) if solution is not None else None,
                    starter_passes=values["starter"],
                    solution_line=number if solution is not None else 0, settings=own)


def _title(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("title must be text")
    return value


def _hints(value: Any) -> tuple[str, ...]:
    hints = value or []
    if isinstance(hints, str):
        hints = [hints]
    if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
        raise ValueError("hints must be a list of texts")
    return tuple(h for h in hints if h.strip())


def _str(key: str, value: Any) -> str | None:
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
