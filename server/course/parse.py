"""A Markdown lesson -> Lesson plus every error in it, each naming the file and the 1-based line.

Format (lessons/README.md is the author's guide): YAML front matter between `---`
lines, then Markdown. A fenced block whose info string is
`<language> exercise id=<id> [title="..."] [starter=fails|passes] [timeout=5s] [memory=128M]
[reveal=3]` is an exercise (the last three may also be lesson-wide front-matter keys);
inside it the starter code comes first, then marker lines (`# --- setup ---`,
`# --- expected output ---` or `# --- tests ---`, `# --- solution ---`,
`# --- hint ---`; `-- ---` works as the prefix too, for SQL) open the hidden sections.
Errors are collected, not raised one at a time, so an author fixes them in one round.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import PurePath
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token

from server.course.model import (Bounds, Check, CheckKind, Example, Exercise, ExerciseSettings,
                                 Lesson, LessonError)

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")
# Every front-matter key with its default, as lessons/README.md documents them.
# An exercise's own limits and solution rule: in its fence, or for every exercise of the lesson
# in the front matter (the fence wins).
SETTING_KEYS = frozenset({"timeout", "memory", "reveal"})
HEADER_KEYS = frozenset({"title", "slug", "order", "kernel", "access", "prerequisites", "summary",
                         *SETTING_KEYS})
MIN_MEMORY_MB = 32   # as LS_MEMORY_MB: below this a kernel does not start
ACCESS = ("free", "paid")
SECTIONS = ("setup", "expected output", "tests", "solution", "hint")
MARKER = re.compile(r"^\s*(?:#|--) --- (" + "|".join(SECTIONS) + r") ---\s*$")
# What an author may have meant as a marker: a comment, dashes, a word or two, dashes.
NEAR_MARKER = re.compile(r"^\s*(#+|--|//)\s*-{2,}\s*([A-Za-z][A-Za-z _-]*?)\s*-{2,}\s*$")
EXERCISE_KEYS = frozenset({"id", "title", "starter", *SETTING_KEYS})
RUNNABLE = "runnable"    # `python runnable`: a prose example the learner may run, unchecked
STARTER = ("fails", "passes")        # what the untouched starter does against the check
BOTH_CHECKS = "exercise has both an expected output and tests: keep one check"
# Jupyter's kernelspec names for the languages our plugins run (a notebook saved by
# Jupyter says `python3`); besides these, a trailing version number is dropped.
JUPYTER_KERNELS = {"ipython": "python", "xsqlite": "sql", "sqlite": "sql"}
DOES_NOT_COMPILE = {"setup": "the hidden setup does not compile",
                    "tests": "the hidden tests do not compile",
                    "solution": "the solution does not compile"}
PYTHON_LANGUAGES = frozenset({"python", "python3", "py", "ipython", "ipython3"})

# Reports one error: (header key or None, message, hint or None).
Report = Callable[[str | None, str, str | None], None]


@dataclasses.dataclass(frozen=True)
class Header:
    title: str
    slug: str
    order: int
    kernel: str
    paid: bool
    prerequisites: tuple[str, ...]
    summary: str
    defaults: ExerciseSettings = ExerciseSettings()


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
    starter_passes: bool = False
    settings: Mapping[str, str] = dataclasses.field(default_factory=dict)  # raw SETTING_KEYS


@dataclasses.dataclass(frozen=True)
class Parsed:
    """A lesson file read: the lesson when it has no error, and every error found."""
    lesson: Lesson | None
    errors: tuple[LessonError, ...]


def suggest(word: str, choices: Iterator[str] | tuple[str, ...] | frozenset[str]) -> str | None:
    """`did you mean ...?` for a near miss, or None."""
    close = difflib.get_close_matches(word.lower(), sorted(choices), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def resolve_kernel(name: str, known_kernels: frozenset[str]) -> str | None:
    """Our plugin for a kernel name, accepting Jupyter's names (`python3`) as aliases."""
    if name in known_kernels:
        return name
    alias = JUPYTER_KERNELS.get(name) or re.sub(r"\d+$", "", name)
    return alias if alias in known_kernels else None


def read_lesson(text: str, path: str, known_kernels: frozenset[str], course: str = "",
                bounds: Bounds = Bounds()) -> Parsed:
    errors: list[LessonError] = []
    try:
        front = front_matter(text, path)
    except LessonError as exc:
        return Parsed(None, (exc,))

    def report(key: str | None, message: str, hint: str | None = None) -> None:
        errors.append(LessonError(path, front.key_lines.get(key, 1) if key else 1, message, hint))

    header = read_header(front.data, PurePath(path).stem, known_kernels, report, "the front matter",
                         bounds)
    lines = text.splitlines()
    body = "\n".join(lines[front.body_start:]) + ("\n" if front.body_start < len(lines) else "")
    # Hidden code runs in the lesson's kernel, whatever the fence's language says.
    exercises = _exercises(body, front.body_start, path, errors, header.kernel if header else None,
                           bounds, header.defaults if header else ExerciseSettings())
    if errors or header is None:
        return Parsed(None, tuple(sorted(errors, key=lambda error: error.line or 0)))
    return Parsed(Lesson(slug=header.slug, title=header.title, summary=header.summary,
                         kernel=header.kernel, paid=header.paid, order=header.order,
                         prerequisites=header.prerequisites, exercises=exercises, body=body,
                         path=path, course=course,
                         examples=runnable_examples(body, front.body_start)), ())


def is_runnable(info: str) -> bool:
    words = info.split()
    return len(words) == 2 and words[1] == RUNNABLE


def runnable_examples(body: str, offset: int = 0) -> tuple[Example, ...]:
    """The prose's code blocks marked `runnable`, numbered from 1 in the order they appear
    (the renderer numbers them the same way)."""
    found = [token for token, closed in fences(body) if closed and is_runnable(token.info)]
    return tuple(Example(str(n), token.info.split()[0], token.content, offset + token.map[0] + 1)
                 for n, token in enumerate(found, start=1))


def parse_lesson(text: str, path: str, known_kernels: frozenset[str], course: str = "") -> Lesson:
    """The lesson, or its first error raised (read_lesson gives them all)."""
    return first_or_raise(read_lesson(text, path, known_kernels, course))


def first_or_raise(parsed: Parsed) -> Lesson:
    if parsed.errors:
        raise parsed.errors[0]
    assert parsed.lesson is not None
    return parsed.lesson


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


def read_header(data: Any, stem: str, known_kernels: frozenset[str], report: Report,
                where: str, bounds: Bounds = Bounds()) -> Header | None:
    """Validate the header keys, shared by Markdown front matter and notebook metadata;
    every problem is reported, and the Header comes back only when there is none.
    `where` names the place a missing key goes, for the message."""
    if not isinstance(data, Mapping):
        report(None, f"{where} must be a mapping (key: value lines)", None)
        return None
    count = 0

    def bad(key: str | None, message: str, hint: str | None = None) -> None:
        nonlocal count
        count += 1
        report(key, message, hint)

    for key in sorted(str(k) for k in data if k not in HEADER_KEYS):
        bad(key, f"unknown key {key!r}",
            suggest(key, HEADER_KEYS) or f"known keys: {', '.join(sorted(HEADER_KEYS))}")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        bad("title", f"missing title: add `title: ...` to {where}")
    kernel = data.get("kernel")
    if not isinstance(kernel, str) or not kernel:
        bad("kernel", f"missing kernel: add `kernel: <name>` to {where} "
                      f"(one of {', '.join(sorted(known_kernels))})")
    elif resolve_kernel(kernel, known_kernels) is None:
        bad("kernel", f"unknown kernel {kernel!r}",
            suggest(kernel, known_kernels) or f"known kernels: {', '.join(sorted(known_kernels))}")
    slug = data.get("slug", stem)
    if not isinstance(slug, str) or not ID_PATTERN.fullmatch(slug):
        bad("slug", f"bad slug {slug!r}: use lowercase letters, digits and dashes",
            None if "slug" in data else f"the slug comes from the file name: rename the file "
                                        f"or add `slug: ...` to {where}")
    order = data.get("order", 0)
    if isinstance(order, bool) or not isinstance(order, int):
        bad("order", f"bad order {order!r}: it must be a whole number")
    access = data.get("access", "free")
    if access not in ACCESS:
        bad("access", f"bad access {access!r}: it must be free or paid",
            suggest(str(access), ACCESS))
    prerequisites = data.get("prerequisites") or []
    if not isinstance(prerequisites, list) or not all(isinstance(p, str) for p in prerequisites):
        bad("prerequisites", "prerequisites must be a list of lesson slugs",
            "write `prerequisites: [first-slug, second-slug]`")
    summary = data.get("summary") or ""
    if not isinstance(summary, str):
        bad("summary", "summary must be text")
    defaults, problems = exercise_settings({k: data[k] for k in SETTING_KEYS if k in data}, bounds)
    for key, message in problems:
        bad(key, message)
    if count:
        return None
    return Header(title=title.strip(), slug=slug, order=order,
                  kernel=resolve_kernel(kernel, known_kernels) or kernel, paid=access == "paid",
                  prerequisites=tuple(prerequisites), summary=summary.strip(), defaults=defaults)


def exercise_info(info: str) -> ExerciseInfo | None:
    """The exercise named by a fence's info string, None for a plain code block.
    Raises ValueError for an info string that tries to be an exercise but is malformed."""
    words = info.split(None, 1)
    if len(words) < 2:
        return None
    if not words[1].startswith("exercise"):
        first = words[1].split(None, 1)[0]
        if "id=" in words[1] or suggest(first.split("=")[0], ("exercise",)):
            raise ValueError(f"bad exercise info string {info!r}: "
                             f"write `{words[0]} exercise id=<id>`")
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
        if not sep and "title" in fields:
            raise ValueError(f"bad exercise field {part!r}: a title with spaces needs quotes: "
                             f"title=\"{fields['title']} {part}...\"")
        if not sep or key not in EXERCISE_KEYS:
            hint = suggest(key, EXERCISE_KEYS)
            raise ValueError(f"bad exercise field {part!r}: use id=<id>, title=\"...\", "
                             f"starter=passes, timeout=<seconds>, memory=<MiB> or reveal=<attempts>"
                             + (f" ({hint})" if hint else ""))
        fields[key] = value
    ex_id = fields.get("id", "")
    check_id(ex_id)
    return ExerciseInfo(words[0], ex_id, fields.get("title") or default_title(ex_id),
                        starter_passes(fields.get("starter")),
                        {key: fields[key] for key in SETTING_KEYS if key in fields})


SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s?\s*$")
MEBIBYTES = re.compile(r"^\s*(\d+)\s*(?:m|mb|mib)?\s*$", re.I)


@dataclasses.dataclass(frozen=True)
class _Limit:
    """How an exercise writes one of its limits, and the host's bound on it."""
    pattern: re.Pattern
    number: Callable[[str], float]
    smallest: float
    bound: str            # the Bounds field
    unit: str
    setting: str          # the host's setting that sets the bound
    how: str              # for the error: how to write it


LIMITS = {"timeout": _Limit(SECONDS, float, 0.001, "timeout", "s", "LS_RUN_TIMEOUT",
                            "seconds, like timeout=5 or 2.5s"),
          "memory": _Limit(MEBIBYTES, int, MIN_MEMORY_MB, "memory_mb", "MiB", "LS_MEMORY_MB",
                           f"MiB, {MIN_MEMORY_MB} or more, like memory=128 or 128M")}


def exercise_settings(raw: Mapping[str, object], bounds: Bounds
                      ) -> tuple[ExerciseSettings, list[tuple[str, str]]]:
    """`timeout`, `memory` and `reveal` as values, within the host's bounds; with (key, message)
    for each one that is malformed or beyond them (a lesson is refused, never given less)."""
    problems: list[tuple[str, str]] = []
    values: dict[str, float | int | None] = {"timeout": None, "memory": None, "reveal": None}
    for key, given in raw.items():
        text = str(given) if isinstance(given, (str, int, float)) and not isinstance(given, bool) else ""
        limit = LIMITS.get(key)
        if limit is not None:
            match = limit.pattern.match(text)
            value = limit.number(match[1]) if match else 0
            ceiling = getattr(bounds, limit.bound)
            if value < limit.smallest:
                problems.append((key, f"bad {key} {given!r}: write {limit.how}"))
            elif value > ceiling:
                problems.append((key, f"{key} {value:g} {limit.unit} is beyond this server's limit "
                                      f"of {ceiling:g} {limit.unit} ({limit.setting})"))
            else:
                values[key] = value
        elif key == "reveal":
            if not text.isdigit() or int(text) < 1:
                problems.append((key, f"bad reveal {given!r}: write the number of attempts after "
                                      "which the solution may be shown, like reveal=3"))
            else:
                values[key] = int(text)
    return ExerciseSettings(values["timeout"], values["memory"], values["reveal"]), problems


def starter_passes(value: object) -> bool:
    """`starter=passes` marks an exercise whose untouched starter already passes (on purpose)."""
    if value is None:
        return False
    if value not in STARTER:
        raise ValueError(f"bad starter {value!r}: it must be fails (the default) or passes")
    return value == "passes"


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


def python_syntax_errors(language: str, parts: Mapping[str, str]) -> Iterator[tuple[str, int, str]]:
    """(part, 1-based line in that part, message) for each hidden Python part that does not
    compile, so a broken test is the author's error at check time, never the learner's.
    The kernel is IPython: magics are translated and top-level await is allowed, as there."""
    if language.lower() not in PYTHON_LANGUAGES:
        return
    from IPython.core.inputtransformer2 import TransformerManager
    transform = TransformerManager().transform_cell
    for part, code in parts.items():
        if not code.strip():
            continue
        try:
            source = transform(code)
        except SyntaxError:
            source = code
        try:
            compile(source, f"<{part}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                    dont_inherit=True)
        except SyntaxError as exc:
            yield part, exc.lineno or 1, exc.msg
        except ValueError as exc:   # null bytes in the source
            yield part, 1, str(exc)


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


def _exercises(body: str, offset: int, path: str, errors: list[LessonError],
               kernel: str | None, bounds: Bounds = Bounds(),
               defaults: ExerciseSettings = ExerciseSettings()) -> tuple[Exercise, ...]:
    exercises: list[Exercise] = []
    seen: set[str] = set()
    for token, closed in fences(body):
        line = offset + token.map[0] + 1
        if not closed:
            errors.append(LessonError(path, line, f"code block opened here is never closed "
                                                  f"with {token.markup}"))
            continue
        try:
            info = exercise_info(token.info)
        except ValueError as exc:
            errors.append(LessonError(path, line, str(exc)))
            continue
        if info is None:
            continue
        if info.id in seen:
            errors.append(LessonError(path, line, f"duplicate exercise id {info.id!r}"))
            continue
        seen.add(info.id)
        exercise = _exercise(info, token.content, line, path, errors, kernel or info.language,
                             bounds, defaults)
        if exercise is not None:
            exercises.append(exercise)
    return tuple(exercises)


@dataclasses.dataclass
class _Section:
    line: int                              # file line of the marker (the fence for the starter)
    lines: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    @property
    def text(self) -> str:
        return section_text([text for _, text in self.lines]) or ""

    @property
    def first_line(self) -> int:
        """File line of the section's first non-blank line (line 1 of its code)."""
        return next((n for n, text in self.lines if text.strip()), self.line + 1)


def _exercise(info: ExerciseInfo, content: str, fence_line: int, path: str,
              errors: list[LessonError], runs_as: str, bounds: Bounds = Bounds(),
              defaults: ExerciseSettings = ExerciseSettings()) -> Exercise | None:
    before = len(errors)

    def error(line: int, message: str, hint: str | None = None) -> None:
        errors.append(LessonError(path, line, f"{message} (exercise {info.id!r})", hint))

    own, problems = exercise_settings(info.settings, bounds)
    for _, message in problems:
        error(fence_line, message)

    sections: dict[str, _Section] = {"starter": _Section(fence_line)}
    hints: list[_Section] = []
    current = sections["starter"]
    for number, text in enumerate(content.splitlines(), start=fence_line + 1):
        marker = MARKER.match(text)
        if marker is None:
            near = NEAR_MARKER.match(text)
            name = near.group(2).strip().lower() if near else ""
            guess = difflib.get_close_matches(name, SECTIONS, n=1, cutoff=0.6) if near else []
            if guess:
                prefix = "--" if near.group(1) == "--" else "#"
                error(number, f"not a section marker: {text.strip()!r}",
                      f"did you mean `{prefix} --- {guess[0]} ---`?")
            current.lines.append((number, text))
            continue
        name = marker.group(1)
        if name == "hint":
            hints.append(_Section(number))
            current = hints[-1]
            continue
        current = _Section(number)
        if name in sections:
            error(number, f"section {name!r} appears twice")
        elif {name, *sections} >= {"expected output", "tests"}:
            error(number, BOTH_CHECKS)
        else:
            sections[name] = current
    try:
        check = make_check(sections["expected output"].text if "expected output" in sections else None,
                           sections["tests"].text if "tests" in sections else None)
    except ValueError as exc:
        if BOTH_CHECKS not in str(exc):
            error(fence_line, str(exc))
        check = None
    for part, line, message in python_syntax_errors(
            runs_as, {name: sections[name].text for name in ("setup", "tests", "solution")
                            if name in sections}):
        first = sections[part].first_line
        # Python's own "... on line N" counts from the section; the author reads the file.
        message = re.sub(r"\bon line (\d+)", lambda m: f"on line {first + int(m.group(1)) - 1}", message)
        error(first + line - 1, f"{DOES_NOT_COMPILE[part]}: {message}")
    if "solution" in sections and not sections["solution"].text.strip():
        error(sections["solution"].line, "solution section is empty")
    if own.reveal_after is not None and "solution" not in sections:
        error(fence_line, f"reveal={own.reveal_after} shows the solution, but there is none",
              "add a `# --- solution ---` section")
    if len(errors) > before or check is None:
        return None
    return Exercise(id=info.id, title=info.title, language=info.language,
                    starter=sections["starter"].text, check=check,
                    setup=sections["setup"].text if "setup" in sections else "",
                    hints=tuple(filter(None, (hint.text for hint in hints))), line=fence_line,
                    solution=sections["solution"].text if "solution" in sections else None,
                    starter_passes=info.starter_passes,
                    solution_line=sections["solution"].line if "solution" in sections else 0,
                    settings=solution_rule(own.over(defaults), "solution" in sections))


def solution_rule(settings: ExerciseSettings, has_solution: bool) -> ExerciseSettings:
    """A lesson-wide `reveal` applies only to the exercises that have a solution to show."""
    return settings if has_solution else dataclasses.replace(settings, reveal_after=None)


def section_text(lines: list[str] | None) -> str | None:
    """A section's text without the blank lines around it, "" when blank, None when absent."""
    if lines is None:
        return None
    kept = [i for i, line in enumerate(lines) if line.strip()]
    return "\n".join(lines[kept[0]:kept[-1] + 1]) + "\n" if kept else ""
