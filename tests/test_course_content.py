"""Every bundled exercise is solvable and its check can fail: its reference solution (the
hidden `solution` section) passes and the untouched starter does not. A fast stand-in for
`lessons check --run` (tests/test_course_rehearsal.py runs it in real kernels): real Python,
bash and SQLite in the order the server runs an exercise: setup, the code, hidden tests."""
from __future__ import annotations

import contextlib
import io
import sqlite3
import subprocess
import traceback

import pytest

from kernels.result import Output, RunResult, RunStatus
from server.config import PROJECT_ROOT
from server.course.grade import grade
from server.course.loader import load_catalog
from server.course.model import CheckKind, Exercise

CATALOG = load_catalog(PROJECT_ROOT / "lessons", frozenset({"python", "bash", "sql"}))

EXERCISES = {(lesson.slug, ex.id): (lesson.kernel, ex)
             for course in CATALOG.courses for lesson in course.lessons for ex in lesson.exercises}


def stdout(text: str) -> tuple[Output, ...]:
    return (Output("stream", name="stdout", text=text),) if text else ()


class PythonKernel:
    def __init__(self) -> None:
        self.namespace: dict = {}

    def run(self, code: str) -> RunResult:
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, "<cell>", "exec"), self.namespace)
        except Exception as exc:
            error = Output("error", ename=type(exc).__name__, evalue=str(exc),
                           traceback=tuple(traceback.format_exception(exc)))
            return RunResult(RunStatus.ERROR, (*stdout(out.getvalue()), error))
        return RunResult(RunStatus.OK, stdout(out.getvalue()))


class BashKernel:
    """State carries over like in one kernel: each run replays the earlier code, output discarded."""
    def __init__(self) -> None:
        self.history = ""

    def run(self, code: str) -> RunResult:
        script = f"{{ :\n{self.history}}} >/dev/null 2>&1\n{code}\n"
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
        self.history += code + "\n"
        if done.returncode:
            error = Output("error", ename="", evalue=str(done.returncode))
            return RunResult(RunStatus.ERROR, (*stdout(done.stdout + done.stderr), error))
        return RunResult(RunStatus.OK, stdout(done.stdout))


class SqlKernel:
    """Rows as the lesson says the sql kernel prints them: values joined by |, no header."""
    def __init__(self) -> None:
        self.db = sqlite3.connect(":memory:")

    def run(self, code: str) -> RunResult:
        lines = []
        try:
            for statement in self.statements(code):
                for row in self.db.execute(statement):
                    lines.append("|".join("" if v is None else str(v) for v in row))
        except sqlite3.Error as exc:
            return RunResult(RunStatus.ERROR, (Output("error", ename=type(exc).__name__, evalue=str(exc)),))
        return RunResult(RunStatus.OK, stdout("".join(line + "\n" for line in lines)))

    @staticmethod
    def statements(code: str) -> list[str]:
        found, pending = [], ""
        for line in code.splitlines(keepends=True):
            pending += line
            if sqlite3.complete_statement(pending):
                found.append(pending)
                pending = ""
        code_left = any(line.strip() and not line.strip().startswith("--") for line in pending.splitlines())
        return found + ([pending] if code_left else [])


KERNELS = {"python": PythonKernel, "bash": BashKernel, "sql": SqlKernel}


def attempt(kernel_name: str, exercise: Exercise, code: str):
    kernel = KERNELS[kernel_name]()
    if exercise.setup:
        assert kernel.run(exercise.setup).status is RunStatus.OK, "the hidden setup itself fails"
    result = kernel.run(code)
    if exercise.check.kind is CheckKind.TESTS and result.status is RunStatus.OK:
        result = kernel.run(exercise.check.code)
    return grade(exercise.check, result)


def test_every_bundled_exercise_has_a_reference_solution():
    assert len(EXERCISES) == 23
    assert [key for key, (_, ex) in EXERCISES.items() if not ex.solution] == []


@pytest.mark.parametrize("key", sorted(EXERCISES), ids="/".join)
def test_the_solution_passes_and_the_starter_fails(key):
    kernel, exercise = EXERCISES[key]
    verdict = attempt(kernel, exercise, exercise.solution)
    assert verdict.passed, verdict.message
    verdict = attempt(kernel, exercise, exercise.starter)
    assert not verdict.passed
    assert verdict.message.strip()
