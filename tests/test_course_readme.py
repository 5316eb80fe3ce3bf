"""lessons/README.md cannot fall behind the parser: every front-matter key, fence option,
section, notebook key and command option the code accepts is documented there (and
nothing else is), and every worked example in it is a valid exercise."""
from __future__ import annotations

import re

import pytest

from server.cli import lessons, lessons_check, lessons_import
from server.config import PROJECT_ROOT
from server.course.loader import COURSE_KEYS
from server.course.notebook import CELL_KEYS
from server.course.parse import (ACCESS, EXERCISE_KEYS, HEADER_KEYS, JUPYTER_KERNELS, SECTIONS,
                                 STARTER, read_lesson)

README = (PROJECT_ROOT / "lessons" / "README.md").read_text(encoding="utf-8")
KERNELS = frozenset({"python", "bash", "sql"})
KERNEL_OF = {"python": "python", "bash": "bash", "sql": "sql"}


def section(heading: str) -> str:
    """The text under a `##`/`###` heading, up to the next heading of any level."""
    match = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", README, re.M | re.S)
    assert match, f"lessons/README.md has no section {heading!r}"
    return match.group(1)


def table_keys(heading: str) -> set[str]:
    """The backticked names in the first column of the table under a heading."""
    return set(re.findall(r"^\| `([^`]+)` \|", section(heading), re.M))


@pytest.mark.parametrize("heading, accepted", [
    ("course.yaml keys", COURSE_KEYS),
    ("Front matter keys", HEADER_KEYS),
    ("Exercise fence options", EXERCISE_KEYS),
    ("Sections", set(SECTIONS)),
    ("Notebook cell keys", CELL_KEYS),
])
def test_every_key_the_parser_accepts_is_documented_and_no_other(heading, accepted):
    assert table_keys(heading) == set(accepted)


@pytest.mark.parametrize("word", [*ACCESS, *STARTER, *JUPYTER_KERNELS, "python3"])
def test_every_accepted_value_and_kernel_alias_is_named(word):
    assert f"`{word}`" in README


def test_every_lessons_command_is_documented():
    for name in lessons.commands:
        assert f"lessonserver lessons {name} " in README, name


@pytest.mark.parametrize("command", [lessons_check, lessons_import], ids=lambda c: c.name)
def test_every_command_option_is_documented(command):
    for param in command.params:
        for option in param.opts:
            if option.startswith("--"):
                assert option in README, f"lessons {command.name} {option} is not in lessons/README.md"


def examples() -> list[tuple[str, str]]:
    """Each worked exercise in the README: (language, fenced block)."""
    blocks = re.findall(r"^````markdown\n(.*?)^````\n", README, re.M | re.S)
    found = []
    for block in blocks:
        info = re.match(r"[`~]{3,}(\w+) exercise", block)
        if info:
            found.append((info.group(1), block))
    return found


def as_lesson(language: str, block: str) -> str:
    return f"---\ntitle: Example\nkernel: {KERNEL_OF[language]}\n---\n{block}"


def test_the_readme_has_a_worked_example_of_each_check_and_section():
    texts = [block for _, block in examples()]
    for marker in ("expected output", "tests", "setup", "solution", "hint"):
        assert any(f"--- {marker} ---" in text for text in texts), marker
    assert any("starter=passes" in text for text in texts)
    assert {language for language, _ in examples()} == {"python", "bash", "sql"}


@pytest.mark.parametrize("language, block", examples())
def test_every_worked_example_parses(language, block):
    parsed = read_lesson(as_lesson(language, block), "example.md", KERNELS)
    assert parsed.errors == ()
    [exercise] = parsed.lesson.exercises
    assert exercise.solution is not None or exercise.starter_passes
