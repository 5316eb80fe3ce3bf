"""Kernel plugins: one folder per language with a manifest.toml (and an image recipe).

A manifest says how to launch the kernel inside its container (`argv`) and as
a local child process (`local_argv`), which image holds it, the per-run limits
it needs different from the host's, and how to build that image. Parsing is
pure (`parse_manifest`); `discover` is the small shell that finds manifests in
kernels/*/ , in extra folders, and in packages that declare the entry point
group `lessonserver.kernels`.
"""
from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kernels.result import RunLimits

ENTRY_POINT_GROUP = "lessonserver.kernels"
MANIFEST = "manifest.toml"
KERNELS_DIR = Path(__file__).resolve().parent
CONNECTION_FILE = "{connection_file}"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")   # it becomes part of an image tag and a URL


class PluginError(ValueError):
    """A manifest is wrong; the message names the file (and the key)."""


@dataclasses.dataclass(frozen=True)
class BuildRecipe:
    """How `lessonserver images build` makes the plugin's image; paths are relative to its folder."""
    dockerfile: str = "Dockerfile"
    requirements: str | None = "requirements.txt"
    files: tuple[str, ...] = ()        # more files of the folder copied into the build context


@dataclasses.dataclass(frozen=True)
class Plugin:
    name: str
    display_name: str
    language: str
    file_extension: str
    codemirror_mode: str
    argv: tuple[str, ...]              # inside the container; contains {connection_file}
    local_argv: tuple[str, ...]        # local backend; {python} is the server's interpreter
    image: str
    limits: Mapping[str, Any]          # RunLimits field -> value, overriding the host's settings
    build: BuildRecipe | None
    directory: Path | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", MappingProxyType(dict(self.limits)))


# --- parsing: text in, Plugin out --------------------------------------------

def _check(path: str, key: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    # bool is an int in Python; a limit of `true` is still a mistake
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
        raise PluginError(f"{path}: {key} must be {what}, not {type(value).__name__} {value!r}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _argv(path: str, key: str, value: Any) -> tuple[str, ...]:
    _check(path, key, value, list, "a list of strings")
    if not value or not all(isinstance(part, str) and part for part in value):
        raise PluginError(f"{path}: {key} must be a non-empty list of non-empty strings")
    if not any(CONNECTION_FILE in part for part in value):
        raise PluginError(f"{path}: {key} must contain {CONNECTION_FILE}")
    return tuple(value)


def _limits(path: str, table: Any) -> dict[str, Any]:
    _check(path, "limits", table, dict, "a table")
    fields = {f.name: f for f in dataclasses.fields(RunLimits)}
    limits = {}
    for key, value in table.items():
        if key not in fields:
            raise PluginError(f"{path}: unknown key limits.{key} (known: {', '.join(fields)})")
        number = (int, float) if fields[key].type == "float" else int
        _check(path, f"limits.{key}", value, number, "a number" if number != int else "a whole number")
        if value <= 0:
            raise PluginError(f"{path}: limits.{key} must be above 0, not {value!r}")
        limits[key] = float(value) if fields[key].type == "float" else value
    return limits


_BUILD_KEYS = {"dockerfile", "requirements", "files"}


def _build(path: str, table: Any) -> BuildRecipe:
    _check(path, "build", table, dict, "a table")
    for key in table:
        if key not in _BUILD_KEYS:
            raise PluginError(f"{path}: unknown key build.{key} (known: {', '.join(sorted(_BUILD_KEYS))})")
    recipe = BuildRecipe()
    dockerfile = _check(path, "build.dockerfile", table.get("dockerfile", recipe.dockerfile), str,
                        "a file name")
    requirements = _check(path, "build.requirements", table.get("requirements", recipe.requirements),
                          str, "a file name") or None   # "" = no Python packages to install
    files = _check(path, "build.files", table.get("files", []), list, "a list of file names")
    for name in (dockerfile, requirements, *files):
        if name is not None and (not isinstance(name, str) or not name or name.startswith("/")
                                 or ".." in Path(name).parts):
            raise PluginError(f"{path}: build file {name!r} must be a relative path inside the plugin folder")
    return BuildRecipe(dockerfile, requirements, tuple(files))


# key -> (required, type, what); argv/limits/build have their own checks
_KEYS: dict[str, tuple[bool, type, str]] = {
    "name": (True, str, "a string"),
    "display_name": (True, str, "a string"),
    "language": (True, str, "a string"),
    "argv": (True, list, "a list of strings"),
    "local_argv": (False, list, "a list of strings"),
    "file_extension": (False, str, "a string"),
    "codemirror_mode": (False, str, "a string"),
    "image": (False, str, "a string"),
    "limits": (False, dict, "a table"),
    "build": (False, dict, "a table"),
}


def parse_manifest(text: str, path: str) -> Plugin:
    """A Plugin from a manifest's text; `path` names the file in errors and locates the folder."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PluginError(f"{path}: not valid TOML: {exc}") from None
    for key in data:
        if key not in _KEYS:
            raise PluginError(f"{path}: unknown key {key!r} (known: {', '.join(_KEYS)})")
    for key, (required, kind, what) in _KEYS.items():
        if key in data:
            _check(path, key, data[key], kind, what)
        elif required:
            raise PluginError(f"{path}: missing required key {key!r}")
    name = data["name"]
    if not _NAME.match(name):
        raise PluginError(f"{path}: name {name!r} must be lowercase letters, digits, - or _ "
                          "(it names the image and the kernelspec)")
    extension = data.get("file_extension", "")
    if extension and not extension.startswith("."):
        raise PluginError(f"{path}: file_extension {extension!r} must start with a dot")
    return Plugin(
        name=name,
        display_name=data["display_name"],
        language=data["language"],
        file_extension=extension,
        codemirror_mode=data.get("codemirror_mode", data["language"]),
        argv=_argv(path, "argv", data["argv"]),
        local_argv=_argv(path, "local_argv", data["local_argv"]) if "local_argv" in data else (),
        image=data.get("image") or f"lessonserver-kernel-{name}:latest",
        limits=_limits(path, data.get("limits", {})),
        build=_build(path, data["build"]) if "build" in data else None,
        directory=Path(path).parent,
    )


def kernelspec_json(plugin: Plugin, launcher_argv: Iterable[str]) -> dict[str, Any]:
    """The kernel.json of a plugin whose kernels are started by `launcher_argv`."""
    return {
        "argv": list(launcher_argv),
        "display_name": plugin.display_name,
        "language": plugin.language,
        "interrupt_mode": "message",   # a signal would hit the launcher, not the sandboxed kernel
        "metadata": {"lessonserver": {"plugin": plugin.name, "image": plugin.image},
                     "codemirror_mode": plugin.codemirror_mode,
                     "file_extension": plugin.file_extension},
    }


# --- discovery: the I/O shell -------------------------------------------------

def load_dir(directory: Path) -> Plugin:
    manifest = Path(directory) / MANIFEST
    try:
        text = manifest.read_text(encoding="utf-8")
    except OSError as exc:
        raise PluginError(f"{manifest}: cannot read: {exc.strerror or exc}") from None
    return parse_manifest(text, str(manifest))


def _dirs_under(directory: Path) -> list[Path]:
    """A plugin folder itself, or a folder of plugin folders."""
    directory = Path(directory)
    if (directory / MANIFEST).is_file():
        return [directory]
    if not directory.is_dir():
        raise PluginError(f"{directory}: no such plugin folder")
    return sorted(p.parent for p in directory.glob(f"*/{MANIFEST}"))


def _from_entry_points() -> list[tuple[Plugin, str]]:
    found = []
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {entry.name} = {entry.value}"
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken third-party plugin must say which one it is
            raise PluginError(f"{origin}: cannot load: {exc}") from exc
        if isinstance(loaded, Plugin):
            found.append((loaded, origin))
        elif isinstance(loaded, (str, Path)):
            found.append((load_dir(Path(loaded)), str(Path(loaded) / MANIFEST)))
        else:
            raise PluginError(f"{origin}: loads to {type(loaded).__name__}, "
                              "expected a plugin folder path or a Plugin")
    return found


def discover(extra_dirs: Iterable[Path | str] = ()) -> tuple[Plugin, ...]:
    """Every plugin: kernels/*/manifest.toml, `extra_dirs`, then entry points; sorted by name."""
    found = [(load_dir(d), str(d / MANIFEST)) for d in _dirs_under(KERNELS_DIR)]
    for extra in extra_dirs:
        found += [(load_dir(d), str(d / MANIFEST)) for d in _dirs_under(Path(extra))]
    found += _from_entry_points()
    by_name: dict[str, tuple[Plugin, str]] = {}
    for plugin, origin in found:
        if plugin.name in by_name:
            raise PluginError(f"{origin}: plugin {plugin.name!r} is already defined by "
                              f"{by_name[plugin.name][1]}")
        by_name[plugin.name] = (plugin, origin)
    return tuple(by_name[name][0] for name in sorted(by_name))
