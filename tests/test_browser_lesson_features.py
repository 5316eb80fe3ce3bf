"""Lesson features on the real lesson page (headless Chromium, `lessonserver serve` with
local-sandbox kernels): hints come one at a time as the learner asks; the solution of an exercise
with `reveal=2` opens only after two attempts (the server counts them), is recorded in the
learner's progress, and is still shown after a reload; runnable examples of the prose run in the
lesson's kernel with their own output, traced, not graded and not counted; an exercise's own
`memory=` stops its run with a message naming it, and the next exercise has the host's again."""
from __future__ import annotations

import sqlite3
import time

import pytest
from selenium.webdriver.common.by import By

from tests.serve_process import serve
from tests.test_browser import LessonPage, driver  # noqa: F401  (the headless Chromium fixture)

LESSON = '''\
---
title: Settings
slug: settings
kernel: python
---
```python exercise id=two reveal=2 timeout=5
print(1)
# --- expected output ---
2
# --- solution ---
print(1 + 1)
# --- hint ---
First hint: the output must be 2.
# --- hint ---
Second hint: change the number.
# --- hint ---
Third hint: print(2).
```
'''
EXAMPLES = """\
---
title: Examples
slug: examples
kernel: python
---
Run this:

```python runnable
x = 6 * 7
print(x)
```

The kernel keeps `x` for the next one:

```python runnable
x + 1
```

Only shown:

```python
print("not runnable")
```
"""
# The local sandbox caps address space at memory + 512 MiB of headroom: bytes() reserves 600
# MiB without writing them, beyond 64 + 512 and within the host's 512 + 512.
MEMORY = """\
---
title: Memory
slug: memory
kernel: python
---
```python exercise id=small memory=64
print(len(bytes(600 * 2**20)))
# --- expected output ---
629145600
```

```python exercise id=plain
print(len(bytes(600 * 2**20)))
# --- expected output ---
629145600
```
"""
START_TIMEOUT = 90   # a start imports ~5 s of CPU; a host shared by many test runs stretches it


@pytest.fixture(scope="module")
def site(tmp_path_factory, instance_name):
    root = tmp_path_factory.mktemp("settings")
    (root / "lessons").mkdir()
    (root / "lessons" / "settings.md").write_text(LESSON)
    (root / "lessons" / "examples.md").write_text(EXAMPLES)
    (root / "lessons" / "memory.md").write_text(MEMORY)
    env = {"LS_DATA_DIR": str(root / "data"), "LS_LESSONS_DIR": str(root / "lessons"),
           "LS_SANDBOX": "local", "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0",
           "LS_RUN_TIMEOUT": "10", "LS_MEMORY_MB": "512"}
    with serve(env, root / "serve.log", START_TIMEOUT) as base:
        yield base, root / "data" / "lessonserver.db"


def new_learner(driver, base: str, slug: str) -> LessonPage:  # noqa: F811
    """Each test is another learner (an anonymous visitor holds one kernel)."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.get("about:blank")
    driver.get_log("browser")
    return LessonPage(driver, base).open(slug).ready()


def visible_hints(page: LessonPage) -> list[str]:
    return [node.text for node in page.cell("two").find_elements(By.CSS_SELECTOR, "details.hint")
            if node.is_displayed()]


def test_hints_in_turn_and_the_solution_after_two_attempts(site, driver):  # noqa: F811
    base, database = site
    page = new_learner(driver, base, "settings")
    hint = page.button("two", "hint")
    assert visible_hints(page) == [] and hint.text == "Show hint 1 of 3"
    hint.click()
    assert visible_hints(page) == ["Hint 1\nFirst hint: the output must be 2."]
    assert hint.text == "Show hint 2 of 3"
    hint.click()
    hint.click()
    assert len(visible_hints(page)) == 3 and not hint.is_displayed()

    solution = page.button("two", "solution")
    note = page.find(".solution-note", page.cell("two"))
    assert not solution.is_enabled() and "(2 more)" in note.text
    # Asking anyway (as a hand-made frame would) is refused by the server's own count.
    driver.execute_script("window.lessonserver.page.send({type: 'solution', exercise: 'two'})")
    page.wait(lambda d: "2 more to go" in note.text, 10, "the server did not refuse")
    assert not page.cell("two").find_element(By.CSS_SELECTOR, "details.solution").is_displayed()

    for attempt in (1, 2):
        page.button("two", "run").click()
        page.wait(lambda d: not page.running("two") and page.banner("two", 60), 60, f"run {attempt}")
        assert page.banner("two").startswith("✗")
    assert solution.is_enabled()
    solution.click()
    shown = page.find("details.solution", page.cell("two"))
    page.wait(lambda d: shown.is_displayed(), 10, "the solution never came")
    assert "print(1 + 1)" in shown.text and not solution.is_displayed()
    with sqlite3.connect(database) as db:
        [(attempts, shown_at)] = db.execute(
            "SELECT attempts, solution_shown_at FROM progress WHERE exercise_id = 'two'").fetchall()
    assert attempts == 2 and shown_at is not None

    page.open("settings").ready()        # recorded: the reload shows it again
    assert "print(1 + 1)" in page.find("details.solution", page.cell("two")).text
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_runnable_examples_run_in_the_lessons_kernel_unchecked_and_traced(site, driver):  # noqa: F811
    base, database = site
    page = new_learner(driver, base, "examples")
    examples = driver.find_elements(By.CSS_SELECTOR, "section.example[data-example]")
    assert len(examples) == 2       # the plain block has no Run button
    assert driver.find_elements(By.CSS_SELECTOR, "section.exercise") == []

    def run(example) -> str:
        button = example.find_element(By.CSS_SELECTOR, 'button[data-action="run"]')
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()
        page.wait(lambda d: button.is_enabled() and example.find_element(
            By.CSS_SELECTOR, ".output").text, 60, "the example never finished")
        return example.find_element(By.CSS_SELECTOR, ".output").text

    assert run(examples[0]) == "42"
    assert run(examples[1]) == "43"             # the same kernel: x is still there
    assert page.find(".kernel-bar").get_attribute("data-state") == "idle"
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM progress WHERE lesson_slug = 'examples'").fetchone() == (0,)
    traced = []
    deadline = time.monotonic() + 15            # trace batches are written a moment later
    while time.monotonic() < deadline and len(traced) < 2:
        with sqlite3.connect(database) as db:
            traced = db.execute("SELECT exercise_id, code FROM runs WHERE lesson_slug = 'examples' "
                                "ORDER BY code").fetchall()
        time.sleep(0.2)
    assert traced == [(None, "x + 1\n"), (None, "x = 6 * 7\nprint(x)\n")]
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_an_exercise_is_held_to_its_own_memory_limit_and_the_next_one_is_not(site, driver):  # noqa: F811
    base, _ = site
    page = new_learner(driver, base, "memory")
    for exercise in ("small", "plain"):       # one kernel: lowered for the first, raised back
        page.button(exercise, "run").click()
        page.wait(lambda d: not page.running(exercise) and page.banner(exercise, 60), 60, exercise)
    assert "used more than 64 MiB of memory" in page.banner("small"), page.banner("small")
    assert page.banner("plain").startswith("✓"), (page.banner("plain"), page.output("plain"))
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
