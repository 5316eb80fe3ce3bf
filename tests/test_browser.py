"""The learner's lesson page in real headless Chromium against a real `lessonserver serve`
(embedded mode, local-sandbox kernels): editor, streaming, verdicts, progress, input(),
interrupt and timeout, plots, untrusted HTML, reconnect, the paid lock, no console errors."""
from __future__ import annotations

import os
import shutil
import time

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from server.config import PROJECT_ROOT
from tests.serve_process import serve

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = PROJECT_ROOT / "static" / "img" / "screenshot.png"
ARTIFACTS = PROJECT_ROOT / ".test-artifacts"   # git-ignored; CI keeps what lands here
RUN_TIMEOUT = 6   # room for a first matplotlib import on a busy 2-core machine

LESSON = '''\
---
title: Browser practice
slug: practice
kernel: python
summary: Exercises the lesson page end to end.
---
Run each exercise with **Run** or Shift-Enter.

```python exercise id=hello title="Say hello"
print("...")
# --- expected output ---
hello
```

```python exercise id=add title="Add two numbers"
def add(a, b):
    return 0
# --- tests ---
assert add(2, 3) == 5, "add(2, 3) should be 5"
```

```python exercise id=ask title="Ask for a name"
name = input("name? ")
# --- expected output ---
hi Ada
```

```python exercise id=plot title="Plot the squares"
import matplotlib.pyplot as plt
squares = []
plt.plot(squares)
plt.show()
# --- tests ---
assert squares == [0, 1, 4, 9, 16], "squares should be [0, 1, 4, 9, 16]"
```
'''
WARMUP = '''\
---
title: Warm-up
slug: warmup
kernel: python
order: -1
---
```python exercise id=hi
print("...")
# --- expected output ---
hi
```
'''
PAID = '''\
---
title: Members only
slug: members
kernel: python
access: paid
---
```python exercise id=x
print(1)
# --- expected output ---
1
```
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory, instance_name):
    """`lessonserver serve` as `make run` starts it, on a course of two lessons."""
    root = tmp_path_factory.mktemp("browser")
    course = root / "lessons" / "practice"
    course.mkdir(parents=True)
    (course / "course.yaml").write_text("title: Practice\ndescription: drills\n")
    (course / "practice.md").write_text(LESSON)
    (course / "members.md").write_text(PAID)
    (course / "warmup.md").write_text(WARMUP)
    for bundled in ("sql", "shell"):          # the other two editor modes, with their kernels
        shutil.copytree(PROJECT_ROOT / "lessons" / bundled, root / "lessons" / bundled)
    env = {"LS_DATA_DIR": str(root / "data"),
           "LS_LESSONS_DIR": str(root / "lessons"), "LS_SANDBOX": "local",
           "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0", "LS_RUN_TIMEOUT": str(RUN_TIMEOUT)}
    with serve(env, root / "serve.log") as base:
        yield base


@pytest.fixture(scope="module")
def driver():
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1000",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM    # explicit paths: selenium-manager never downloads
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield chrome
    chrome.quit()


def wait(driver, condition, timeout: float = 15):
    """Until `condition`; an element replaced while it is read (a form's POST and redirect, a
    page's live refresh) is looked up again at the next poll instead of failing the test."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


class LessonPage:
    def __init__(self, driver, site: str) -> None:
        self.driver, self.site = driver, site

    def open(self, slug: str = "practice") -> "LessonPage":
        self.driver.get(f"{self.site}/lessons/{slug}")
        return self

    def ready(self) -> "LessonPage":
        self.wait(lambda d: d.execute_script("return !!(window.lessonserver && "
                                             "window.lessonserver.page.connected)"))
        return self

    def wait(self, condition, timeout: float = 20, message: str = ""):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)
                             ).until(condition, message)

    def find(self, css: str, within=None):
        return (within or self.driver).find_element(By.CSS_SELECTOR, css)

    def cell(self, exercise: str):
        return self.find(f'section.exercise[data-exercise="{exercise}"]')

    def set_code(self, exercise: str, code: str) -> None:
        self.driver.execute_script("window.lessonserver.editors[arguments[0]].setValue(arguments[1])",
                                   exercise, code)

    def code(self, exercise: str) -> str:
        return self.driver.execute_script("return window.lessonserver.editors[arguments[0]].getValue()",
                                          exercise)

    def button(self, exercise: str, action: str):
        button = self.find(f'button[data-action="{action}"]', self.cell(exercise))
        # Centred, so that the sticky kernel bar never covers what the test clicks.
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        return button

    def output(self, exercise: str) -> str:
        return self.find(".output", self.cell(exercise)).get_attribute("textContent")

    def banner(self, exercise: str, timeout: float = 20) -> str:
        node = self.find(".result-banner", self.cell(exercise))
        self.wait(lambda d: node.is_displayed(), timeout, f"no result for {exercise}")
        return node.text

    def running(self, exercise: str) -> bool:
        return "running" in self.cell(exercise).get_attribute("class").split()

    def progress(self) -> str:
        return self.find(".lesson-progress").text

    def kernel_state(self) -> str:
        return self.find(".kernel-bar").get_attribute("data-state")


@pytest.fixture
def page(driver, site):
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})   # every test is a new learner
    driver.execute_cdp_cmd("Storage.clearDataForOrigin",          # ... with no saved drafts
                           {"origin": site, "storageTypes": "local_storage"})
    driver.get("about:blank")
    driver.get_log("browser")                                     # start with an empty console
    yield LessonPage(driver, site)
    problems = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
                and "status of 402" not in entry["message"]]   # the paid page's own status
    assert problems == [], problems


def test_output_streams_verdicts_show_and_progress_survives_reload(page):
    page.open().ready()
    assert page.progress() == "0 of 4 exercises passed"
    assert page.code("hello") == 'print("...")'
    page.set_code("hello", "import sys, time\nprint('one', flush=True)\ntime.sleep(1.5)\n"
                           "print('two')\nprint('careful', file=sys.stderr)")
    page.button("hello", "run").click()
    page.wait(lambda d: "one" in page.output("hello"), 20, "first line never arrived")
    assert "two" not in page.output("hello") and page.running("hello")   # streamed, not batched
    banner = page.banner("hello")
    assert banner.startswith("✗") and "hello" in banner                  # the grader's words
    assert page.find(".stream-stdout", page.cell("hello")).text.split() == ["one", "two"]
    assert page.find(".stream-stderr", page.cell("hello")).text == "careful"

    # Typed for real: CodeMirror closes brackets and quotes, typing over them; Shift-Enter runs.
    editor = page.find(".cm-content", page.cell("hello"))
    editor.click()
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys('print("hello")')
    assert page.code("hello") == 'print("hello")'
    editor.send_keys(Keys.SHIFT, Keys.ENTER)
    page.wait(lambda d: "Passed" in page.banner("hello"), 20)
    assert page.banner("hello").startswith("✓")
    assert page.progress() == "1 of 4 exercises passed"
    assert page.cell("hello").get_attribute("data-status") == "passed"

    page.open().ready()
    assert page.progress() == "1 of 4 exercises passed"
    assert page.cell("hello").get_attribute("data-status") == "passed"
    assert "passed" in page.find(".exercise-badge", page.cell("hello")).text
    assert page.code("hello") == 'print("hello")'                       # the draft was kept
    assert page.driver.find_elements(By.CSS_SELECTOR, "script:not([src])") == []  # CSP-ready


def test_hidden_tests_fail_with_the_graders_message_then_reset(page):
    page.open().ready()
    page.set_code("add", "def add(a, b):\n    return a - b")
    page.button("add", "run").click()
    banner = page.banner("add")
    assert "add(2, 3) should be 5" in banner and not banner.startswith("✓")
    assert page.cell("add").get_attribute("data-status") == "failed"
    assert page.progress() == "0 of 4 exercises passed"
    take_screenshot(page.driver, ARTIFACTS / "failed-check.png")
    page.button("add", "reset").click()
    assert page.code("add") == "def add(a, b):\n    return 0"
    page.open().ready()
    assert page.code("add") == "def add(a, b):\n    return 0"
    assert page.cell("add").get_attribute("data-status") == "failed"


def test_keyboard_only_run_and_restart_forgets_variables(page):
    page.open().ready()
    editor = page.find(".cm-content", page.cell("hello"))
    editor.click()
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys("x = 41")
    editor.send_keys(Keys.CONTROL, Keys.ENTER)
    page.banner("hello")
    editor.send_keys(Keys.ESCAPE, Keys.TAB)    # out of the editor, onto its Run button
    focused = page.driver.switch_to.active_element
    assert focused.get_attribute("data-action") == "run" and focused.text == "Run"
    page.button("hello", "restart").click()
    page.wait(lambda d: "restarted" in page.find(".kernel-bar").text, 30)
    page.set_code("hello", "print(x + 1)")
    focused = page.button("hello", "run")
    focused.send_keys(Keys.ENTER)              # a real button: Enter presses it
    page.banner("hello")
    error = page.find(".output-error", page.cell("hello"))
    assert "NameError" in error.text and "\x1b" not in error.get_attribute("textContent")
    assert error.find_elements(By.CSS_SELECTOR, "span[class*=ansi-]")   # colours kept as classes


def test_interrupt_button_and_timeout_stop_an_endless_loop(page):
    page.open().ready()
    page.set_code("hello", "print('looping', flush=True)\nwhile True:\n    pass")
    page.button("hello", "run").click()
    page.wait(lambda d: "looping" in page.output("hello"), 20)
    interrupt = page.button("hello", "interrupt")
    assert interrupt.is_enabled()
    interrupt.click()
    banner = page.banner("hello", timeout=RUN_TIMEOUT - 0.5)   # sooner than the timeout
    assert "KeyboardInterrupt" in page.output("hello"), page.output("hello")
    assert not banner.startswith("✓")
    assert not interrupt.is_enabled()

    page.button("hello", "run").click()
    page.wait(lambda d: page.running("hello"), 5)
    page.wait(lambda d: not page.running("hello"), RUN_TIMEOUT + 15, "the timeout never hit")
    banner = page.banner("hello")
    assert banner.startswith(f"Your code ran longer than {RUN_TIMEOUT} s"), banner
    assert "endless loop" in banner
    assert "result-stopped" in page.find(".result-banner", page.cell("hello")).get_attribute("class")
    # The server stopped it: no KeyboardInterrupt for a key nobody pressed.
    assert "KeyboardInterrupt" not in page.output("hello") and "looping" in page.output("hello")


def test_tracebacks_name_the_line_of_the_learners_code(page):
    page.open().ready()
    for code, where, name in (("x = 1\ny = 0\nprint(x / y)", "Line 3 of your code", "ZeroDivisionError"),
                              ("x = 1\nprint('a'\ny = 2", "Line 2 of your code", "SyntaxError")):
        page.set_code("hello", code)
        page.button("hello", "run").click()
        page.banner("hello")
        error = page.find(".output-error", page.cell("hello")).text
        assert where in error and name in error, error
        assert "Cell In[" not in error and "ipykernel_" not in error and ".py" not in error, error


def test_after_a_reload_each_exercise_shows_its_last_run_and_the_badge_the_latest_state(page):
    page.open().ready()
    page.set_code("hello", 'print("hello")')
    page.button("hello", "run").click()
    assert page.banner("hello").startswith("✓")
    assert page.find(".exercise-badge", page.cell("hello")).text == "✓ passed"
    page.set_code("hello", "print('looping', flush=True)\nwhile True:\n    pass")
    page.button("hello", "run").click()
    assert page.banner("hello", timeout=RUN_TIMEOUT + 15).startswith("Your code ran longer")
    badge = page.find(".exercise-badge", page.cell("hello"))
    assert badge.text == "stopped (passed before)" and "badge-stopped" in badge.get_attribute("class")
    page.set_code("add", "def add(a, b):\n    return a - b")
    page.button("add", "run").click()
    assert "add(2, 3) should be 5" in page.banner("add")

    page.open().ready()
    assert page.banner("hello", timeout=5).startswith(f"Your code ran longer than {RUN_TIMEOUT} s")
    assert "looping" in page.output("hello") and "KeyboardInterrupt" not in page.output("hello")
    badge = page.find(".exercise-badge", page.cell("hello"))
    assert badge.text == "stopped (passed before)" and "badge-stopped" in badge.get_attribute("class")
    assert page.progress() == "1 of 4 exercises passed"            # passed once stays counted
    assert "add(2, 3) should be 5" in page.banner("add", timeout=5)
    assert "AssertionError" not in page.output("add")               # the check's kernel stays hidden
    assert not page.find(".result-banner", page.cell("ask")).is_displayed()   # never ran


def test_passing_the_last_exercise_is_a_lesson_complete_moment_with_what_comes_next(page):
    page.open("warmup").ready()
    assert page.driver.find_elements(By.CSS_SELECTOR, ".lesson-complete") == []
    page.set_code("hi", "print('no')")
    page.button("hi", "run").click()
    assert page.banner("hi").startswith("✗")
    assert page.driver.find_elements(By.CSS_SELECTOR, ".lesson-complete") == []
    page.set_code("hi", "print('hi')")
    page.button("hi", "run").click()
    assert page.banner("hi").startswith("✓")
    box = page.find(".lesson-complete")
    assert "Lesson complete" in box.text and "You passed all 1 exercise of this lesson." in box.text
    following = page.driver.execute_script("return arguments[0].previousElementSibling", box)
    assert following.get_attribute("data-exercise") == "hi"          # right below the run
    nav = page.find("nav.next a")
    link = page.find(".lesson-complete a.lesson-next")
    assert link.get_attribute("href") == nav.get_attribute("href") and link.text == nav.text
    assert link.text.startswith("Next: ")

    page.open("warmup").ready()                     # done before: said at the top, calmly
    box = page.find(".lesson-complete")
    assert "✓ Lesson complete" in box.text and "just-now" not in box.get_attribute("class")
    page.find(".lesson-complete a.lesson-next").click()
    page.wait(lambda d: "/lessons/warmup" not in d.current_url, 10)


def test_input_is_asked_in_the_page(page):
    page.open().ready()
    page.set_code("ask", "name = input('name? ')\nprint('hi', name)")
    page.button("ask", "run").click()
    field = page.find("form.stdin input", page.cell("ask"))
    page.wait(lambda d: field.is_displayed(), 20, "no input box")
    assert page.find("form.stdin label", page.cell("ask")).text.strip() == "name?"
    assert page.driver.switch_to.active_element == field
    field.send_keys("Ada", Keys.ENTER)
    assert page.banner("ask").startswith("✓")
    assert not field.is_displayed()
    assert "Ada" in page.output("ask") and "hi Ada" in page.output("ask")


def test_plot_shows_as_an_image_and_kernel_html_cannot_run_script(page):
    page.open().ready()
    page.set_code("hello", "from IPython.display import HTML, display\n"
                           "display(HTML('<b id=b>bold</b><script>parent.pwned = 1</script>'"
                           "             '<img src=x onerror=\"parent.pwned = 2\">'))\n"
                           "print('<script>window.pwned = 3</script>')")
    page.button("hello", "run").click()
    page.banner("hello")
    frame = page.find(".output iframe.output-html", page.cell("hello"))
    assert frame.get_attribute("sandbox") == ""
    assert "<script>window.pwned = 3</script>" in page.output("hello")   # shown as text
    assert page.driver.find_elements(By.CSS_SELECTOR, ".output script") == []
    time.sleep(0.3)
    assert page.driver.execute_script("return window.pwned") is None

    page.set_code("plot", "import matplotlib.pyplot as plt\n"
                          "squares = [n * n for n in range(5)]\n"
                          "plt.plot(squares, marker='o')\n"
                          "plt.title('Squares')\n"
                          "plt.show()")
    page.button("plot", "run").click()
    assert page.banner("plot", timeout=40).startswith("✓")
    image = page.find(".output img.output-image", page.cell("plot"))
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert page.driver.execute_script("return arguments[0].naturalWidth", image) > 100
    page.set_code("hello", 'print("hello")')
    page.button("hello", "run").click()
    assert page.banner("hello").startswith("✓")
    take_screenshot(page.driver, ARTIFACTS / "lesson.png")


def take_screenshot(driver, path) -> None:
    """The README's picture: the whole lesson, two exercises passed, the plot.

    Written to .test-artifacts/ (a test run must not dirty the checkout);
    LS_TEST_SCREENSHOT=1 copies it to static/img/screenshot.png for the README.
    """
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1100, min(height + 140, 2400))
    try:
        driver.execute_script("window.scrollTo(0, 0)")
        path.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(size["width"], size["height"])
    assert path.stat().st_size > 20_000
    if os.environ.get("LS_TEST_SCREENSHOT") == "1" and path.name == "lesson.png":
        shutil.copyfile(path, SCREENSHOT)


def test_a_dropped_socket_reconnects_and_runs_again(page):
    page.open().ready()
    page.driver.execute_script("window.lessonserver.page.connection.socket.close()")
    page.wait(lambda d: page.kernel_state() == "reconnecting", 5)
    assert "reconnecting" in page.find(".kernel-bar").text
    page.wait(lambda d: page.driver.execute_script("return window.lessonserver.page.connected"), 20)
    page.set_code("hello", "print('hello')")
    page.button("hello", "run").click()
    assert page.banner("hello").startswith("✓")


def test_a_page_whose_kernel_is_gone_after_a_reconnect_says_so_in_plain_words(page):
    """As after its process died behind the balancer (tests/test_load_balancer.py does that):
    the page's hello names a kernel the server does not hold, and the page tells the learner."""
    page.open().ready()
    page.set_code("hello", "print('hello')")
    page.button("hello", "run").click()
    assert page.banner("hello").startswith("✓")
    held = page.driver.execute_script("return window.lessonserver.page.kernelSession")
    assert held and len(held) == 16
    page.driver.execute_script("window.lessonserver.page.kernelSession = '0123456789abcdef';"
                               "window.lessonserver.page.connection.socket.close()")
    page.wait(lambda d: "variables from earlier runs are gone" in page.find(".kernel-bar").text, 20)
    page.button("hello", "run").click()
    page.wait(lambda d: "Your kernel was restarted while you were away" in page.output("hello"), 20)
    assert page.banner("hello").startswith("✓")
    assert page.driver.execute_script("return window.lessonserver.page.kernelSession") == held


@pytest.mark.parametrize("slug, exercise, code, token", [
    ("sql-select", "titles", "SELECT title FROM books ORDER BY title;", "SELECT"),
    ("shell-first-commands", "echo", 'echo "Hello, shell!"', '"Hello, shell!"'),
])
def test_sql_and_shell_lessons_highlight_and_pass(page, slug, exercise, code, token):
    page.open(slug).ready()
    titles = [h1.text for h1 in page.driver.find_elements(By.CSS_SELECTOR, "h1")]
    assert len(titles) == 1, titles                # the lesson file opens with it too: shown once
    page.set_code(exercise, code)
    line = page.find(".cm-line", page.cell(exercise))
    highlighted = [span.text for span in line.find_elements(By.CSS_SELECTOR, "span")]
    assert token in highlighted, highlighted       # the language mode tokenised it
    page.button(exercise, "run").click()
    assert page.banner(exercise, timeout=30).startswith("✓"), page.output(exercise)


def test_paid_lesson_shows_the_lock_and_opens_no_socket(page):
    page.open("members")
    assert "paid course" in page.find("article.lesson").text
    assert page.driver.find_elements(By.CSS_SELECTOR, ".cm-editor, .kernel-bar") == []
    with pytest.raises(TimeoutException):
        page.wait(lambda d: d.execute_script("return !!window.lessonserver"), 0.5)


def test_a_runs_first_output_or_input_request_is_its_start(page):
    """The server says "started" only for a run that lasts: the page shows a run as running,
    and its kernel busy, from whichever of the three comes first."""
    page.open().ready()
    got = page.driver.execute_script("""
        const p = window.lessonserver.page, cell = p.cells.get("hello");
        const seen = () => [p.statusBar.dataset.state, cell.state.textContent];
        const out = {output_type: "stream", name: "stdout", text: "hi\\n"};
        const fast = p.newRunId(cell), before = seen();
        p.dispatch({type: "output", run: fast, output: out});
        const afterOutput = seen();
        p.dispatch({type: "kernel", state: "idle", message: null, session: "tag1"});
        const afterIdle = seen().concat([p.kernelSession]);
        p.forgetRun(fast);
        const asking = p.newRunId(cell);
        p.dispatch({type: "input_request", run: asking, prompt: "Name?", password: false});
        const afterAsk = seen();
        p.forgetRun(asking);
        const slow = p.newRunId(cell);
        p.dispatch({type: "started", run: slow, exercise: "hello", session: "tag2"});
        const afterStarted = seen().concat([p.kernelSession]);
        p.forgetRun(slow);
        return {before, afterOutput, afterIdle, afterAsk, afterStarted};
    """)
    assert got["before"][0] == "none"          # no kernel yet: nothing ran
    assert got["afterOutput"] == ["busy", "Running…"]
    assert got["afterIdle"] == ["idle", "Running…", "tag1"]
    assert got["afterAsk"] == ["busy", "Waiting for your input"]
    assert got["afterStarted"] == ["busy", "Running…", "tag2"]


def test_page_helpers_on_their_own(page):
    """The pure pieces of notebook.js, imported in the page: ANSI colours, backoff, banners."""
    page.open().ready()
    got = page.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        Promise.all([import("/static/js/ansi.js"), import("/static/js/connection.js"),
                     import("/static/js/cell.js"), import("/static/js/outputs.js"),
                     import("/static/js/complete.js")])
        .then(([ansi, conn, cell, outputs, complete]) => done({
          pieces: ansi.parseAnsi("\\x1b[0;31mValueError\\x1b[0m: bad \\x1b[1;32mok\\x1b[K").pieces,
          stripped: ansi.stripAnsi("\\x1b]0;title\\x07a\\x1b[38;5;200mb\\x1b[0m"),
          overwritten: outputs.overwriteLines("10%\\r50%\\r100%\\r\\ndone\\nabc\\r"),
          delays: [0, 1, 2, 10].map((n) => conn.backoffDelay(n, () => 1)),
          lowest: conn.backoffDelay(3, () => 0),
          limit: cell.verdictBanner({status: "limit", limit: "timeout", message: null,
                                     verdict: {passed: false, message: ""}}),
          passed: cell.verdictBanner({status: "ok", verdict: {passed: true, message: "Good"}}),
          failed: cell.verdictBanner({status: "error", message: "x",
                                      verdict: {passed: false, message: "Expected 5"}}),
          complete: [complete.isComplete({passed: 2, total: 2}), complete.isComplete({passed: "1", total: "2"}),
                     complete.isComplete({passed: 0, total: 0})],
          last: complete.completeNote(3, null),
          badges: [["passed", "stopped"], ["passed", "failed"], ["passed", "passed"], ["passed", undefined],
                   ["failed", "stopped"], ["failed", undefined], [undefined, undefined]]
                  .map(([status, latest]) => cell.badgeWords(status, latest).text),
        }), (error) => done({error: String(error)}));
    """)
    assert got.get("error") is None, got
    assert got["pieces"] == [{"text": "ValueError", "cls": "ansi-red"}, {"text": ": bad ", "cls": ""},
                             {"text": "ok", "cls": "ansi-green ansi-bold"}]
    assert got["stripped"] == "ab"
    assert got["overwritten"] == "100%\ndone\nabc"
    assert got["delays"] == [500, 1000, 2000, 15000] and got["lowest"] == 2000
    assert got["limit"] == {"kind": "stopped", "text": "Stopped: the run took longer than the time limit."}
    assert got["passed"] == {"kind": "passed", "text": "✓ Passed: Good"}
    assert got["failed"] == {"kind": "failed", "text": "✗ Not yet: Expected 5"}
    assert got["complete"] == [True, False, False]
    assert got["last"] == {"done": "You passed all 3 exercises of this lesson. That was the last lesson "
                                   "of this course.", "link": "Choose what to learn next →", "href": "/"}
    assert got["badges"] == ["stopped (passed before)", "not passed (passed before)", "✓ passed",
                             "✓ passed", "stopped", "not passed yet", ""]
