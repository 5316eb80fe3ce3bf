"""`lessons check --run`: every starter must fail and every solution pass, in real kernels of
the local sandbox and of Docker; broken fixtures are reported as file:line: message; the
bundled course and the README's worked examples rehearse clean, in well under two minutes."""
from __future__ import annotations

import json
import re
import subprocess
import time
import uuid

import pytest
from click.testing import CliRunner

from server.cli import main
from server.config import PROJECT_ROOT
from kernels.result import Output, RunLimits, RunResult, RunStatus
from server.course.grade import Verdict
from server.course.model import Check, CheckKind, Exercise, Lesson
from server.course.rehearsal import Rehearsal, problems, rehearse
from tests import services
from tests.test_course_readme import as_lesson, examples

BUDGET = 120.0   # seconds for the bundled course: CI runs it on every change

# --- the rule, on plain values -------------------------------------------------

PASS, FAIL = Verdict(True, "All checks passed."), Verdict(False, "squares should have 10 numbers")


def rehearsal(path="c/l.md", starter=FAIL, solution=PASS, starter_passes=False, setup_error=None):
    exercise = Exercise("sq", "Squares", "python", "squares = []\n", Check(CheckKind.TESTS, code="assert 0"),
                        line=12, solution="x\n", starter_passes=starter_passes, solution_line=20)
    lesson = Lesson("l", "L", "", "python", False, 0, (), (exercise,), "", path, "c")
    return Rehearsal(lesson, exercise, starter, solution, setup_error)


@pytest.mark.parametrize("case, expected", [
    (rehearsal(), []),
    (rehearsal(solution=None), []),
    (rehearsal(starter_passes=True, starter=PASS), []),
    (rehearsal(starter=PASS), ["c/l.md:12: the untouched starter already passes its check (exercise 'sq') "
                               "(make the check stricter, or write `starter=passes` in the fence if that "
                               "is intended)"]),
    (rehearsal(solution=FAIL), ["c/l.md:20: the solution fails its check: squares should have 10 numbers "
                                "(exercise 'sq')"]),
    (rehearsal(starter_passes=True), ["c/l.md:12: starter=passes, but the starter fails: squares should "
                                      "have 10 numbers (exercise 'sq')"]),
    (rehearsal(setup_error="NameError: x", solution=None),
     ["c/l.md:12: the hidden setup fails: NameError: x (exercise 'sq')"]),
    (rehearsal(path="c/n.ipynb", solution=FAIL),
     ["c/n.ipynb: cell 20: the solution fails its check: squares should have 10 numbers (exercise 'sq')"]),
])
def test_what_a_rehearsal_shows_the_author(case, expected):
    assert [str(error) for error in problems(case)] == expected


# --- real kernels --------------------------------------------------------------

BROKEN = '''---
title: Broken
kernel: python
---
```python exercise id=good
squares = []
# --- tests ---
assert squares == [1, 4, 9], f"squares is {squares}"
# --- solution ---
squares = [n * n for n in range(1, 4)]
```

```python exercise id=starter-passes
print("hi")
# --- expected output ---
hi
# --- solution ---
print("hi")
```

```python exercise id=wrong-solution
def f(x):
    ...
# --- tests ---
assert f(0) == 32, f"f(0) should be 32, got {f(0)!r}"
# --- solution ---
def f(x):
    return x * 9 / 5 + 31
```

```python exercise id=test-misspelled
total = 0
# --- tests ---
assert totl == 6
# --- solution ---
total = 6
```

```python exercise id=setup-breaks
# x is given
# --- setup ---
x = 1 / 0
# --- tests ---
assert x
```

```python exercise id=demo starter=passes
print(2 + 2)
# --- expected output ---
5
```

```python exercise id=endless
done = False
while True:
    pass
# --- tests ---
assert done, "not done"
# --- solution ---
done = True
```
'''

SHELL = as_lesson("bash", '''```bash exercise id=echo
# print hello
# --- expected output ---
hello
# --- solution ---
echo hi
```
''')

SQL = as_lesson("sql", '''```sql exercise id=one
SELECT ...
-- --- setup ---
DROP TABLE IF EXISTS t; CREATE TABLE t (a); INSERT INTO t VALUES (1);
-- --- expected output ---
1
-- --- solution ---
SELECT a FROM t;
```
''')


@pytest.fixture(params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox_env(request, tmp_path, instance_name):
    if request.param == "docker":
        services.ensure_docker()
    return {"LS_SANDBOX": request.param, "LS_DATA_DIR": str(tmp_path / "data"),
            "LS_INSTANCE": f"{instance_name}-{uuid.uuid4().hex[:6]}",
            # the endless starter costs this much; shorter risks a slow first run on a busy host
            "LS_RUN_TIMEOUT": "8",
            "LS_POOL_SIZE": "0"}


def run_check(env: dict[str, str], *args: str):
    started = time.monotonic()
    result = CliRunner().invoke(main, ["lessons", "check", "--run", *args], env=env)
    return result, time.monotonic() - started


def test_broken_fixtures_are_the_authors_errors_at_file_and_line(tmp_path, sandbox_env):
    folder = tmp_path / "course"
    folder.mkdir()
    for name, text in {"broken.md": BROKEN, "shell.md": SHELL, "query.md": SQL}.items():
        (folder / name).write_text(text)
    result, _ = run_check(sandbox_env, "--json", str(folder))
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["ran"], report["solutions"]) == (9, 7)
    found = sorted((e["path"].rsplit("/", 1)[1], e["line"], e["message"]) for e in report["errors"])
    assert found == [
        ("broken.md", 13, "the untouched starter already passes its check (exercise 'starter-passes')"),
        ("broken.md", 26, "the solution fails its check: f(0) should be 32, got 31.0 "
                          "(exercise 'wrong-solution')"),
        ("broken.md", 35, "the solution fails its check: NameError: name 'totl' is not defined "
                          "(exercise 'test-misspelled')"),
        ("broken.md", 39, "the hidden setup fails: ZeroDivisionError: division by zero "
                          "(exercise 'setup-breaks')"),
        ("broken.md", 47, "starter=passes, but the starter fails: Line 1 of the output differs.\n"
                          "  expected: '5'\n  got:      '4' (exercise 'demo')"),
        ("shell.md", 9, "the solution fails its check: Line 1 of the output differs.\n"
                        "  expected: 'hello'\n  got:      'hi' (exercise 'echo')"),
    ]
    assert not leftover_containers(sandbox_env)


def leftover_containers(env: dict[str, str]) -> list[str]:
    if env["LS_SANDBOX"] != "docker":
        return []
    return subprocess.run(["docker", "ps", "-aq", "--filter",
                           f"label=lessonserver.instance={env['LS_INSTANCE']}-check"],
                          capture_output=True, text=True, check=True).stdout.split()


def test_the_bundled_course_rehearses_clean_within_budget(sandbox_env, capsys):
    result, seconds = run_check({**sandbox_env, "LS_RUN_TIMEOUT": "10"}, str(PROJECT_ROOT / "lessons"))
    assert result.exit_code == 0, result.output
    assert re.match(r"6 lessons in 3 courses, 23 exercises run \(23 with a solution\), 0 errors",
                    result.stdout)
    with capsys.disabled():
        print(f"\nlessons check --run lessons/ on {sandbox_env['LS_SANDBOX']}: {seconds:.1f} s")
    assert seconds < BUDGET


def test_the_readme_worked_examples_rehearse_clean(tmp_path, sandbox_env):
    folder = tmp_path / "examples"
    folder.mkdir()
    for number, (language, block) in enumerate(examples()):
        (folder / f"example-{number}.md").write_text(as_lesson(language, block))
    result, _ = run_check(sandbox_env, str(folder))
    assert result.exit_code == 0, result.output


def test_a_kernel_that_cannot_start_is_reported_per_exercise(tmp_path, make_settings):
    (tmp_path / "r.md").write_text(BROKEN.replace("kernel: python", "kernel: ruby"))
    result = CliRunner().invoke(main, ["lessons", "check", "--run", "--kernel", "ruby", str(tmp_path)],
                                env={"LS_DATA_DIR": str(tmp_path / "data"), "LS_POOL_SIZE": "0",
                                     "LS_INSTANCE": f"t-{uuid.uuid4().hex[:8]}"})
    assert result.exit_code == 1
    assert f"{tmp_path / 'r.md'}:5: could not run in a 'ruby' kernel: no kernel plugin named 'ruby' " \
           "(exercise 'good')" in result.stderr


def test_a_solution_that_kills_its_kernel_is_reported_in_plain_words(tmp_path, sandbox_env):
    (tmp_path / "d.md").write_text(as_lesson("python", '''```python exercise id=dies
x = 0
# --- tests ---
assert x == 1, "x should be 1"
# --- solution ---
import os
os._exit(1)
```
'''))
    result, _ = run_check(sandbox_env, str(tmp_path))
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{tmp_path / 'd.md'}:9: the solution fails its check: "), line


class FlakyHost:
    """KernelManager's run API over plain values: the first kernel dies in its first run."""
    def __init__(self) -> None:
        self.started = 0

    async def start(self, owner: str, plugin: str, tier=None):
        self.started += 1
        return type("Kernel", (), {"id": f"k{self.started}"})

    def limits(self, plugin: str) -> RunLimits:
        return RunLimits()

    async def execute(self, kernel_id: str, code: str, limits=None, on_output=None, on_input=None,
                      store_history=True):
        if kernel_id == "k1":
            return RunResult(RunStatus.DIED, message="The kernel did not answer")
        return RunResult(RunStatus.OK, (Output("stream", name="stdout", text=code),))

    async def shutdown(self, kernel_id: str, reason: str = "") -> None:
        pass


async def test_a_kernel_lost_by_the_host_is_tried_once_more():
    exercise = Exercise("e", "E", "python", "print()\n", Check(CheckKind.OUTPUT, expected="ok\n"), line=5,
                        solution="ok\n", solution_line=9)
    lesson = Lesson("l", "L", "", "python", False, 0, (), (exercise,), "", "c/l.md", "c")
    host = FlakyHost()
    report = await rehearse(host, [lesson])
    assert (host.started, report.errors) == (2, ())
