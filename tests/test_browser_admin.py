"""The admin pages in real headless Chromium against a real `lessonserver serve`, with traced
runs in its database: sign-in, the overview, the runs list at 1280 px in the viewer's zone, one
run, a bad filter, the outbox. Screenshots go to .test-artifacts/."""
from __future__ import annotations

import os
import shutil

import pytest
from selenium.webdriver.common.by import By

import datetime as dt
import sqlite3

from kernels.result import Output, RunResult, RunStatus
from server.tracing.tracer import RunTracer
from tests.admin_support import FAILED, OK, TIMEOUT, TOKEN, traced
from tests.serve_process import serve
from server.config import PROJECT_ROOT
from tests.test_browser import ARTIFACTS, driver, wait  # noqa: F401  (the headless Chromium fixture)
from workers.trace_store import open_store


README_SHOT = PROJECT_ROOT / "static" / "img" / "admin-overview.png"


@pytest.fixture(scope="module")
def site(tmp_path_factory, instance_name):
    root = tmp_path_factory.mktemp("browser-admin")
    env = {"LS_DATA_DIR": str(root / "data"), "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0",
           "LS_API_TOKEN": TOKEN}
    with serve(env, root / "serve.log") as base:
        store = open_store(f"sqlite:///{root / 'data' / 'lessonserver.db'}")
        store.write([event for i in range(60) for event in traced(
            f"{i % 7:x}" * 32, f"exercise-with-a-long-name-{i % 5}", i / 10,
            [OK, TIMEOUT, FAILED][i % 3], code=f"print({i})\nx = {i} / {i % 4}")])
        runs = learners_runs()
        store.write([event for events, _ in runs for event in events])
        store.close()
        seed_people(root / "data" / "lessonserver.db", runs)
        yield base


LESSON = "values-and-printing"
STEPS = ("hello", "seconds-in-a-day", "greeting", "add-the-texts")


def learners_runs() -> list[tuple[list, tuple[str, str, bool]]]:
    """Twelve learners through the first bundled lesson three days ago (out of the overview's
    24 h): each goes one exercise less far than the last, failing a few times on the way."""
    runs = []
    for learner in range(12):
        user = f"{learner:02d}" * 16
        for step, exercise in enumerate(STEPS[:4 - learner % 4]):
            for attempt in range(1 + (learner + step) % 3):
                passed = attempt == (learner + step) % 3 and learner % 5 != 4
                error = None if passed or attempt % 2 else Output(
                    "error", ename=("SyntaxError", "NameError")[step % 2],
                    evalue=("invalid syntax (381.py, line 2)", "name 'total' is not defined")[step % 2])
                events = []
                tracer = RunTracer(events.append, clock=lambda: (
                    dt.datetime.now(dt.timezone.utc).timestamp() - 3 * 86400 + learner * 60 + step * 10 + attempt))
                tracer.requested(user_id=user, lesson_slug=LESSON, exercise_id=exercise,
                                 kernel="python", code="total = 1\nprint(total)")
                if error is not None:
                    tracer.output(error)
                tracer.verdict(passed)
                tracer.finished(RunResult(RunStatus.ERROR if error else RunStatus.OK))
                runs.append((events, (user, exercise, passed)))
    return runs


def seed_people(path, runs) -> None:
    """The learners' rows and the progress their runs left, and one account to find by email."""
    with sqlite3.connect(path) as conn:
        for events, (user, exercise, passed) in runs:
            conn.execute("INSERT OR IGNORE INTO users (id, email) VALUES (?, ?)",
                         (user, f"learner{user[:2]}@example.org"))
            conn.execute("INSERT INTO progress (user_id, lesson_slug, exercise_id, status, attempts)"
                         " VALUES (?, ?, ?, ?, 1) ON CONFLICT DO UPDATE SET attempts = attempts + 1,"
                         " status = CASE WHEN status = 'passed' THEN 'passed' ELSE excluded.status END",
                         (user, LESSON, exercise, "passed" if passed else "failed"))


def shoot(driver, name: str) -> None:
    """Into .test-artifacts/; LS_TEST_SCREENSHOT=1 also copies the overview to static/img/ for
    the README (a test run must not dirty the checkout otherwise)."""
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(height + 140, 3000))
    driver.save_screenshot(str(ARTIFACTS / name))
    driver.set_window_size(1280, 900)
    assert (ARTIFACTS / name).stat().st_size > 20_000
    if os.environ.get("LS_TEST_SCREENSHOT") == "1" and name == "admin-overview.png":
        shutil.copyfile(ARTIFACTS / name, README_SHOT)


def test_admin_pages_in_chromium(site, driver):
    driver.set_window_size(1280, 900)
    driver.get("about:blank")
    driver.delete_all_cookies()
    driver.get_log("browser")
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    driver.get(site + "/admin")
    assert "/admin/login" in driver.current_url                 # nothing without signing in
    driver.find_element(By.NAME, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait(driver, lambda d: d.find_elements(By.ID, "by-status"))
    assert driver.current_url.endswith("/admin")
    driver.get(site + "/admin?range=24h")
    status = driver.find_element(By.ID, "by-status").text
    assert "ok 20" in status and "limit 20" in status and "error 20" in status
    assert driver.find_element(By.ID, "error-rate").text == "33.3 %"
    assert "API token sign-in" in driver.find_element(By.ID, "audit").text
    shoot(driver, "admin-overview.png")
    shown = driver.find_element(By.ID, "as-of").get_attribute("datetime")
    wait(driver, lambda d: d.find_element(By.ID, "as-of").get_attribute("datetime") != shown, 25)
    assert driver.find_element(By.ID, "live").get_attribute("data-refreshed")   # swapped, not reloaded
    assert "GMT+9" in driver.find_element(By.ID, "as-of").text or \
        "JST" in driver.find_element(By.ID, "as-of").text                      # in the viewer's zone

    driver.get(site + "/admin/runs?size=50")
    widths = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth,"
        " document.querySelector('table.runs').getBoundingClientRect().right]")
    assert widths[0] <= widths[1] and widths[2] <= widths[1], f"overflows at 1280 px: {widths}"
    first = driver.find_element(By.CSS_SELECTOR, "table.runs tbody time")
    assert "UTC" in first.get_attribute("title") and "Asia/Tokyo" in first.get_attribute("title")
    assert "UTC" not in first.text and ("GMT+9" in first.text or "JST" in first.text), first.text
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")) == 50
    assert driver.find_element(By.CSS_SELECTOR, "a[rel=next]")
    shoot(driver, "admin-runs.png")

    driver.find_element(By.LINK_TEXT, "Total").click()            # sort, kept in the URL
    assert "sort=total" in driver.current_url
    driver.find_element(By.CSS_SELECTOR, "table.runs tbody tr a").click()
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "table.timeline"))
    main = driver.find_element(By.TAG_NAME, "main").text
    assert "None" not in main and "requested" in main and "finished" in main
    assert len(driver.find_elements(By.CSS_SELECTOR, "ol.code li")) == 2
    shoot(driver, "admin-run.png")

    driver.get(site + "/admin/runs?status=timeout")
    rows = driver.find_elements(By.CSS_SELECTOR, "table.runs tbody tr")
    assert len(rows) == 20 and all("timeout" in row.text for row in rows)
    driver.get(site + "/admin/runs?status=slow")
    assert "status 'slow' is not one we record" in driver.find_element(By.CSS_SELECTOR, ".notice").text

    driver.get(site + "/admin/learning")
    row = driver.find_element(By.ID, f"lesson-{LESSON}").text
    assert row.startswith("Values and printing 4 12 "), row         # 4 exercises, 12 learners
    shoot(driver, "admin-learning.png")
    driver.find_element(By.LINK_TEXT, "Values and printing").click()
    wait(driver, lambda d: d.find_elements(By.ID, "funnel"))
    reached = [int(cell.text) for cell in driver.find_elements(
        By.CSS_SELECTOR, "#funnel tbody tr td:nth-child(2)")]
    assert reached == [12, 9, 6, 3], reached                       # where learners stop
    assert "SyntaxError" in driver.find_element(By.ID, "errors-hello").text
    widths = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"overflows at 1280 px: {widths}"
    shoot(driver, "admin-lesson-learning.png")

    driver.get(site + "/admin/users?q=learner03")
    rows = driver.find_elements(By.CSS_SELECTOR, "#users tbody tr")
    assert len(rows) == 1 and "learner03@example.org" in rows[0].text and "free" in rows[0].text
    shoot(driver, "admin-users.png")
    rows[0].find_element(By.TAG_NAME, "a").click()
    wait(driver, lambda d: d.find_elements(By.ID, "grant"))
    until = (dt.date.today() + dt.timedelta(days=30))
    driver.execute_script("document.querySelector('input[name=until]').value = arguments[0]",
                          until.isoformat())
    driver.find_element(By.NAME, "reason").send_keys("a speaker at the meetup")
    driver.find_element(By.XPATH, "//button[text()='Grant access']").click()
    wait(driver, lambda d: "Revoke access" in d.find_element(By.TAG_NAME, "main").text)
    assert "paid: granted until" in driver.find_element(By.ID, "access").text
    audit = driver.find_element(By.ID, "audit").text
    assert "API token grant-access" in audit and "a speaker at the meetup" in audit
    shoot(driver, "admin-user.png")

    driver.get(site + "/admin/operations")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Operations"
    assert "signups_open" in driver.find_element(By.ID, "flags").text
    driver.find_element(By.CSS_SELECTOR, '#ops-pools tr[data-pool="python"] button').click()
    wait(driver, lambda d: "drained" in d.find_element(By.CSS_SELECTOR,
                                                       '#ops-pools tr[data-pool="python"]').text)
    driver.find_element(By.CSS_SELECTOR, 'form[action="/admin/lessons/reload"] button').click()
    wait(driver, lambda d: d.find_elements(By.ID, "reload-applied"))
    shoot(driver, "admin-operations.png")

    driver.get(site + "/admin/outbox")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Emails"
    shoot(driver, "admin-outbox.png")
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
              and "status of 400" not in entry["message"]]
    assert errors == [], errors
