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
    "not a mapping": ("---\n- title\n---\n", 1, "must be a mapping"),
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
    "summary not text": ("---\ntitle: Loops\nkernel: python\nsummary: [a, b]\n---\n", 4,
                         "summary must be text"),
    "empty tests": (HEADER + "```python exercise id=ex\nx\n# --- tests ---\n\n```\n", 5,
                    "tests section is empty"),
    "unquoted title": (HEADER + "```python exercise id=ex title=Sum a list\nx\n```\n", 5,
                       "a title with spaces needs quotes: title=\"Sum a...\""),
    "plain block with an id": (HEADER + "```python id=ex\nx\n```\n", 5,
                               "write `python exercise id=<id>`"),
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
    assert str(error).startswith(f"{PATH}:{line}: {error.message}")


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
                      tests=["assert word == 'HI', \\\n", " 'word should be HI'\n"], setup="import string",
                      hints=["Use .upper()"]),
        exercise_cell("print()", exercise="shout", check="output", expected="HI!\n"),
    ], slug="strings", order=5, access="paid", prerequisites=["values"], summary="Text.")
    lesson = parse_notebook(text, NB_PATH, KERNELS, course="basics")
    assert (lesson.slug, lesson.title, lesson.kernel, lesson.paid, lesson.order, lesson.prerequisites,
            lesson.summary, lesson.course) == \
        ("strings", "Strings", "python", True, 5, ("values",), "Text.", "basics")
    upper, shout = lesson.exercises
    assert upper == Exercise(id="upper", title="Upper case", language="python", starter="word = ...\n",
                             check=Check(CheckKind.TESTS, code="assert word == 'HI', \\\n 'word should be HI'\n"),
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
    "unknown kernel": (notebook([], kernelspec="ruby"), "metadata: unknown kernel 'ruby'"),
    "bad access": (notebook([], access="vip"), "metadata: bad access 'vip'"),
    "bad id": (notebook([new_markdown_cell("x"), exercise_cell("x", exercise="Bad Id", expected="1")]),
               "cell 2: bad exercise id 'Bad Id'"),
    "no check": (notebook([exercise_cell("x", exercise="ex")]), "cell 1: exercise has no check"),
    "both checks": (notebook([exercise_cell("x", exercise="ex", expected="1", tests="assert x")]),
                    "cell 1: exercise has both"),
    "kind disagrees": (notebook([exercise_cell("x", exercise="ex", check="output", tests="assert x")]),
                       "cell 1: check is 'output' but the cell gives tests"),
    "unknown key": (notebook([exercise_cell("x", exercise="ex", expected="1", solutoin="x")]),
                    "cell 1: unknown exercise key 'solutoin'"),
    "duplicate id": (notebook([exercise_cell("x", exercise="ex", expected="1"),
                               exercise_cell("y", exercise="ex", expected="1")]),
                     "cell 2: duplicate exercise id 'ex'"),
    "header not a mapping": (notebook([]).replace('"lessonserver": {', '"lessonserver": ["x"], "x": {'),
                             "metadata: the notebook metadata under"),
    "cell settings not a mapping": (
        notebook([exercise_cell("x")]).replace('"lessonserver": {}', '"lessonserver": 3'),
        "cell 1: metadata lessonserver must be a mapping"),
    "title not text": (notebook([exercise_cell("x", exercise="ex", expected="1", title=3)]),
                       "cell 1: title must be text"),
    "hints not texts": (notebook([exercise_cell("x", exercise="ex", expected="1", hints=[1])]),
                        "cell 1: hints must be a list of texts"),
    "expected not text": (notebook([exercise_cell("x", exercise="ex", expected=1)]),
                          "cell 1: expected must be text"),
}


@pytest.mark.parametrize("text, message", NOTEBOOK_ERRORS.values(), ids=NOTEBOOK_ERRORS.keys())
def test_notebook_errors_name_the_file_and_cell(text, message):
    with pytest.raises(LessonError) as caught:
        parse_notebook(text, NB_PATH, KERNELS)
    assert caught.value.path == NB_PATH
    assert message in caught.value.message, str(caught.value)
    assert str(caught.value).startswith(NB_PATH + ":")


# --- every error at once, with hints ------------------------------------------

from server.course.notebook import read_notebook  # noqa: E402
from server.course.parse import read_lesson, resolve_kernel  # noqa: E402

MANY = '''---
title: Loops
kernel: pyhton
prerequisite: [a]
acess: paid
---
# Loops

```python exercise id=sq title="Squares"
squares = []
# --- tests ---

assert squares, "empty"
assert f(0) = 32
# --- expected ---
# --- solution ---
squares = [
```

```python exercize id=two
x
```

```python exercise ids=three
x
```

```python exercise id=four starter=maybe
x
```
'''


def problems(text: str, path: str = PATH) -> list[tuple[int | None, str, str | None]]:
    return [(e.line, e.message, e.hint) for e in read_lesson(text, path, KERNELS).errors]


def test_every_error_in_a_file_is_reported_in_line_order_with_hints():
    assert problems(MANY) == [
        (3, "unknown kernel 'pyhton'", "did you mean `python`?"),
        (4, "unknown key 'prerequisite'", "did you mean `prerequisites`?"),
        (5, "unknown key 'acess'", "did you mean `access`?"),
        (14, "the hidden tests do not compile: invalid syntax (exercise 'sq')", None),
        (15, "not a section marker: '# --- expected ---' (exercise 'sq')",
         "did you mean `# --- expected output ---`?"),
        (17, "the solution does not compile: '[' was never closed (exercise 'sq')", None),
        (20, "bad exercise info string 'python exercize id=two': write `python exercise id=<id>`", None),
        (24, "bad exercise field 'ids=three': use id=<id>, title=\"...\", starter=passes, "
             "timeout=<seconds>, memory=<MiB> or reveal=<attempts> (did you mean `id`?)", None),
        (28, "bad starter 'maybe': it must be fails (the default) or passes", None),
    ]
    assert read_lesson(MANY, PATH, KERNELS).lesson is None


def test_the_error_text_is_file_line_message_then_the_hint():
    [error] = read_lesson(HEADER.replace("kernel: python", "kernel: python\nsumary: x"), PATH,
                          KERNELS).errors
    assert str(error) == f"{PATH}:4: unknown key 'sumary' (did you mean `summary`?)"
    assert error.to_json() == {"path": PATH, "line": 4, "message": "unknown key 'sumary'",
                               "hint": "did you mean `summary`?"}


@pytest.mark.parametrize("marker, hint", [
    ("# --- expected ---", "`# --- expected output ---`"),
    ("#--- tests ---", "`# --- tests ---`"),
    ("# ---- test ----", "`# --- tests ---`"),
    ("-- --- soluton ---", "`-- --- solution ---`"),
    ("# --- Hint ---", "`# --- hint ---`"),
])
def test_near_miss_markers_are_errors_with_the_marker_meant(marker, hint):
    text = HEADER + f"```python exercise id=ex\nx = 1\n{marker}\n1\n# --- tests ---\nassert x\n```\n"
    assert problems(text) == [(7, f"not a section marker: {marker!r} (exercise 'ex')",
                               f"did you mean {hint}?")]


def test_comment_rulers_that_are_no_marker_stay_code():
    text = HEADER + "```python exercise id=ex\n# --- step one ---\nx = 1\n# --- tests ---\nassert x\n```\n"
    assert parse_lesson(text, PATH, KERNELS).exercises[0].starter == "# --- step one ---\nx = 1\n"


@pytest.mark.parametrize("part, code, line, message", [
    ("setup", "\n\nimport math\nx = (\n", 13, "the hidden setup does not compile: '(' was never closed"),
    ("tests", "assert f(0) == 32\nassert f(1) = 33\n", 9, "the hidden tests do not compile: invalid syntax"),
    ("solution", "def f(x):\nreturn x\n", 11,
     "the solution does not compile: expected an indented block after function definition on line 10"),
])
def test_hidden_python_is_compiled_and_errors_point_at_the_file_line(part, code, line, message):
    text = (HEADER + "```python exercise id=ex\nx = 1\n"
            + ("# --- tests ---\nassert x\n" if part != "tests" else "")
            + f"# --- {part} ---\n{code}```\n")
    [(got_line, got, _)] = problems(text)
    assert got_line == line and got.startswith(message) and got.endswith("(exercise 'ex')"), (got_line, got)


def test_ipython_syntax_and_other_languages_are_not_refused():
    text = (HEADER + "```python exercise id=ex\nx = 1\n# --- setup ---\n%load_ext autoreload\n"
            "import asyncio\nawait asyncio.sleep(0)\n# --- tests ---\nassert x\n```\n")
    assert problems(text) == []
    sql = ("---\ntitle: S\nkernel: sql\n---\n```sql exercise id=q\nSELECT 1;\n-- --- tests ---\n"
           "SELECT CASE WHEN (SELECT 1) THEN 1 END;\n-- --- solution ---\nSELECT 1;\n```\n")
    assert problems(sql) == []


def test_solution_and_starter_passes():
    text = (HEADER + "```python exercise id=ex starter=passes\nprint(1)\n# --- expected output ---\n1\n"
            "# --- solution ---\n\nprint(1)\n\n# --- hint ---\nh\n```\n")
    [exercise] = parse_lesson(text, PATH, KERNELS).exercises
    assert (exercise.solution, exercise.starter_passes, exercise.solution_line) == ("print(1)\n", True, 9)
    assert parse_lesson(HEADER + EXERCISE, PATH, KERNELS).exercises[0].solution is None
    empty = HEADER + "```python exercise id=ex\nx\n# --- tests ---\nassert x\n# --- solution ---\n```\n"
    assert problems(empty) == [(9, "solution section is empty (exercise 'ex')", None)]


def test_jupyter_kernel_names_are_aliases_of_our_plugins():
    assert [resolve_kernel(name, KERNELS) for name in ("python", "python3", "ipython", "bash", "xsqlite",
                                                       "ruby", "python3x")] == \
        ["python", "python", "python", "bash", "sql", None, None]
    assert parse_lesson(HEADER.replace("python", "python3"), PATH, KERNELS).kernel == "python"


def test_a_slug_from_a_bad_file_name_says_how_to_fix_it():
    assert problems(HEADER, "course/Loops Intro.md") == [
        (1, "bad slug 'Loops Intro': use lowercase letters, digits and dashes",
         "the slug comes from the file name: rename the file or add `slug: ...` to the front matter")]


def test_a_notebook_as_jupyter_saves_it_runs_on_python3_and_says_where_the_title_goes():
    nb = new_notebook(cells=[new_markdown_cell("# Strings"), new_code_cell("print(1)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    [error] = read_notebook(nbformat.writes(nb), NB_PATH, KERNELS).errors
    assert error.message.startswith('metadata: missing title: add `title: ...` to the notebook '
                                    'metadata under "lessonserver"')
    assert "lessonserver lessons import" in error.message
    nb.metadata["lessonserver"] = {"title": "Strings", "slug": "strings"}
    assert read_notebook(nbformat.writes(nb), NB_PATH, KERNELS).lesson.kernel == "python"


def test_a_notebook_reports_every_error_by_cell():
    text = notebook([
        exercise_cell("x", exercise="a", tests="assert x = 1\n", solution="x = 1"),
        exercise_cell("x", exercise="b", expected="1", solutoin="x", starter="sometimes"),
    ], access="vip")
    assert [str(e) for e in read_notebook(text, NB_PATH, KERNELS).errors] == [
        f"{NB_PATH}: metadata: bad access 'vip': it must be free or paid",
        f"{NB_PATH}: cell 1: the hidden tests do not compile: line 1: invalid syntax",
        f"{NB_PATH}: cell 2: unknown exercise key 'solutoin' (did you mean `solution`?)",
        f"{NB_PATH}: cell 2: bad starter 'sometimes': it must be fails (the default) or passes",
    ]
    good = notebook([exercise_cell("x = 0", exercise="a", tests=["assert x == 1\n"], solution=["x = 1\n"],
                                   starter="fails")])
    [exercise] = parse_notebook(good, NB_PATH, KERNELS).exercises
    assert (exercise.solution, exercise.solution_line, exercise.starter_passes) == ("x = 1\n", 1, False)
    assert "x = 1" not in parse_notebook(good, NB_PATH, KERNELS).body


def test_near_miss_values_get_a_hint():
    assert problems("---\ntitle: Loops\nkernel: python\naccess: fre\n---\n") == [
        (4, "bad access 'fre': it must be free or paid", "did you mean `free`?")]


def test_hidden_code_is_compiled_for_the_kernel_that_runs_it_not_the_fence_label():
    text = HEADER + "```sql exercise id=ex\nSELECT 1;\n# --- tests ---\nSELECT 1;\n```\n"
    assert problems(text) == [(8, "the hidden tests do not compile: invalid syntax (exercise 'ex')", None)]
