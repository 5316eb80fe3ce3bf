"""Our kernelspecs as Jupyter tools use them: `python -m kernels.launch` relaying to a sandbox.

jupyter_kernel_test runs its conformance suite against each plugin in a Docker
container; nbclient executes a notebook through the launcher on the local
sandbox. The relay's re-signing is checked on plain frames.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import jupyter_kernel_test
import nbformat
import pytest
from jupyter_client.session import DELIM, Session
from nbclient import NotebookClient

from kernels.launch import launcher_argv, resign
from kernels.plugins import discover, kernelspec_json
from kernels.sandbox import INSTANCE_LABEL
from tests import services

PREFIX = "lessonserver-conformance-"


def containers(instance: str) -> list[str]:
    return subprocess.run(["docker", "ps", "-aq", "--filter", f"label={INSTANCE_LABEL}={instance}"],
                          check=True, capture_output=True, text=True).stdout.split()


class SpecDir:
    """Kernelspecs whose argv is our launcher, found through JUPYTER_PATH, with LS_* in their env."""

    def __init__(self, **env: str) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="ls-conf-")
        self.instance = f"conf-{uuid.uuid4().hex[:8]}"
        env = {"LS_DATA_DIR": f"{self.tmp.name}/data", "LS_INSTANCE": self.instance,
               "LS_POOL_SIZE": "0", **env}
        for plugin in discover():
            folder = Path(self.tmp.name) / "kernels" / f"{PREFIX}{plugin.name}"
            folder.mkdir(parents=True)
            spec = {**kernelspec_json(plugin, launcher_argv(plugin.name)), "env": env}
            (folder / "kernel.json").write_text(json.dumps(spec))
        self.saved = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = self.tmp.name + (os.pathsep + self.saved if self.saved else "")

    def close(self) -> None:
        if self.saved is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = self.saved
        self.tmp.cleanup()


class DockerConformance(jupyter_kernel_test.KernelTests):
    """Each subclass starts one kernel in a container through the launcher."""
    __test__ = False             # only the subclasses below name a plugin

    @classmethod
    def setUpClass(cls) -> None:
        services.ensure_docker()
        cls.specs = SpecDir(LS_SANDBOX="docker")
        cls.kernel_name = PREFIX + cls.plugin
        try:
            super().setUpClass()
        except BaseException:
            cls.specs.close()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            super().tearDownClass()
            # the launcher removes its container when the kernel shuts down
            deadline = time.monotonic() + 10
            while containers(cls.specs.instance) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert containers(cls.specs.instance) == []
        finally:
            cls.specs.close()


@pytest.mark.docker
class TestPythonInDocker(DockerConformance):
    __test__ = True
    plugin = "python"
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('oops', file=sys.stderr)"
    code_generate_error = "raise ValueError('no')"
    code_execute_result = [{"code": "6 * 7", "result": "42"}]
    code_display_data = [{"code": "from IPython.display import HTML, display; display(HTML('<b>x</b>'))",
                          "mime": "text/html"}]
    code_clear_output = "from IPython.display import clear_output; clear_output()"
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    completion_samples = [{"text": "zi", "matches": {"zip"}}]
    code_inspect_sample = "zip"
    code_page_something = "zip?"
    # ("search" fails on a plain ipykernel 7 too: its history reply is empty)
    supported_history_operations = ("tail",)

    def test_the_kernel_is_confined(self) -> None:
        self.flush_channels()
        reply, outputs = self.execute_helper(
            "import os; print(os.getuid(), sorted(os.listdir('/sys/class/net')))")
        assert reply["content"]["status"] == "ok"
        assert outputs[0]["content"]["text"] == "1000 ['lo']\n"


@pytest.mark.docker
class TestBashInDocker(DockerConformance):
    __test__ = True
    plugin = "bash"
    language_name = "bash"
    file_extension = ".sh"
    code_hello_world = "echo 'hello, world'"
    # no code_stderr: bash_kernel runs bash in a pty, where stderr arrives as stdout
    code_generate_error = "false"
    completion_samples = [{"text": "ech", "matches": {"echo"}}]


@pytest.mark.docker
class TestSqlInDocker(DockerConformance):
    __test__ = True
    plugin = "sql"
    language_name = "sqlite"
    file_extension = ".sql"
    code_hello_world = "SELECT 'hello, world';"
    code_generate_error = "SELECT * FROM no_such_table;"
    code_execute_result = [{"code": "SELECT 6 * 7 AS answer;", "result": "answer\n------\n42"}]
    complete_code_samples = ["SELECT 1;", ""]
    incomplete_code_samples = ["SELECT 1", "SELECT 'a;"]
    completion_samples = [{"text": "SEL", "matches": {"SELECT"}}]


# --- nbclient through the launcher on the local sandbox -------------------------------

def test_nbclient_runs_a_notebook_through_the_launcher():
    specs = SpecDir(LS_SANDBOX="local")
    try:
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell("x = 6 * 7\nprint('x is', x)"),
            nbformat.v4.new_code_cell("x + 1"),
            nbformat.v4.new_code_cell("import os\nos.environ.get('LS_API_TOKEN'), os.environ.get('JPY_SESSION_NAME')"),
        ])
        began = time.monotonic()
        NotebookClient(nb, kernel_name=PREFIX + "python", timeout=30, startup_timeout=30).execute()
        assert time.monotonic() - began < 20
        first, second, third = (cell.outputs for cell in nb.cells)
        assert first[0]["text"] == "x is 42\n"
        assert second[0]["data"]["text/plain"] == "43"
        assert third[0]["data"]["text/plain"] == "(None, None)"    # the server's env stays out
    finally:
        specs.close()


# --- the relay's re-signing -----------------------------------------------------------

def test_resign_checks_the_source_key_and_signs_with_the_target_key():
    front, kernel = Session(key=b"front"), Session(key=b"kernel")
    msg = front.msg("execute_request", {"code": "1"})
    frames = front.serialize(msg, ident=[b"client-1"])
    relayed = resign(frames, front, kernel)
    assert relayed[0] == b"client-1" and relayed[1] == DELIM
    assert relayed[3:] == frames[3:]                          # the message itself is untouched
    assert kernel.deserialize(relayed[2:])["content"] == {"code": "1"}
    forged = Session(key=b"guess").serialize(msg, ident=[b"client-1"])
    assert resign(forged, front, kernel) is None
    assert resign([b"no delimiter"], front, kernel) is None
    assert resign([DELIM, b"sig", b"{}"], front, kernel) is None


# --- signals to the launcher ------------------------------------------------------------

def descendants(pid: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = {child for child, ppid in parents.items() if ppid == parent}
        todo += children - found
        found |= children
    return found


def running(pids: set[int], within: float) -> dict[int, str]:
    """The pids still alive (not zombies) after waiting up to `within` seconds: pid -> state."""
    deadline = time.monotonic() + within
    while True:
        states = {}
        for pid in pids:
            try:
                states[pid] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
        alive = {pid: state for pid, state in states.items() if state != "Z"}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def test_sigint_interrupts_and_sigterm_stops_the_kernel():
    import signal

    from jupyter_client.manager import KernelManager

    specs = SpecDir(LS_SANDBOX="local")
    km = KernelManager(kernel_name=PREFIX + "python")
    try:
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=30)
        launcher = km.provisioner.process
        kernel_processes = descendants(launcher.pid)
        assert kernel_processes
        msg_id = kc.execute("while True: pass")
        time.sleep(0.5)
        os.kill(launcher.pid, signal.SIGINT)            # what interrupt_mode "signal" would do
        reply = kc.get_shell_msg(timeout=10)
        while reply["parent_header"]["msg_id"] != msg_id:   # late kernel_info replies of the wait
            reply = kc.get_shell_msg(timeout=10)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        kc.stop_channels()
        os.kill(launcher.pid, signal.SIGTERM)
        assert launcher.wait(timeout=10) == 0
        assert running(kernel_processes, within=5) == {}
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        specs.close()
