"""Kernel images through the real `lessonserver images build` and the real Docker engine.

`make test` builds the images before pytest; the first test here builds them too
(a few minutes once, then cached), so this file also runs on its own.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from jupyter_client.blocking.client import BlockingKernelClient

from kernels import images
from kernels.plugins import discover, parse_manifest

pytestmark = pytest.mark.docker
LESSONSERVER = str(Path(sys.executable).with_name("lessonserver"))
PLUGINS = {p.name: p for p in discover()}


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def built() -> None:
    subprocess.run([sys.executable, "-m", "tests.services", "prepare"], check=True, timeout=300)
    run = subprocess.run([LESSONSERVER, "images", "build"], capture_output=True, text=True,
                         timeout=1500)
    assert run.returncode == 0, run.stderr


@pytest.mark.timeout(1600)
def test_second_build_is_a_no_op_within_seconds(built):
    began = time.monotonic()
    run = subprocess.run([LESSONSERVER, "images", "build"], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert time.monotonic() - began < 10
    for name in ("bash", "python", "sql"):
        assert f"up to date lessonserver-kernel-{name}:latest" in run.stderr
    assert "built" not in run.stderr


def test_images_carry_the_recipe_of_the_current_files(built):
    base = images.base_tag(__import__("platform").machine())
    for plugin in PLUGINS.values():
        expected = images.recipe_hash(images.recipe_inputs(plugin), base)
        assert images.image_label(plugin.image) == expected
        assert images.image_label(plugin.image, "lessonserver.plugin") == plugin.name


@pytest.mark.parametrize("name", ["python", "bash", "sql"])
def test_image_runs_as_learner_with_ipykernel_in_the_venv(built, name):
    image = PLUGINS[name].image
    run = docker("run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp", image,
                 "sh", "-c", "id -u; pwd; stat -c %a /tmp; test -d /sbin -a ! -L /sbin && echo real;"
                 " python -c 'import sys, ipykernel; print(sys.prefix)'")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1000", "/home/learner", "1777", "real", "/opt/venv"]


def test_python_image_has_numpy_and_matplotlib_without_network(built):
    run = docker("run", "--rm", "--network", "none", PLUGINS["python"].image,
                 "python", "-c", "import numpy, matplotlib")
    assert run.returncode == 0, run.stderr


def test_python_image_keeps_its_bytecode(built):
    # with a read-only root a missing .pyc is recompiled at every start
    run = docker("run", "--rm", "--network", "none", "--read-only", PLUGINS["python"].image,
                 "python", "-c",
                 "import importlib.util as u, os, ipykernel.kernelapp as k, numpy as n\n"
                 "for m in (k, n): assert os.path.exists(u.cache_from_source(m.__file__)), m")
    assert run.returncode == 0, run.stderr


# --- the kernels answer in a hardened container -----------------------------------------

SAMPLES = {
    "python": ("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()\nprint(6 * 7)",
               "42\n"),
    "bash": ("echo $((6 * 7)); whoami", "42\nlearner\n"),
    "sql": ("CREATE TABLE t(a); INSERT INTO t VALUES (42); SELECT a FROM t;", "42\n"),
}


def _start_hardened(name: str, folder: Path) -> tuple[str, BlockingKernelClient]:
    """A kernel container the way the docker sandbox starts one: ipc sockets in a mounted dir."""
    info = {"transport": "ipc", "ip": "/conn/k", "shell_port": 1, "iopub_port": 2,
            "stdin_port": 3, "control_port": 4, "hb_port": 5, "key": "test-key",
            "signature_scheme": "hmac-sha256"}
    (folder / "kernel.json").write_text(json.dumps(info))
    folder.chmod(0o777)  # the kernel (uid 1000) creates its sockets here
    plugin = PLUGINS[name]
    argv = [part.replace("{connection_file}", "/conn/kernel.json") for part in plugin.argv]
    run = docker("run", "-d", "--rm", "--network", "none", "--read-only", "--tmpfs",
                 "/tmp:size=64m", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                 "--init", "--pids-limit", "64", "--memory", "256m", "--label",
                 "lessonserver.test=images", "-v", f"{folder}:/conn", plugin.image, *argv)
    assert run.returncode == 0, run.stderr
    client = BlockingKernelClient()
    client.load_connection_info({**info, "ip": str(folder / "k"), "key": info["key"].encode()})
    client.start_channels()
    return run.stdout.strip(), client


@pytest.mark.parametrize("name", ["python", "bash", "sql"])
def test_kernel_answers_quickly_in_a_hardened_container(built, name):
    with tempfile.TemporaryDirectory(prefix="lsimg-", dir="/tmp") as tmp:
        began = time.monotonic()
        container, client = _start_hardened(name, Path(tmp))
        try:
            reply = client.kernel_info(reply=True, timeout=20)
            ready = time.monotonic() - began
            assert reply["content"]["status"] == "ok"
            # the iopub subscription may still be connecting (ipc reconnects every 100 ms)
            client.wait_for_ready(timeout=20)
            outputs = []
            reply = client.execute_interactive(SAMPLES[name][0], timeout=30,
                                               output_hook=outputs.append)
            assert reply["content"]["status"] == "ok", reply["content"]
            stdout = "".join(m["content"]["text"] for m in outputs
                             if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")
            assert stdout == SAMPLES[name][1]
            if name == "python":  # matplotlib plots inline under a read-only root
                assert any("image/png" in m["content"].get("data", {}) for m in outputs)
                assert not [m for m in outputs if m["msg_type"] == "stream"
                            and m["content"]["name"] == "stderr"]
        finally:
            client.stop_channels()
            client.context.destroy(linger=0)  # not left to GC: its term() can hang a thread
            docker("rm", "-f", container)
        # docker run itself takes ~0.7 s here; the kernel adds ~0.3 s when its .pyc are kept
        print(f"{name}: first kernel_info reply {ready:.2f}s after docker run")
        assert ready < (2.5 if name == "python" else 5.0)   # bash_kernel: ~2 s of pexpect set-up


# --- recipes: an unchanged recipe is skipped, a changed one rebuilt ---------------------

TINY = """
name = "tiny"
display_name = "Tiny"
language = "text"
argv = ["cat", "{connection_file}"]
image = "IMAGE"
[build]
requirements = "requirements.txt"
"""


def test_a_changed_recipe_is_rebuilt_and_force_rebuilds(built, tmp_path, instance_name):
    folder = tmp_path / "tiny"
    folder.mkdir()
    image = f"lessonserver-test-{instance_name}:latest"
    (folder / "manifest.toml").write_text(TINY.replace("IMAGE", image))
    (folder / "requirements.txt").write_text("traitlets\n")   # one small pure-Python wheel
    # not setup.sh (a venv takes ~20 s): the wheelhouse reaching the context is what matters here
    dockerfile = ("ARG BASE=debian:bookworm-slim\nFROM ${BASE}\nCOPY wheels/ /wheels/\n"
                  "RUN date +%s%N >/built-at\nUSER 1000\n")
    (folder / "Dockerfile").write_text(dockerfile)
    tiny = parse_manifest((folder / "manifest.toml").read_text(), str(folder / "manifest.toml"))
    cache = tmp_path / "cache"
    try:
        first, = images.build_all(plugins=[tiny], cache_dir=cache)
        assert first.built and images.image_label(image) == first.recipe
        again, = images.build_all(plugins=[tiny], cache_dir=cache)
        assert not again.built and again.recipe == first.recipe and again.seconds < 5
        assert len(list((cache / "wheels").iterdir())) == 1

        (folder / "Dockerfile").write_text(dockerfile + "ENV CHANGED=1\n")
        changed, = images.build_all(plugins=[tiny], cache_dir=cache)
        assert changed.built and changed.recipe != first.recipe
        assert images.image_label(image) == changed.recipe
        run = docker("run", "--rm", "--network", "none", image, "sh", "-c",
                     "id -u; ls /wheels; echo $CHANGED; cat /built-at")
        uid, wheel, changed_env, built_at = run.stdout.split()
        assert (uid, changed_env) == ("1000", "1") and wheel.startswith("traitlets-"), run.stderr
        forced, = images.build_all(plugins=[tiny], cache_dir=cache, force=True)
        assert forced.built and forced.recipe == changed.recipe
        run = docker("run", "--rm", "--network", "none", image, "cat", "/built-at")
        assert run.stdout.split() != [built_at]    # no cached layer survived --force
    finally:
        docker("rmi", "-f", image)


def test_a_failing_build_says_which_step_and_shows_its_output(built, tmp_path, instance_name):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nRUN echo about-to-fail && false\n")
    broken = parse_manifest(TINY.replace("IMAGE", f"lessonserver-test-{instance_name}-broken")
                            .replace('requirements = "requirements.txt"', "requirements = ''"),
                            str(folder / "manifest.toml"))
    with pytest.raises(images.ImageError) as caught:
        images.build_all(plugins=[broken], cache_dir=tmp_path / "cache")
    assert "docker build" in str(caught.value) and "about-to-fail" in str(caught.value)


def test_cli_rejects_an_unknown_plugin():
    run = subprocess.run([LESSONSERVER, "images", "build", "--plugin", "cobol"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "no plugin named cobol" in run.stderr


# --- pure parts --------------------------------------------------------------------------

def test_recipe_hash_follows_every_input_and_the_base():
    inputs = {"Dockerfile": b"FROM x", "requirements.txt": b"ipykernel"}
    one = images.recipe_hash(inputs, "lessonserver-base:a")
    assert one == images.recipe_hash(dict(reversed(inputs.items())), "lessonserver-base:a")
    assert one != images.recipe_hash(inputs, "lessonserver-base:b")
    assert one != images.recipe_hash({**inputs, "requirements.txt": b"ipykernel\n"}, "lessonserver-base:a")
    assert one != images.recipe_hash({**inputs, "kernel/k.py": b""}, "lessonserver-base:a")
    # a byte moved between files is a different recipe
    assert images.recipe_hash({"a": b"xy", "b": b""}, "") != images.recipe_hash({"a": b"x", "b": b"y"}, "")


def test_recipe_inputs_are_the_build_context_files():
    inputs = images.recipe_inputs(PLUGINS["sql"])
    assert set(inputs) == {"Dockerfile", "setup.sh", "requirements.txt", "kernel/__init__.py",
                           "kernel/__main__.py", "kernel/kernel.py"}
    assert set(images.recipe_inputs(PLUGINS["python"])) == {"Dockerfile", "setup.sh", "requirements.txt"}


def test_base_tag_and_wheel_platforms():
    tag = images.base_tag("x86_64")
    assert tag.startswith("lessonserver-base:") and tag == images.base_tag("x86_64")
    assert tag != images.base_tag("aarch64")
    platforms = images.wheel_platforms("x86_64")
    assert "manylinux_2_36_x86_64" in platforms and "manylinux2014_x86_64" in platforms
    assert "manylinux_2_37_x86_64" not in platforms   # bookworm's glibc is 2.36


def test_dockerfiles_follow_the_image_rules():
    for plugin in PLUGINS.values():
        text = (plugin.directory / "Dockerfile").read_text()
        assert "ARG BASE=debian:bookworm-slim\nFROM ${BASE}\n" in text
        assert text.rstrip().endswith("USER 1000") and "WORKDIR /home/learner" in text
