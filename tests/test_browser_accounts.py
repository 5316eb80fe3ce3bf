"""Sign-up, confirmation, log-out and log-in in real headless Chromium against a real
`lessonserver serve` (embedded mode: the confirmation link is read from its email log)."""
from __future__ import annotations

import sqlite3
import time

import pytest
from selenium.webdriver.common.by import By

from tests.accounts_support import LINK
from tests.serve_process import serve
from tests.test_browser import driver, wait  # noqa: F401  (the headless Chromium fixture)

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def site(tmp_path_factory, instance_name):
    root = tmp_path_factory.mktemp("browser-accounts")
    env = {"LS_DATA_DIR": str(root / "data"), "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0"}
    with serve(env, root / "serve.log") as base:
        yield base, root / "data" / "lessonserver.db"


def fill(driver, **fields: str) -> None:
    for name, value in fields.items():
        box = driver.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()


def account_nav(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "nav.account").text


def emailed_link(database, kind: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with sqlite3.connect(database) as conn:
            row = conn.execute("SELECT outbox FROM email_log WHERE kind = ? AND outbox IS NOT NULL "
                               "ORDER BY created_at DESC LIMIT 1", (kind,)).fetchone()
        if row:
            return LINK.search(row[0]).group(1)
        time.sleep(0.1)
    raise AssertionError(f"no {kind} email")


def test_sign_up_confirm_log_out_and_log_in(site, driver):
    base, database = site
    driver.get("about:blank")
    driver.delete_all_cookies()
    driver.get_log("browser")
    driver.get(base + "/")
    assert "Log in" in account_nav(driver) and "Sign up" in account_nav(driver)
    driver.find_element(By.LINK_TEXT, "Sign up").click()
    fill(driver, email="ada@example.org", password=PASSWORD)
    wait(driver, lambda d: "Check your inbox" in d.find_element(By.TAG_NAME, "h1").text)

    driver.get(base + emailed_link(database, "verify"))
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    wait(driver, lambda d: "ada@example.org" in account_nav(d))
    cookies = {c["name"]: c for c in driver.get_cookies()}
    assert cookies["ls_session"]["httpOnly"] and cookies["ls_session"]["sameSite"] == "Lax"
    assert driver.execute_script("return document.cookie").find("ls_session") == -1

    driver.find_element(By.CSS_SELECTOR, "nav.account form.logout button").click()
    wait(driver, lambda d: "Log in" in account_nav(d))
    driver.get(base + "/account")
    assert "/login" in driver.current_url

    fill(driver, email="ada@example.org", password="wrong horse")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "p.error"))
    assert "do not match" in driver.find_element(By.CSS_SELECTOR, "p.error").text
    fill(driver, email="ada@example.org", password=PASSWORD)
    wait(driver, lambda d: d.current_url.endswith("/account"))    # back where it was sent from
    assert driver.find_element(By.ID, "account-email").text == "ada@example.org"
    assert "(this one)" in driver.find_element(By.CSS_SELECTOR, "table.sessions").text
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
                and "status of 400" not in e["message"]]       # the wrong password's own status
    assert problems == [], problems
