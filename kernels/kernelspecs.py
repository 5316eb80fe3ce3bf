"""Kernelspecs of the plugins: the `GET /api/kernelspecs` body and kernel.json folders.

`kernelspec_json` (kernels.plugins) says what one spec holds; this module
fills in launchers and writes the folders Jupyter tools look for, so that
`jupyter console --kernel=NAME` and jupyter_kernel_test can start our kernels.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kernels.plugins import Plugin, kernelspec_json

Launcher = Callable[[Plugin], Sequence[str]]


def local_launcher(python: str) -> Launcher:
    """Start each plugin's kernel as a child process of `python` (its local_argv)."""
    def launch(plugin: Plugin) -> list[str]:
        if not plugin.local_argv:
            raise ValueError(f"plugin {plugin.name!r} has no local_argv")
        return [python if part == "{python}" else part.replace("{python}", python)
                for part in plugin.local_argv]
    return launch


def api_model(plugins: Iterable[Plugin], launcher: Launcher, default: str = "python") -> dict[str, Any]:
    """The Jupyter Server `GET /api/kernelspecs` body."""
    specs = {p.name: {"name": p.name, "spec": kernelspec_json(p, launcher(p)), "resources": {}}
             for p in plugins}
    return {"default": default if default in specs else next(iter(specs), default),
            "kernelspecs": specs}


INSTALL_PREFIX = "lessonserver-"   # installed names, so a user's own `bash` or `python` spec is kept


def kernels_dir(user: bool = False, prefix: Path | None = None) -> Path:
    """Where `lessonserver kernelspecs install` writes: the user's Jupyter data folder, a
    prefix's share/jupyter/kernels, or by default this environment's (sys.prefix)."""
    if user and prefix is not None:
        raise ValueError("choose --user or --prefix, not both")
    if user:
        from jupyter_core.paths import jupyter_data_dir
        return Path(jupyter_data_dir()) / "kernels"
    return Path(sys.prefix if prefix is None else prefix) / "share" / "jupyter" / "kernels"


def sandboxed(sandbox: str) -> Callable[[Plugin, dict[str, Any]], dict[str, Any]]:
    """An installed spec's additions: the sandbox its kernels run in, named where users pick."""
    def amend(plugin: Plugin, spec: dict[str, Any]) -> dict[str, Any]:
        return {**spec, "display_name": f"{plugin.display_name} (lessonserver, {sandbox})",
                "env": {"LS_SANDBOX": sandbox}}
    return amend


def write(plugins: Iterable[Plugin], kernels_dir: Path, launcher: Launcher, prefix: str = "",
          amend: Callable[[Plugin, dict[str, Any]], Mapping[str, Any]] | None = None) -> list[Path]:
    """Write `kernels_dir/<prefix><name>/kernel.json` per plugin; put kernels_dir's parent on
    JUPYTER_PATH (or use a `share/jupyter/kernels` folder) for Jupyter tools to find them.
    `amend` may change each spec before it is written (see `sandboxed`)."""
    written = []
    for plugin in plugins:
        folder = Path(kernels_dir) / f"{prefix}{plugin.name}"
        folder.mkdir(parents=True, exist_ok=True)
        spec = kernelspec_json(plugin, launcher(plugin))
        if amend is not None:
            spec = dict(amend(plugin, spec))
        (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
        written.append(folder)
    return written
