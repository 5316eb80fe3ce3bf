"""`serve --dev` in real headless Chromium: an edited lesson shows on its open page within about
a second, a broken one shows its errors (file:line) where it would be, and a fix brings it back.
The edit-to-page time is measured from just before the file is written to the moment the
page's DOM shows the new text (polled every 20 ms), as the median of a few edits."""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
from selenium.webdriver.support.ui import WebDriverWait

from server.course.loader import load_catalog
from server.library import build_library
from tests.serve_process import serve
from tests.test_browser import driver  # noqa: F401  (the headless Chromium fixture)

DRAFT = '''\
---
title: Draft
slug: draft
kernel: python
---
Revision {n} of the prose.

```python exercise id=shout
print("...")
# --- {section} ---
HELLO
```
'''
BROKEN_LINE = 10     # the misspelt marker, as the checker names it (after the fence's line 8)
EDITS = 3
START_TIMEOUT = 90   # a start imports ~5 s of CPU; a host shared by many test runs stretches it


def draft(n: int, section: str = "expected output") -> str:
    return DRAFT.format(n=n, section=section)


def test_a_broken_lesson_is_kept_with_its_errors_under_its_own_slug(tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    (course / "draft.md").write_text(draft(1, "expected outptu"))
    (course / "fine.md").write_text(draft(1).replace("slug: draft", "slug: fine"))
    library = build_library(load_catalog(course, frozenset({"python"})))
    assert library.catalog.lesson("draft") is None and library.catalog.lesson("fine")
    [error] = [e for e in library.problems["draft"] if e.line == BROKEN_LINE]
    assert Path(error.path).name == "draft.md" and "not a section marker" in error.message
    assert "expected output" in (error.hint or "")
    assert set(library.versions) == {"draft", "fine"} and "fine" not in library.problems


@pytest.fixture(scope="module")
def dev_site(tmp_path_factory, instance_name):
    root = tmp_path_factory.mktemp("dev")
    course = root / "lessons" / "authoring"
    course.mkdir(parents=True)
    (course / "course.yaml").write_text("title: Authoring\n")
    (course / "draft.md").write_text(draft(0))
    env = {"LS_DATA_DIR": str(root / "data"), "LS_LESSONS_DIR": str(root / "lessons"),
           "LS_SANDBOX": "local", "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0", "LS_DEV": "1"}
    with serve(env, root / "serve.log", START_TIMEOUT) as base:
        yield base, course / "draft.md"


def page_text(driver, css: str) -> str:
    return driver.execute_script(
        "const n = document.querySelector(arguments[0]); return n ? n.textContent : '';", css)


def shows(driver, css: str, text: str, timeout: float = 10) -> float:
    """Seconds until the element shows `text`."""
    started = time.monotonic()
    WebDriverWait(driver, timeout, poll_frequency=0.02).until(
        lambda d: text in page_text(d, css), f"{css} never showed {text!r}")
    return time.monotonic() - started


def test_the_open_page_follows_the_file(dev_site, driver):  # noqa: F811
    base, path = dev_site
    driver.get(f"{base}/lessons/draft")
    shows(driver, ".lesson-body", "Revision 0 of the prose")
    times = []
    for n in range(1, EDITS + 1):
        time.sleep(0.3)   # the page's long poll is waiting again
        started = time.monotonic()
        path.write_text(draft(n))
        shows(driver, ".lesson-body", f"Revision {n} of the prose")
        times.append(time.monotonic() - started)
    median = statistics.median(times)
    print(f"\nedit-to-page: median {median * 1000:.0f} ms of {[round(t * 1000) for t in times]} ms")
    assert median < 1.0, times

    path.write_text(draft(EDITS + 1, "expected outptu"))
    shows(driver, ".lesson-errors", f"draft.md:{BROKEN_LINE}: not a section marker")
    assert "did you mean `# --- expected output ---`?" in page_text(driver, ".lesson-errors")

    path.write_text(draft(EDITS + 2))
    shows(driver, ".lesson-body", f"Revision {EDITS + 2} of the prose")
    assert driver.execute_script("return document.querySelectorAll('section.exercise').length") == 1
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_without_dev_mode_there_is_no_watcher_route():
    from server.handlers import dev
    assert dev.routes(object(), None) == []
    [(pattern, handler, _)] = dev.routes(object(), object())
    assert handler is dev.LessonVersionHandler and pattern.startswith("/_dev/")
