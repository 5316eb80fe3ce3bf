"""`lessonserver lessons check PATH...` without kernels: files and folders, every error as
file:line: message with its hint, exit codes, `--json`."""
from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from server.cli import main
from tests.test_course_loader import lesson, make_course

KNOWN = ("--kernel", "python", "--kernel", "bash", "--kernel", "sql")
BROKEN = ("Text.\n\n```python exercise id=ex\nx = 1\n# --- test ---\nassert x = 1\n```\n\n"
          "```python exercise id=ex\nprint(1)\n```\n")


def check(*args: str):
    result = CliRunner().invoke(main, ["lessons", "check", *args, *KNOWN])
    return result.exit_code, result.stdout, result.stderr


def test_a_single_file_reports_every_error_and_resolves_prerequisites_from_its_course(tmp_path):
    folder = make_course(tmp_path, a_md=lesson("a"), c_md=lesson("c", kernel="cobol"),
                         b_md=lesson("b", prerequisites="a", body=BROKEN).replace("kernel", "kernal", 1))
    code, out, err = check(str(folder / "b.md"))
    assert code == 1
    b = folder / "b.md"
    assert err.splitlines() == [
        f"{b}:1: missing kernel: add `kernel: <name>` to the front matter (one of bash, python, sql)",
        f"{b}:5: unknown key 'kernal' (did you mean `kernel`?)",
        f"{b}:10: exercise has no check: add `# --- expected output ---` or `# --- tests ---` (exercise 'ex')",
        f"{b}:12: not a section marker: '# --- test ---' (exercise 'ex') (did you mean `# --- tests ---`?)",
        f"{b}:16: duplicate exercise id 'ex'",
    ]
    assert "c.md" not in err          # only the file asked about
    assert out.startswith("0 lessons in 0 courses, 5 errors")
    code, out, err = check(str(folder / "a.md"))
    assert (code, err) == (0, "") and out.startswith("1 lessons in 1 courses, 0 errors")


def test_the_tests_that_do_not_compile_are_the_authors_error(tmp_path):
    text = lesson("f", body="```python exercise id=f\ndef f(x):\n    ...\n# --- tests ---\n"
                            "assert f(0) == 32\nassert f(0) = 32\n```\n")
    (tmp_path / "f.md").write_text(text)
    code, _, err = check(str(tmp_path / "f.md"))
    assert (code, err.strip()) == (1, f"{tmp_path / 'f.md'}:12: the hidden tests do not compile: "
                                      f"invalid syntax (exercise 'f')")


def test_a_folder_of_loose_lessons_is_a_course_and_an_empty_one_is_an_error(tmp_path):
    (tmp_path / "one.md").write_text(lesson("one"))
    (tmp_path / "README.md").write_text("notes\n")
    code, out, err = check(str(tmp_path))
    assert (code, err) == (0, "") and out.startswith("1 lessons in 1 courses, 0 errors")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("notes\n")
    code, out, err = check(str(empty))
    assert code == 1 and err.strip() == (f"{empty}: no lessons found: a lesson is a .md file with front "
                                         f"matter or a .ipynb notebook (see lessons/README.md)")


def test_relative_paths_are_reported_as_given(tmp_path):
    (tmp_path / "one.md").write_text(lesson("one", kernel="pyhton"))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert check("one.md")[2].strip() == "one.md:5: unknown kernel 'pyhton' (did you mean `python`?)"
        assert check(".")[2].strip() == "one.md:5: unknown kernel 'pyhton' (did you mean `python`?)"
    finally:
        os.chdir(cwd)


def test_several_paths_and_files_that_are_no_lessons(tmp_path):
    first = make_course(tmp_path, "first", a_md=lesson("a"))
    second = make_course(tmp_path, "second", b_md=lesson("b"))
    (tmp_path / "notes.txt").write_text("x")
    code, out, err = check(str(first), str(second / "b.md"), str(tmp_path / "notes.txt"))
    assert code == 1
    assert err.strip() == f"{tmp_path / 'notes.txt'}: not a lesson file: lessons end in .ipynb or .md"
    assert out.startswith("2 lessons in 2 courses, 1 errors")


def test_course_yaml_errors_come_with_a_hint(tmp_path):
    folder = make_course(tmp_path, a_md=lesson("a"))
    (folder / "course.yaml").write_text("title: Basics\ndescripton: x\n")
    code, _, err = check(str(tmp_path))
    assert (code, err.strip()) == (1, f"{folder / 'course.yaml'}:2: unknown key 'descripton' in "
                                      f"course.yaml (did you mean `description`?)")


def test_json_for_editors_and_ci(tmp_path):
    folder = make_course(tmp_path, a_md=lesson("a", body="```python exercise id=x\nx\n```\n"),
                         b_md=lesson("b"))
    code, out, _ = check("--json", str(tmp_path))
    report = json.loads(out)
    assert code == 1
    assert {k: v for k, v in report.items() if k != "seconds"} == {
        "lessons": 1, "courses": 1, "exercises": 0,
        "errors": [{"path": str(folder / "a.md"), "line": 7,
                    "message": "exercise has no check: add `# --- expected output ---` or "
                               "`# --- tests ---` (exercise 'x')", "hint": None}]}
    assert isinstance(report["seconds"], float)


def test_the_bundled_course_checks_clean():
    code, out, err = check(str(Path(__file__).resolve().parent.parent / "lessons"))
    assert (code, err) == (0, "")
    assert out.startswith("6 lessons in 3 courses, 0 errors")
