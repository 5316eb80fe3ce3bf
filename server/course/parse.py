"""A Markdown lesson -> Lesson, or a LessonError naming the file and the 1-based line.

Format: YAML front matter between `---` lines, then Markdown. A fenced block whose
info string is `<language> exercise id=<id> [title="..."]` is an exercise; inside
it the starter code comes first, then marker lines (`# --- setup ---`,
`# --- expected output ---` or `# --- tests ---`, `# --- hint ---`; `-- ---` works
as the prefix too, for SQL) open the hidden sections.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePath
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from server.course.model import Check, CheckKind, Exercise, Lesson, LessonError

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")
HEADER_KEYS = frozenset({"title", "slug", "order", "kernel", "access", "prerequisites", "summary"})
ACCESS = ("free", "paid")
SECTIONS = ("setup", "expected output", "tests", "hint")
MARKER = re.compile(r"^\s*(?:#|--) --- (" + "|".join(SECTIONS) + r") ---\s*$")
EXERCISE_KEYS = frozenset({"id", "title"})
BOTH_CHECKS = "exercise has both an expected output and tests: keep one check"

# A failure for one header key: the caller decides how to say where it is.
Fail = Callable[[str | None, str], LessonError]


@dataclasses.dataclass(frozen=True)
class Header:
    title: str
    slug: str
    order: int
    kernel: str
    paid: bool
    prerequisites: tuple[str, ...]
    summary: str


@dataclasses.dataclass(frozen=True)
class FrontMatter:
    data: Any                          # what the YAML says (validated by read_header)
    key_lines: Mapping[str, int]       # header key -> 1-based line in the file
    item_lines: Mapping[tuple[str, str], int]  # (key, list item) -> line
    body_start: int                    # 0-based index of the first body line


@dataclasses.dataclass(frozen=True)
class ExerciseInfo:
    language: str
    id: str
    title: str


def parse_lesson(text: str, path: str, known_kernels: frozenset[str], course: str = "") -> Lesson:
    front = front_matter(text, path)
    header = read_header(front.data, PurePath(path).stem, known_kernels,
                         lambda key, message: LessonError(path, front.key_lines.get(key, 1), message))
    lines = text.splitlines()
    body = "\n".join(lines[front.body_start:]) + ("\n" if front.body_start < len(lines) else "")
    exercises = _exercises(body, front.body_start, path)
    return Lesson(slug=header.slug, title=header.title, summary=header.summary, kernel=header.kernel,
                  paid=header.paid, order=header.order, prerequisites=header.prerequisites,
                  exercises=exercises, body=body, path=path, course=course)


def front_matter(text: str, path: str) -> FrontMatter:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        raise LessonError(path, 1, "a lesson starts with front matter: a `---` line, "
                                   "YAML (title, kernel, ...), and another `---` line")
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        raise LessonError(path, 1, "front matter is not closed: no `---` line after it")
    loader = yaml.SafeLoader("\n".join(lines[1:end]))
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 2 if mark is not None else 1
        raise LessonError(path, line, f"front matter is not valid YAML: "
                                      f"{getattr(exc, 'problem', None) or exc}") from None
    finally:
        loader.dispose()
    key_lines: dict[str, int] = {}
    item_lines: dict[tuple[str, str], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            key_lines[key] = key_node.start_mark.line + 2
            if isinstance(value_node, yaml.SequenceNode):
                for item in value_node.value:
                    item_lines.setdefault((key, str(item.value)), item.start_mark.line + 2)
    return FrontMatter(data, key_lines, item_lines, end + 1)


def read_header(data: Any, stem: str, known_kernels: frozenset[str], fail: Fail) -> Header:
    """Validate the header keys, shared by Markdown front matter and notebook metadata."""
    if not isinstance(data, Mapping):
        raise fail(None, "front matter must be a YAML mapping (key: value lines)")
    unknown = sorted(str(key) for key in data if key not in HEADER_KEYS)
    if unknown:
        raise fail(unknown[0], f"unknown key {unknown[0]!r} (known: {', '.join(sorted(HEADER_KEYS))})")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise fail("title", "missing title: every lesson needs `title: ...`")
    kernel = data.get("kernel")
    if not isinstance(kernel, str) or not kernel:
        raise fail("kernel", "missing kernel: every lesson needs `kernel: <name>`")
    if kernel not in known_kernels:
        raise fail("kernel", f"unknown kernel {kernel!r} (known: {', '.join(sorted(known_kernels))})")
    slug = data.get("slug", stem)
    if not isinstance(slug, str) or not ID_PATTERN.fullmatch(slug):
        raise fail("slug", f"bad slug {slug!r}: use lowercase letters, digits and dashes")
    order = data.get("order", 0)
    if isinstance(order, bool) or not isinstance(order, int):
        raise fail("order", f"bad order {order!r}: it must be a whole number")
    access = data.get("access", "free")
    if access not in ACCESS:
        raise fail("access", f"bad access {access!r}: it must be free or paid")
    prerequisites = data.get("prerequisites") or []
    if not isinstance(prerequisites, list) or not all(isinstance(p, str) for p in prerequisites):
        raise fail("prerequisites", "prerequisites must be a list of lesson slugs")
    summary = data.get("summary") or ""
    if not isinstance(summary, str):
        raise fail("summary", "summary must be text")
    return Header(title=title.strip(), slug=slug, order=order, kernel=kernel, paid=access == "paid",
                  prerequisites=tuple(prerequisites), summary=summary.strip())


def exercise_info(info: str) -> ExerciseInfo | None:
    """The exercise named by a fence's info string, None for a plain code block.
    Raises ValueError for an info string that tries to be an exercise but is malformed."""
    words = info.split(None, 1)
    if len(words) < 2 or not words[1].startswith("exercise"):
        return None
    try:
        parts = shlex.split(words[1])
    except ValueError as exc:
        raise ValueError(f"bad exercise info string {info!r}: {exc}") from None
    if parts[0] != "exercise":
        raise ValueError(f"bad exercise info string {info!r}: write `{words[0]} exercise id=<id>`")
    fields = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or key not in EXERCISE_KEYS:
            raise ValueError(f"bad exercise field {part!r}: use id=<id> and title=\"...\"")
        fields[key] = value
    ex_id = fields.get("id", "")
    check_id(ex_id)
    return ExerciseInfo(words[0], ex_id, fields.get("title") or default_title(ex_id))


def default_title(ex_id: str) -> str:
    return ex_id.replace("-", " ").capitalize()


def check_id(ex_id: object) -> None:
    if not isinstance(ex_id, str) or not ID_PATTERN.fullmatch(ex_id):
        raise ValueError(f"bad exercise id {ex_id!r}: use lowercase letters, digits and dashes, "
                         "starting with a letter or digit")


def make_check(expected: str | None, tests: str | None) -> Check:
    """The one check an exercise has; ValueError when it has none or both."""
    if expected is not None and tests is not None:
        raise ValueError(BOTH_CHECKS)
    if expected is None and tests is None:
        raise ValueError("exercise has no check: add `# --- expected output ---` or `# --- tests ---`")
    if expected is not None:
        if not expected.strip():
            raise ValueError("expected output is empty")
        return Check(CheckKind.OUTPUT, expected=expected)
    if not tests.strip():
        raise ValueError("tests section is empty")
    return Check(CheckKind.TESTS, code=tests)


def fences(markdown: str) -> Iterator[tuple[Token, bool]]:
    """The fenced code blocks of a Markdown text, each with whether it is really closed:
    markdown-it closes a fence at the end of the document silently; a real close is a
    last line of at least as many of the same fence characters."""
    lines = markdown.splitlines()
    for token in MarkdownIt("commonmark").parse(markdown):
        if token.type != "fence" or token.map is None:
            continue
        start, end = token.map
        last = lines[end - 1].lstrip(" >").rstrip() if end - start >= 2 else ""
        yield token, len(last) >= len(token.markup) and set(last) == {token.markup[0]}


def _exercises(body: str, offset: int, path: str) -> tuple[Exercise, ...]:
    exercises: list[Exercise] = []
    seen: set[str] = set()
    for token, closed in fences(body):
        line = offset + token.map[0] + 1
        if not closed:
            raise LessonError(path, line, f"code block opened here is never closed with {token.markup}")
        try:
            info = exercise_info(token.info)
        except ValueError as exc:
            raise LessonError(path, line, str(exc)) from None
        if info is None:
            continue
        if info.id in seen:
            raise LessonError(path, line, f"duplicate exercise id {info.id!r}")
        seen.add(info.id)
        exercises.append(_exercise(info, token.content, line, path))
    return tuple(exercises)


def _exercise(info: ExerciseInfo, content: str, fence_line: int, path: str) -> Exercise:
    sections: dict[str, list[str]] = {"starter": []}
    hints: list[list[str]] = []
    current = sections["starter"]
    for number, text in enumerate(content.splitlines(), start=fence_line + 1):
        marker = MARKER.match(text)
        if marker is None:
            current.append(text)
            continue
        name = marker.group(1)
        if name == "hint":
            hints.append([])
            current = hints[-1]
            continue
        if name in sections:
            raise LessonError(path, number, f"section {name!r} appears twice in exercise {info.id!r}")
        if {name, *sections} >= {"expected output", "tests"}:
            raise LessonError(path, number, f"{BOTH_CHECKS} (exercise {info.id!r})")
        current = sections[name] = []
    try:
        check = make_check(section_text(sections.get("expected output")),
                           section_text(sections.get("tests")))
    except ValueError as exc:
        raise LessonError(path, fence_line, f"{exc} (exercise {info.id!r})") from None
    return Exercise(id=info.id, title=info.title, language=info.language,
                    starter=section_text(sections["starter"]) or "", check=check,
                    setup=section_text(sections.get("setup")) or "",
                    hints=tuple(filter(None, map(section_text, hints))), line=fence_line)


def section_text(lines: list[str] | None) -> str | None:
    """A section's text without the blank lines around it, "" when blank, None when absent."""
    if lines is None:
        return None
    kept = [i for i, line in enumerate(lines) if line.strip()]
    return "\n".join(lines[kept[0]:kept[-1] + 1]) + "\n" if kept else ""
