"""The lesson format: a full lesson parsed into values, and every error with its file and line."""
from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from server.course.model import Check, CheckKind, Exercise, LessonError
from server.course.notebook import parse_notebook
from server.course.parse import parse_lesson

KERNELS = frozenset({"python", "bash", "sql"})
PATH = "course/03-loops.md"
HEADER = "---\ntitle: Loops\nkernel: python\n---\n"   # body starts on line 5

FULL = '''---
title: Lists and loops
slug: loops
order: 2
kernel: python
access: paid
prerequisites:
  - values
  - printing
summary: Do things many times.
---
# Loops

Plain code is prose:

```python
print("just an example")
```

```python exercise id=sum-list title="Sum a list"
def total(numbers):
    return 0
# --- setup ---
import math
# --- tests ---
assert total([1, 2]) == 3, "total([1, 2]) should be 3"
# --- hint ---
Use a loop.
# --- hint ---
Or sum().
```

1. A fence inside a list item:

   ~~~python exercise id=print-three
   # print 1 to 3
   # --- expected output ---
   1
   2
   3
   ~~~
'''


def test_a_full_lesson():
    lesson = parse_lesson(FULL, PATH, KERNELS, course="basics")
    assert (lesson.slug, lesson.title, lesson.kernel, lesson.paid, lesson.order) == \
        ("loops", "Lists and loops", "python", True, 2)
    assert lesson.prerequisites == ("values", "printing")
    assert lesson.summary == "Do things many times."
    assert (lesson.path, lesson.course) == (PATH, "basics")
    assert lesson.body.startswith("# Loops\n") and "title:" not in lesson.body
    assert lesson.exercises == (
        Exercise(id="sum-list", title="Sum a list", language="python",
                 starter="def total(numbers):\n    return 0\n",
                 check=Check(CheckKind.TESTS, code='assert total([1, 2]) == 3, "total([1, 2]) should be 3"\n'),
                 setup="import math\n", hints=("Use a loop.\n", "Or sum().\n"), line=20),
        Exercise(id="print-three", title="Print three", language="python", starter="# print 1 to 3\n",
                 check=Check(CheckKind.OUTPUT, expected="1\n2\n3\n"), line=35),
    )


def test_defaults_and_sql_markers():
    text = ("---\ntitle: Select\nkernel: sql\n---\n"
            "```sql exercise id=q1\nSELECT 1;\n-- --- setup ---\nCREATE TABLE t (a);\n"
            "-- --- expected output ---\n1\n```\n")
    lesson = parse_lesson(text, "sql/01-select.md", KERNELS)
    assert (lesson.slug, lesson.order, lesson.paid, lesson.prerequisites, lesson.summary) == \
        ("01-select", 0, False, (), "")
    [exercise] = lesson.exercises
    assert (exercise.language, exercise.starter, exercise.setup, exercise.check) == \
        ("sql", "SELECT 1;\n", "CREATE TABLE t (a);\n", Check(CheckKind.OUTPUT, expected="1\n"))


def test_a_lesson_without_exercises_is_fine():
    lesson = parse_lesson(HEADER + "Just reading.\n\n```\nno language\n```\n", PATH, KERNELS)
    assert lesson.exercises == () and lesson.body == "Just reading.\n\n```\nno language\n```\n"


EXERCISE = "```python exercise id=ex\nx = 1\n# --- expected output ---\n1\n```\n"

ERRORS = {
    "no front matter": ("# Loops\n", 1, "starts with front matter"),
    "front matter not closed": ("---\ntitle: Loops\nkernel: python\n# Loops\n", 1, "not closed"),
    "yaml error": ("---\ntitle: Loops\nkernel: python\norder: [1\n---\n", 4, "not valid YAML"),
    "yaml error inside": ("---\ntitle: Loops\n  kernel: python\n---\n", 3, "not valid YAML"),
    "not a mapping": ("---\n- title\n---\n", 1, "must be a YAML mapping"),
    "missing title": ("---\nkernel: python\n---\n", 1, "missing title"),
    "missing kernel": ("---\ntitle: Loops\n---\n", 1, "missing kernel"),
    "unknown kernel": ("---\ntitle: Loops\nsummary: x\nkernel: cobol\n---\n", 4, "unknown kernel 'cobol'"),
    "unknown key": ("---\ntitle: Loops\nkernel: python\nprerequisite: [a]\n---\n", 4,
                    "unknown key 'prerequisite'"),
    "bad access": ("---\ntitle: Loops\nkernel: python\naccess: premium\n---\n", 4, "bad access 'premium'"),
    "bad order": ("---\ntitle: Loops\norder: first\nkernel: python\n---\n", 3, "bad order 'first'"),
    "bad slug": ("---\ntitle: Loops\nkernel: python\nslug: Loops Two\n---\n", 4, "bad slug"),
    "bad prerequisites": ("---\ntitle: Loops\nkernel: python\nprerequisites: values\n---\n", 4,
                          "prerequisites must be a list"),
    "unterminated fence": (HEADER + "Text.\n\n```python\nprint(1)\n", 7, "never closed"),
    "unterminated exercise": (HEADER + "```python exercise id=ex\nx = 1\n# --- tests ---\nassert x\n", 5,
                              "never closed"),
    "closed by a shorter fence": (HEADER + "\n````python\ncode\n```\n", 6, "never closed"),
    "duplicate exercise id": (HEADER + EXERCISE + "\n" + EXERCISE, 11, "duplicate exercise id 'ex'"),
    "no check": (HEADER + "intro\n\n```python exercise id=ex\nx = 1\n# --- setup ---\ny = 2\n```\n", 7,
                 "has no check"),
    "both checks": (HEADER + "```python exercise id=ex\nx = 1\n# --- tests ---\nassert x\n"
                    "# --- hint ---\nh\n# --- expected output ---\n1\n```\n", 11, "both"),
    "section twice": (HEADER + "```python exercise id=ex\nx\n# --- setup ---\na\n# --- setup ---\nb\n"
                      "# --- tests ---\nassert a\n```\n", 9, "'setup' appears twice"),
    "empty expected output": (HEADER + "```python exercise id=ex\nx\n# --- expected output ---\n\n```\n", 5,
                              "expected output is empty"),
    "bad id": (HEADER + "\n```python exercise id=Sum_List\nx\n# --- tests ---\nassert x\n```\n", 6,
               "bad exercise id 'Sum_List'"),
    "missing id": (HEADER + "```python exercise title=\"X\"\nx\n# --- tests ---\nassert x\n```\n", 5,
                   "bad exercise id ''"),
    "exercise= typo": (HEADER + "Some prose.\n\n```python exercise=oops\nprint(1)\n```\n", 7,
                       "write `python exercise id=<id>`"),
    "unknown exercise field": (HEADER + "```python exercise id=ex check=output\nx\n```\n", 5,
                               "bad exercise field 'check=output'"),
    "unbalanced quote": (HEADER + "```python exercise id=ex title=\"Sum\nx\n```\n", 5, "No closing quotation"),
}


@pytest.mark.parametrize("text, line, message", ERRORS.values(), ids=ERRORS.keys())
def test_errors_name_the_file_and_line(text, line, message):
    with pytest.raises(LessonError) as caught:
        parse_lesson(text, PATH, KERNELS)
    error = caught.value
    assert (error.path, error.line) == (PATH, line), str(error)
    assert message in error.message
    assert str(error) == f"{PATH}:{line}: {error.message}"


def test_error_without_a_line_reads_path_colon_message():
    assert str(LessonError("a/b.ipynb", None, "cell 3: broken")) == "a/b.ipynb: cell 3: broken"


# --- notebooks -----------------------------------------------------------

NB_PATH = "course/05-strings.ipynb"


def notebook(cells, kernelspec="python", **lessonserver) -> str:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": kernelspec, "display_name": kernelspec}
    nb.metadata["lessonserver"] = {"title": "Strings", **lessonserver}
    return nbformat.writes(nb)


def exercise_cell(source, **settings):
    cell = new_code_cell(source)
    cell.metadata["lessonserver"] = settings
    return cell


def test_a_notebook_lesson():
    text = notebook([
        new_markdown_cell("# Strings\n\nSome prose."),
        new_code_cell('print("plain")'),
        exercise_cell("word = ...\n", exercise="upper", title="Upper case", check="tests",
                      tests=["assert word == 'HI',\n", " 'word should be HI'\n"], setup="import string",
                      hints=["Use .upper()"]),
        exercise_cell("print()", exercise="shout", check="output", expected="HI!\n"),
    ], slug="strings", order=5, access="paid", prerequisites=["values"], summary="Text.")
    lesson = parse_notebook(text, NB_PATH, KERNELS, course="basics")
    assert (lesson.slug, lesson.title, lesson.kernel, lesson.paid, lesson.order, lesson.prerequisites,
            lesson.summary, lesson.course) == \
        ("strings", "Strings", "python", True, 5, ("values",), "Text.", "basics")
    upper, shout = lesson.exercises
    assert upper == Exercise(id="upper", title="Upper case", language="python", starter="word = ...\n",
                             check=Check(CheckKind.TESTS, code="assert word == 'HI',\n 'word should be HI'\n"),
                             setup="import string\n", hints=("Use .upper()",), line=3)
    assert (shout.title, shout.check) == ("Shout", Check(CheckKind.OUTPUT, expected="HI!\n"))
    assert "# Strings" in lesson.body and 'print("plain")' in lesson.body
    assert "```python exercise id=upper" in lesson.body
    assert "assert word" not in lesson.body and "import string" not in lesson.body


def test_notebook_kernel_from_lessonserver_metadata_wins_over_kernelspec():
    text = notebook([], kernelspec="python3", kernel="python")
    assert parse_notebook(text, NB_PATH, KERNELS).kernel == "python"


NOTEBOOK_ERRORS = {
    "not json": ("{ nope", "not a notebook"),
    "not a notebook": ('{"cells": 3}', "not a valid notebook"),
    "missing title": (notebook([], title=""), "metadata: missing title"),
    "open fence in markdown": (notebook([new_markdown_cell("ok"), new_markdown_cell("```python\nx = 1")]),
                               "cell 2: a code block is never closed"),
    "unknown kernel": (notebook([], kernelspec="python3"), "metadata: unknown kernel 'python3'"),
    "bad access": (notebook([], access="vip"), "metadata: bad access 'vip'"),
    "bad id": (notebook([new_markdown_cell("x"), exercise_cell("x", exercise="Bad Id", expected="1")]),
               "cell 2: bad exercise id 'Bad Id'"),
    "no check": (notebook([exercise_cell("x", exercise="ex")]), "cell 1: exercise has no check"),
    "both checks": (notebook([exercise_cell("x", exercise="ex", expected="1", tests="assert x")]),
                    "cell 1: exercise has both"),
    "kind disagrees": (notebook([exercise_cell("x", exercise="ex", check="output", tests="assert x")]),
                       "cell 1: check is 'output' but the cell gives tests"),
    "unknown key": (notebook([exercise_cell("x", exercise="ex", expected="1", solution="x")]),
                    "cell 1: unknown exercise key 'solution'"),
    "duplicate id": (notebook([exercise_cell("x", exercise="ex", expected="1"),
                               exercise_cell("y", exercise="ex", expected="1")]),
                     "cell 2: duplicate exercise id 'ex'"),
}


@pytest.mark.parametrize("text, message", NOTEBOOK_ERRORS.values(), ids=NOTEBOOK_ERRORS.keys())
def test_notebook_errors_name_the_file_and_cell(text, message):
    with pytest.raises(LessonError) as caught:
        parse_notebook(text, NB_PATH, KERNELS)
    assert caught.value.path == NB_PATH
    assert message in caught.value.message, str(caught.value)
    assert str(caught.value).startswith(NB_PATH + ":")
