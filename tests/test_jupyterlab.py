"""JupyterLab 4 in headless Chromium, its kernels on a real `lessonserver serve` (docker
sandbox) through `jupyter lab --gateway-url`: a learner's whole round trip, clicked and typed
as a user would. Screenshots land in .test-artifacts/."""
from __future__ import annotations

import time

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests import services
from tests.kernel_api_support import TOKEN
from tests.processes import jupyter_gateway
from tests.serve_process import lessonserver
from tests.test_browser import ARTIFACTS, driver  # noqa: F401  (driver: the shared Chromium)

pytestmark = pytest.mark.docker

LAB_TOKEN = "jupyterlab-token-" + "w" * 16
PLOT = "import matplotlib.pyplot as plt; plt.plot([0, 1, 4, 9]); plt.show()"
# JupyterLab asks Jupyter Server for the v1.kernel.websocket.jupyter.org subprotocol first;
# in gateway mode Jupyter Server always answers without one, Chromium logs this, and
# JupyterLab falls back to JSON frames (jupyter-server/jupyter_server#1103).
V1_FALLBACK = "Sent non-empty 'Sec-WebSocket-Protocol' header but no response was received"
KERNEL_STATUS = """const widget = window.jupyterapp.shell.currentWidget;
const kernel = widget && widget.sessionContext && widget.sessionContext.session
    && widget.sessionContext.session.kernel;
return kernel ? kernel.status : null;"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory, instance_name):
    services.ensure_docker()
    with lessonserver(tmp_path_factory.mktemp("ours"), LS_SANDBOX="docker", LS_POOL_SIZE="0",
                      LS_INSTANCE=instance_name, LS_API_TOKEN=TOKEN) as ours, \
            jupyter_gateway(tmp_path_factory.mktemp("lab"), "lab", ours.url, TOKEN, LAB_TOKEN) as url:
        yield url


class Lab:
    def __init__(self, driver, url: str) -> None:
        self.driver, self.url = driver, url
        self.took: dict[str, float] = {}

    def wait(self, condition, timeout: float = 30, message: str = ""):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(
                lambda d: condition(), message)
        except TimeoutException:
            self.shot("failed")                   # what the page showed when the wait ran out
            raise

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def status(self) -> str | None:
        return self.driver.execute_script(KERNEL_STATUS)

    def cells(self) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")

    def output(self, index: int) -> str:
        return self.cells()[index].find_element(By.CSS_SELECTOR, ".jp-Cell-outputArea").text

    def run(self, code: str) -> int:
        """Type into the active cell and press Shift-Enter, as a user does; the cell's index."""
        index = len(self.cells()) - 1
        self.cells()[index].find_element(By.CSS_SELECTOR, ".cm-content").click()
        ActionChains(self.driver).send_keys(code).key_down(Keys.SHIFT).send_keys(Keys.ENTER) \
            .key_up(Keys.SHIFT).perform()
        return index

    def toolbar(self, command: str) -> None:
        self.find(f'.jp-NotebookPanel-toolbar [data-command="{command}"]').click()

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.driver.save_screenshot(str(ARTIFACTS / f"jupyterlab-{name}.png"))

    def timed(self, step: str, condition, timeout: float = 30) -> None:
        start = time.monotonic()
        self.wait(condition, timeout, f"JupyterLab: {step}")
        self.took[step] = round(time.monotonic() - start, 2)


def test_a_notebook_on_our_python_kernel_prints_plots_interrupts_and_restarts(driver, lab):
    page = Lab(driver, lab)
    driver.set_window_size(1400, 1000)
    driver.get_log("browser")
    start = time.monotonic()
    driver.get(f"{lab}/lab?token={LAB_TOKEN}")
    card = '.jp-LauncherCard[data-category="Notebook"][title="Python 3"]'
    page.wait(lambda: driver.find_elements(By.CSS_SELECTOR, card), 60, "no launcher card")
    page.took["lab loaded"] = round(time.monotonic() - start, 2)
    page.shot("launcher")
    page.find(card).click()
    page.timed("kernel ready", lambda: page.status() == "idle" and page.cells(), 60)

    first = page.run("print('hello from the sandbox')")
    page.timed("print", lambda: page.output(first) == "hello from the sandbox")

    plot = page.run(PLOT)
    image = ".jp-Cell-outputArea img"
    page.timed("plot", lambda: page.cells()[plot].find_elements(By.CSS_SELECTOR, image), 60)
    img = page.cells()[plot].find_element(By.CSS_SELECTOR, image)
    assert img.get_attribute("src").startswith("data:image/png;base64,")
    assert driver.execute_script("return arguments[0].naturalWidth", img) > 100
    page.shot("plot")

    page.run("x = 41")
    loop = page.run("while True: pass")
    page.wait(lambda: page.status() == "busy", 10, "the loop never made the kernel busy")
    time.sleep(0.5)                                   # inside the loop, not before it
    page.toolbar("notebook:interrupt-kernel")
    page.timed("interrupt", lambda: "KeyboardInterrupt" in page.output(loop)
               and page.status() == "idle", 20)
    page.shot("interrupted")

    page.toolbar("notebook:restart-kernel")
    page.wait(lambda: driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"), 10,
              "no restart dialog")
    restart_start = time.monotonic()
    page.find(".jp-Dialog .jp-mod-accept").click()
    page.wait(lambda: not driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog"), 10,
              "the restart dialog stayed open")
    page.wait(lambda: page.status() == "idle", 60, "the kernel did not come back idle")
    fresh = page.run("print('x' in globals())")
    page.wait(lambda: page.output(fresh) in ("False", "True"), 30)
    page.took["restart+run"] = round(time.monotonic() - restart_start, 2)
    assert page.output(fresh) == "False", "the restarted kernel still had x"
    page.shot("restarted")

    kernel_errors = [entry["message"] for entry in driver.get_log("browser")
                     if entry["level"] == "SEVERE" and "/api/kernels" in entry["message"]
                     and V1_FALLBACK not in entry["message"]]
    assert kernel_errors == []
    print("figures (s):", page.took)
