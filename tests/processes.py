"""Jupyter Server or JupyterLab as real subprocesses on loopback, in gateway mode in front of
our server (tests/serve_process.py starts that one): the clients of issue 8."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.services import free_port, wait_for_port

BIN = Path(sys.executable).parent
# Jupyter Server extensions the tests do not use (they only slow the start down).
UNUSED_EXTENSIONS = {"jupyter_lsp": False, "jupyter_server_terminals": False}
# JupyterLab must not reach out (no news feed, no update check, no extension index), and
# window.jupyterapp lets a test read the kernel's state.
LAB_CONFIG = {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
              "extension_manager": "readonly", "expose_app_in_browser": True}
# ... nor ask about news in a toast that covers the page.
LAB_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                {"fetchNews": "false", "checkForUpdates": False}}


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Ctrl-C, as a user stops a server, then kill if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def running(argv: list[str], env: dict[str, str], port: int, log_path: Path, what: str,
            start_timeout: float = 60) -> Iterator[subprocess.Popen]:
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            try:
                wait_for_port(port, start_timeout, what)
            except RuntimeError:
                raise RuntimeError(f"{what} did not start; its log:\n{log_path.read_text()[-3000:]}")
            yield proc
        finally:
            stop(proc)


def jupyter_env(root: Path) -> dict[str, str]:
    """An environment where Jupyter reads and writes only under `root` (never the user's
    folders), and reaches our server without a proxy."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("JUPYTER") and key.lower() not in ("http_proxy", "https_proxy")}
    for name in ("config", "data", "runtime"):
        (root / name).mkdir(parents=True, exist_ok=True)
    env.update(JUPYTER_CONFIG_DIR=str(root / "config"), JUPYTER_DATA_DIR=str(root / "data"),
               JUPYTER_RUNTIME_DIR=str(root / "runtime"), HOME=str(root), NO_PROXY="127.0.0.1")
    return env


@contextlib.contextmanager
def jupyter_gateway(root: Path, app: str, gateway: str, gateway_token: str,
                    token: str) -> Iterator[str]:
    """`jupyter server` or `jupyter lab` (app) on loopback in gateway mode in front of our
    server; yields its base URL. The log is root/<app>.log."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "notebooks").mkdir(exist_ok=True)
    env = jupyter_env(root)
    port = free_port()
    extensions = dict(UNUSED_EXTENSIONS) if app == "lab" else {**UNUSED_EXTENSIONS, "jupyterlab": False}
    config = {"ServerApp": {"jpserver_extensions": extensions}, "LabApp": LAB_CONFIG}
    (root / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    for name, settings in LAB_SETTINGS.items():
        path = root / "config" / "lab" / "user-settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))
    argv = [str(BIN / "jupyter"), app, "--no-browser", "--allow-root", "--ip=127.0.0.1",
            f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root / 'notebooks'}", f"--gateway-url={gateway}",
            f"--GatewayClient.auth_token={gateway_token}", "--GatewayClient.request_timeout=60"]
    with running(argv, env, port, root / f"{app}.log", f"jupyter {app}"):
        yield f"http://127.0.0.1:{port}"
