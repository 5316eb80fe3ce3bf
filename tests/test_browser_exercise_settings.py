"""Per-exercise settings on the real lesson page (headless Chromium, `lessonserver serve` with
local-sandbox kernels): hints come one at a time as the learner asks; the solution of an exercise
with `reveal=2` opens only after two attempts (the server counts them), is recorded in the
learner's progress, and is still shown after a reload."""
from __future__ import annotations

import sqlite3

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
START_TIMEOUT = 90   # a start imports ~5 s of CPU; a host shared by many test runs stretches it


@pytest.fixture(scope="module")
def site(tmp_path_factory, instance_name):
    root = tmp_path_factory.mktemp("settings")
    (root / "lessons").mkdir()
    (root / "lessons" / "settings.md").write_text(LESSON)
    env = {"LS_DATA_DIR": str(root / "data"), "LS_LESSONS_DIR": str(root / "lessons"),
           "LS_SANDBOX": "local", "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0",
           "LS_RUN_TIMEOUT": "10"}
    with serve(env, root / "serve.log", START_TIMEOUT) as base:
        yield base, root / "data" / "lessonserver.db"


def visible_hints(page: LessonPage) -> list[str]:
    return [node.text for node in page.cell("two").find_elements(By.CSS_SELECTOR, "details.hint")
            if node.is_displayed()]


def test_hints_in_turn_and_the_solution_after_two_attempts(site, driver):  # noqa: F811
    base, database = site
    page = LessonPage(driver, base).open("settings").ready()
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
