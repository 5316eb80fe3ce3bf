"""Kernelspecs of the plugins: the `GET /api/kernelspecs` body and kernel.json folders.

`kernelspec_json` (kernels.plugins) says what one spec holds; this module
fills in launchers and writes the folders Jupyter tools look for, so that
`jupyter console --kernel=NAME` and jupyter_kernel_test can start our kernels.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
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


def write(plugins: Iterable[Plugin], kernels_dir: Path, launcher: Launcher,
          prefix: str = "") -> list[Path]:
    """Write `kernels_dir/<prefix><name>/kernel.json` per plugin; put kernels_dir's parent on
    JUPYTER_PATH (or use a `share/jupyter/kernels` folder) for Jupyter tools to find them."""
    written = []
    for plugin in plugins:
        folder = Path(kernels_dir) / f"{prefix}{plugin.name}"
        folder.mkdir(parents=True, exist_ok=True)
        spec = kernelspec_json(plugin, launcher(plugin))
        (folder / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
        written.append(folder)
    return written
