"""`lessonserver lessons import NOTEBOOK` on notebooks as Jupyter writes them (nbformat, kernel
`python3`, outputs, cell ids): the lesson metadata is written and the notebook then checks clean."""
from __future__ import annotations

import json

import nbformat
import pytest
from click.testing import CliRunner
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from server.cli import main
from server.course.importer import NotebookImportError, lesson_metadata
from server.course.notebook import read_notebook

KERNELS = frozenset({"python", "bash", "sql"})


def jupyter_notebook(kernel: str = "python3", language: str = "python", heading: str = "# Working with lists"):
    """A notebook the way Jupyter saves one after a session: kernelspec, language_info, outputs."""
    code = new_code_cell("fruits = ['apple', 'pear']\nprint(len(fruits))", execution_count=1,
                         outputs=[new_output("stream", name="stdout", text="2\n")])
    nb = new_notebook(cells=[new_markdown_cell(f"{heading}\n\nLists hold values in order."), code],
                      metadata={"kernelspec": {"name": kernel, "display_name": "Python 3 (ipykernel)",
                                               "language": language},
                                "language_info": {"name": language, "version": "3.11.2",
                                                  "mimetype": "text/x-python", "file_extension": ".py",
                                                  "codemirror_mode": {"name": "ipython", "version": 3},
                                                  "pygments_lexer": "ipython3",
                                                  "nbconvert_exporter": "python"}})
    return nb


def write(path, nb) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        nbformat.write(nb, handle)


def run(*args: str):
    return CliRunner().invoke(main, ["lessons", *args])


def test_a_jupyter_notebook_is_refused_with_where_the_title_goes_then_imported(tmp_path):
    path = tmp_path / "04-lists.ipynb"
    write(path, jupyter_notebook())
    result = run("check", str(path))
    assert result.exit_code == 1
    assert ('metadata: missing title: add `title: ...` to the notebook metadata under "lessonserver" '
            "(`lessonserver lessons import NOTEBOOK` writes it)") in result.stderr
    assert "kernel" not in result.stderr        # python3 is our python

    result = run("import", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{path}: lesson metadata written, 0 exercises, 0 errors"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["lessonserver"] == {"title": "Working with lists", "slug": "lists", "order": 4,
                                           "kernel": "python"}
    assert nb.metadata["kernelspec"]["name"] == "python3"          # Jupyter can still open it
    assert nb.cells[1].outputs[0]["text"] == "2\n"                 # nothing else touched
    result = run("check", str(path))
    assert result.exit_code == 0 and result.stdout.startswith("1 lessons in 1 courses, 0 errors")


def test_import_keeps_what_the_author_wrote_and_marked_exercises(tmp_path):
    nb = jupyter_notebook()
    nb.metadata["lessonserver"] = {"title": "My title", "access": "paid"}
    exercise = new_code_cell("squares = []\n")
    exercise.metadata["lessonserver"] = {"exercise": "squares", "tests": "assert squares == [1, 4]\n",
                                         "solution": "squares = [1, 4]\n"}
    nb.cells.append(exercise)
    path = tmp_path / "lists.ipynb"
    write(path, nb)
    result = run("import", str(path), "--order", "7")
    assert result.exit_code == 0, result.output
    assert "1 exercises, 0 errors" in result.stdout
    meta = json.loads(path.read_text())["metadata"]["lessonserver"]
    assert meta == {"title": "My title", "access": "paid", "slug": "lists", "order": 7, "kernel": "python"}
    once = path.read_text()
    assert run("import", str(path)).exit_code == 0 and path.read_text() == once   # idempotent
    lesson = read_notebook(once, str(path), KERNELS).lesson
    assert [ex.solution for ex in lesson.exercises] == ["squares = [1, 4]\n"]


def test_import_reports_the_errors_left_in_the_notebook(tmp_path):
    nb = jupyter_notebook()
    broken = new_code_cell("x = 0\n")
    broken.metadata["lessonserver"] = {"exercise": "x", "tests": "assert x = 1\n"}
    nb.cells.append(broken)
    path = tmp_path / "x.ipynb"
    write(path, nb)
    result = run("import", str(path))
    assert result.exit_code == 1
    assert f"{path}: cell 3: the hidden tests do not compile: line 1: invalid syntax" in result.stderr


@pytest.mark.parametrize("kernel, message", [
    ("ir", "kernel 'ir' is not one of ours (bash, python, sql): give one with --kernel"),
    ("", "the notebook names no kernel: give one with --kernel (bash, python, sql)"),
])
def test_import_refuses_a_kernel_we_do_not_run(kernel, message):
    nb = jupyter_notebook(kernel=kernel)
    with pytest.raises(NotebookImportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        lesson_metadata(nbformat.writes(nb), "stats", KERNELS)
    fixed = lesson_metadata(nbformat.writes(nb), "stats", KERNELS, kernel="python3")
    assert json.loads(fixed)["metadata"]["lessonserver"]["kernel"] == "python"


def test_titles_and_slugs_without_a_heading():
    nb = jupyter_notebook(heading="Some text, no heading")
    meta = json.loads(lesson_metadata(nbformat.writes(nb), "02_first_steps", KERNELS))["metadata"]
    assert meta["lessonserver"] == {"title": "First steps", "slug": "first-steps", "order": 2,
                                    "kernel": "python"}
    with pytest.raises(NotebookImportError, match="give one with --slug"):
        lesson_metadata(nbformat.writes(nb), "日本語", KERNELS)
