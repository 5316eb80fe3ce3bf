"""The lessons folder -> Catalog: the bundled course, broken files, cross-lesson errors, `lessons check`."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from click.testing import CliRunner

from server.cli import main
from server.config import PROJECT_ROOT
from server.course.loader import load_catalog

KERNELS = frozenset({"python", "bash", "sql"})
BUNDLED = PROJECT_ROOT / "lessons"


def lesson(slug: str, *, order: int = 0, prerequisites: str = "", kernel: str = "python",
           body: str = "Prose.\n") -> str:
    prereq = f"prerequisites: [{prerequisites}]\n" if prerequisites else ""
    return f"---\ntitle: {slug.title()}\nslug: {slug}\norder: {order}\nkernel: {kernel}\n{prereq}---\n{body}"


def make_course(root: Path, slug: str = "basics", title: str = "Basics", order: int = 0,
                **files: str) -> Path:
    folder = root / slug
    folder.mkdir(parents=True)
    (folder / "course.yaml").write_text(f"title: {title}\ndescription: About {title}.\norder: {order}\n")
    for name, text in files.items():
        (folder / name.replace("_", ".")).write_text(text)  # a_md= writes a.md
    return folder


def slugs(catalog) -> list[str]:
    return [lesson.slug for course in catalog.courses for lesson in course.lessons]


def test_the_bundled_course_loads_without_errors():
    catalog = load_catalog(BUNDLED, KERNELS)
    assert [str(e) for e in catalog.errors] == []
    assert [c.slug for c in catalog.courses] == ["python-basics", "shell", "sql"]
    python = catalog.courses[0]
    assert [l.slug for l in python.lessons] == ["values-and-printing", "lists-and-loops",
                                                  "functions-and-dicts", "strings"]
    assert python.lessons[3].path.endswith(".ipynb")
    assert catalog.lesson("functions-and-dicts").paid
    assert catalog.lesson("functions-and-dicts").prerequisites == ("lists-and-loops",)
    assert catalog.lesson("lists-and-loops").prerequisites == ("values-and-printing",)
    assert {catalog.lesson(s).kernel for s in ("shell-first-commands", "sql-select")} == {"bash", "sql"}
    for course in catalog.courses:
        for lesson in course.lessons:
            assert lesson.course == course.slug
            assert len(lesson.exercises) >= 3, lesson.slug
            if course.slug == "python-basics":
                assert {ex.check.kind.value for ex in lesson.exercises} == {"output", "tests"}, lesson.slug


def test_catalog_lookups():
    catalog = load_catalog(BUNDLED, KERNELS)
    assert catalog.lesson("strings").title == "Working with strings"
    assert catalog.course_of("sql-select").title == "SQL"
    assert catalog.exercise("lists-and-loops", "squares").check.kind.value == "tests"
    assert catalog.lesson("nope") is None and catalog.course_of("nope") is None
    assert catalog.exercise("lists-and-loops", "nope") is None and catalog.exercise("nope", "squares") is None


def test_courses_and_lessons_are_ordered(tmp_path):
    make_course(tmp_path, "zeta", "Zeta", order=1, a_md=lesson("late", order=2), b_md=lesson("early", order=1),
                c_md=lesson("also-early", order=1))
    make_course(tmp_path, "alpha", "Alpha", order=2, a_md=lesson("other"))
    (tmp_path / "assets").mkdir()  # a folder without lessons or course.yaml is not a course
    catalog = load_catalog(tmp_path, KERNELS)
    assert catalog.errors == ()
    assert [c.slug for c in catalog.courses] == ["zeta", "alpha"]
    assert slugs(catalog) == ["also-early", "early", "late", "other"]


def test_a_single_course_folder_can_be_the_root(tmp_path):
    folder = make_course(tmp_path, "solo", "Solo", a_md=lesson("a"), b_md=lesson("b", prerequisites="a"))
    catalog = load_catalog(folder, KERNELS)
    assert catalog.errors == ()
    assert [(c.slug, c.title) for c in catalog.courses] == [("solo", "Solo")]
    assert slugs(catalog) == ["a", "b"] and catalog.lesson("b").course == "solo"


def test_a_broken_lesson_is_left_out_with_its_error(tmp_path):
    folder = make_course(tmp_path, a_md=lesson("good"),
                         b_md=lesson("bad", body="Text.\n\n```python exercise id=x\nprint(1)\n"))
    catalog = load_catalog(tmp_path, KERNELS)
    assert slugs(catalog) == ["good"]
    assert [str(e) for e in catalog.errors] == \
        [f"{folder / 'b.md'}:9: code block opened here is never closed with ```"]


def test_unknown_prerequisite_names_the_front_matter_line(tmp_path):
    folder = make_course(tmp_path, a_md=lesson("first"), b_md=lesson("second", prerequisites="first, missing"))
    catalog = load_catalog(tmp_path, KERNELS)
    assert slugs(catalog) == ["first"]
    assert [str(e) for e in catalog.errors] == [f"{folder / 'b.md'}:6: unknown prerequisite 'missing'"]


def test_lessons_needing_a_left_out_lesson_are_left_out_too(tmp_path):
    folder = make_course(tmp_path, a_md=lesson("a", kernel="cobol"), b_md=lesson("b", prerequisites="a"),
                         c_md=lesson("c", prerequisites="b"), d_md=lesson("d"))
    catalog = load_catalog(tmp_path, KERNELS)
    assert slugs(catalog) == ["d"]
    assert sorted(str(e) for e in catalog.errors) == [
        f"{folder / 'a.md'}:5: unknown kernel 'cobol' (known kernels: bash, python, sql)",
        f"{folder / 'b.md'}:6: prerequisite 'a' was left out because of its own error",
        f"{folder / 'c.md'}:6: prerequisite 'b' was left out because of its own error",
    ]


def test_duplicate_slugs_keep_the_first_file(tmp_path):
    folder = make_course(tmp_path, a_md=lesson("same"), b_md=lesson("same"))
    other = make_course(tmp_path, "other", c_md=lesson("same"))
    catalog = load_catalog(tmp_path, KERNELS)
    assert [l.path for c in catalog.courses for l in c.lessons] == [str(folder / "a.md")]
    assert [str(e) for e in catalog.errors] == [
        f"{folder / 'b.md'}:3: duplicate slug 'same': {folder / 'a.md'} has it too",
        f"{other / 'c.md'}:3: duplicate slug 'same': {folder / 'a.md'} has it too",
    ]


def test_prerequisite_cycles_are_reported_and_left_out(tmp_path):
    folder = make_course(tmp_path, a_md=lesson("a", prerequisites="c"), b_md=lesson("b", prerequisites="a"),
                         c_md=lesson("c", prerequisites="b"), d_md=lesson("d", prerequisites="a"),
                         e_md=lesson("e", prerequisites="e"), f_md=lesson("f"))
    catalog = load_catalog(tmp_path, KERNELS)
    assert slugs(catalog) == ["f"]
    errors = sorted(str(e) for e in catalog.errors)
    assert errors == [
        f"{folder / 'a.md'}:6: prerequisite cycle: a -> c -> b -> a",
        f"{folder / 'b.md'}:6: prerequisite cycle: b -> a -> c -> b",
        f"{folder / 'c.md'}:6: prerequisite cycle: c -> b -> a -> c",
        f"{folder / 'd.md'}:6: prerequisite 'a' was left out because of its own error",
        f"{folder / 'e.md'}:6: prerequisite cycle: e -> e",
    ]


def test_a_bad_course_yaml_leaves_its_course_out(tmp_path):
    make_course(tmp_path, "good", a_md=lesson("a"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "course.yaml").write_text("title: [unclosed\n")
    (bad / "x.md").write_text(lesson("x"))
    catalog = load_catalog(tmp_path, KERNELS)
    assert slugs(catalog) == ["a"]
    assert [(Path(e.path).parent.name, e.line) for e in catalog.errors] == [("bad", 2)]


def test_loose_lessons_are_a_course_of_their_own_and_readme_is_not_a_lesson(tmp_path):
    make_course(tmp_path, "good", a_md=lesson("a"))
    loose = tmp_path / "my-drafts"
    loose.mkdir()
    (loose / "y.md").write_text(lesson("y"))
    (loose / "README.md").write_text("# Notes, no front matter\n")
    (tmp_path / "README.md").write_text("# The authors' guide\n")
    catalog = load_catalog(tmp_path, KERNELS)
    assert catalog.errors == ()
    assert [(c.slug, c.title) for c in catalog.courses] == [("good", "Basics"), ("my-drafts", "My drafts")]
    assert catalog.lesson("y").course == "my-drafts"
    assert [c.slug for c in load_catalog(loose, KERNELS).courses] == ["my-drafts"]


def test_notebook_errors_come_through_the_loader(tmp_path):
    folder = make_course(tmp_path, a_md=lesson("a"))
    (folder / "broken.ipynb").write_text('{"cells": [')
    catalog = load_catalog(tmp_path, KERNELS)
    assert slugs(catalog) == ["a"]
    [error] = catalog.errors
    assert error.path == str(folder / "broken.ipynb") and error.line == 1
    assert "not a notebook" in error.message


def run_check(path: Path, *kernels: str):
    args = ["lessons", "check", str(path)]
    for kernel in kernels:
        args += ["--kernel", kernel]
    return CliRunner().invoke(main, args)


def test_lessons_check_prints_file_and_line_and_exits_1(tmp_path):
    folder = make_course(tmp_path, a_md=lesson("a"), b_md=lesson("b", kernel="ruby"))
    result = run_check(tmp_path, "python", "bash", "sql")
    assert result.exit_code == 1, result.output
    assert f"{folder / 'b.md'}:5: unknown kernel 'ruby'" in result.output
    assert "1 lessons in 1 courses, 1 errors" in result.output


def test_lessons_check_on_the_bundled_course_exits_0(tmp_path):
    shutil.copytree(BUNDLED, tmp_path / "lessons")
    result = run_check(tmp_path / "lessons", "python", "bash", "sql")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"6 lessons in 3 courses, 0 errors \(\d+\.\d s\)", result.output.strip())


def test_course_yaml_needs_a_title_and_a_whole_order(tmp_path):
    make_course(tmp_path, "untitled", a_md=lesson("a"))
    make_course(tmp_path, "unordered", b_md=lesson("b"))
    (tmp_path / "untitled" / "course.yaml").write_text("description: x\n")
    (tmp_path / "unordered" / "course.yaml").write_text("title: U\norder: first\n")
    catalog = load_catalog(tmp_path, KERNELS)
    assert [(Path(e.path).parent.name, e.message) for e in catalog.errors] == [
        ("unordered", "bad order 'first': it must be a whole number"),
        ("untitled", "course.yaml needs at least `title: ...`")]
