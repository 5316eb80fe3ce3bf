"""`lessonserver kernelspecs install` and the launcher as local Jupyter tools start it:
`jupyter run` (which appends the script's name to the kernel's argv) and `jupyter execute`
(nbclient) on the docker sandbox, with specs in a temporary prefix, never the user's."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from kernels import kernelspecs
from kernels.launch import CONSOLE_SCRIPT, launcher_argv, parse_args
from kernels.plugins import discover
from tests import services
from tests.processes import BIN, jupyter_env
from tests.test_conformance import containers

PLOT = "import matplotlib.pyplot as plt\nplt.plot([0, 1, 4, 9])\nplt.show()"


# --- pure -------------------------------------------------------------------------------

def test_the_launcher_ignores_what_jupyter_client_appends_for_a_local_kernel():
    args, ignored = parse_args(["--plugin", "python", "-f", "/tmp/k.json", "script.py", "--debug"])
    assert args.plugin == "python" and args.connection_file == Path("/tmp/k.json")
    assert ignored == ["script.py", "--debug"]
    with pytest.raises(SystemExit):
        parse_args(["script.py"])              # --plugin and -f stay required


def test_launcher_argv_names_a_program_or_this_interpreter():
    assert launcher_argv("sql", CONSOLE_SCRIPT) == ["lessonserver-launch", "--plugin", "sql",
                                                    "-f", "{connection_file}"]
    assert launcher_argv("sql")[:3] == [sys.executable, "-m", "kernels.launch"]


def test_install_folders(tmp_path):
    assert kernelspecs.kernels_dir(prefix=tmp_path) == tmp_path / "share" / "jupyter" / "kernels"
    assert kernelspecs.kernels_dir() == Path(sys.prefix) / "share" / "jupyter" / "kernels"
    assert kernelspecs.kernels_dir(user=True).name == "kernels"
    with pytest.raises(ValueError, match="--user or --prefix"):
        kernelspecs.kernels_dir(user=True, prefix=tmp_path)


def test_an_installed_spec_names_its_sandbox():
    python = next(p for p in discover() if p.name == "python")
    spec = kernelspecs.sandboxed("docker")(python, {"display_name": "Python 3", "argv": []})
    assert spec == {"display_name": "Python 3 (lessonserver, docker)", "argv": [],
                    "env": {"LS_SANDBOX": "docker"}}


# --- the command and the real tools ------------------------------------------------------

def test_install_refuses_user_and_prefix_together(tmp_path):
    done = subprocess.run([str(BIN / "lessonserver"), "kernelspecs", "install", "--user",
                           "--prefix", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1 and "choose --user or --prefix" in done.stderr
    assert not (tmp_path / "share").exists()


@pytest.fixture(scope="module")
def installed(tmp_path_factory, instance_name):
    """Our specs installed into a temporary prefix, and an environment whose Jupyter finds
    them (and only reads and writes under the temporary folder)."""
    services.ensure_docker()
    root = tmp_path_factory.mktemp("specs")
    done = subprocess.run([str(BIN / "lessonserver"), "kernelspecs", "install", "--prefix",
                           str(root / "prefix"), "--sandbox", "docker"],
                          capture_output=True, text=True, env=jupyter_env(root))
    assert done.returncode == 0, done.stderr
    assert "set JUPYTER_PATH=" in done.stderr    # a prefix Jupyter does not search yet
    env = {**jupyter_env(root), "JUPYTER_PATH": str(root / "prefix" / "share" / "jupyter"),
           "LS_INSTANCE": f"{instance_name}-specs"}
    yield root, env
    assert containers(f"{instance_name}-specs") == [], "a launcher left its container"


def jupyter(env: dict[str, str], cwd: Path, *args: str, timeout: float = 90) -> tuple[str, float]:
    start = time.monotonic()
    done = subprocess.run([str(BIN / "jupyter"), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"jupyter {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout, time.monotonic() - start


@pytest.mark.docker
def test_jupyter_finds_the_installed_specs(installed):
    root, env = installed
    listed = json.loads(jupyter(env, root, "kernelspec", "list", "--json")[0])["kernelspecs"]
    python = listed["lessonserver-python"]
    assert python["resource_dir"].startswith(str(root / "prefix"))
    assert python["spec"]["env"] == {"LS_SANDBOX": "docker"}
    assert python["spec"]["argv"][1:] == ["-m", "kernels.launch", "--plugin", "python", "-f",
                                          "{connection_file}"]
    assert {"lessonserver-bash", "lessonserver-sql"} <= set(listed)


@pytest.mark.docker
def test_jupyter_run_runs_a_script_in_a_container(installed):
    root, env = installed
    script = root / "where.py"
    script.write_text("import os\nprint('uid', os.getuid())\nprint('net', sorted(os.listdir('/sys/class/net')))\n")
    out, took = jupyter(env, root, "run", "--kernel=lessonserver-python", str(script))
    print(f"figures: jupyter run {took:.2f}s")
    assert "uid 1000" in out and "net ['lo']" in out     # the container's user, no network


@pytest.mark.docker
def test_jupyter_execute_runs_a_notebook_in_a_container(installed):
    root, env = installed
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)"),
                                               nbformat.v4.new_code_cell(PLOT)])
    nbformat.write(notebook, root / "squares.ipynb")
    _, took = jupyter(env, root, "execute", "--kernel_name=lessonserver-python", "squares.ipynb",
                      "--output=squares-run.ipynb")
    print(f"figures: jupyter execute {took:.2f}s")
    printed, plotted = (cell.outputs for cell in nbformat.read(root / "squares-run.ipynb", 4).cells)
    assert [o["text"] for o in printed] == ["42\n"]
    assert [o["output_type"] for o in plotted] == ["display_data"]
    assert "image/png" in plotted[0]["data"]
