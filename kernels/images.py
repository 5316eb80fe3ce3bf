"""Kernel images, built offline: `lessonserver images build`.

No container registry is reachable, so nothing is pulled:
1. a base image `lessonserver-base:<hash>` from `debootstrap --variant=minbase`
   (Debian packages only), tarred and `docker import`ed, built once and reused;
2. the wheels of each plugin's requirements.txt, fetched by the host's pip into
   a cached wheelhouse (python 3.11 = bookworm's, manylinux, binary only);
3. `docker build --network none` of the plugin's Dockerfile on that base, with
   a label holding the recipe's hash, so an unchanged recipe is not rebuilt.

The recipe hashes are pure functions of the inputs' bytes; the rest is the
shell that runs debootstrap, pip and the docker CLI (only kernels/docker*
may import the docker SDK).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from rich.console import Console

from kernels.plugins import KERNELS_DIR, Plugin, discover

SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "bash", "ca-certificates")
PYTHON = ("3.11", "cp311")              # bookworm's python3: the wheels must fit it
SETUP_SCRIPT = KERNELS_DIR / "image" / "setup.sh"
RECIPE_LABEL = "lessonserver.recipe"
BASE_REPO = "lessonserver-base"
BASE_FORMAT = 1                         # bump when the base's making changes in a way not hashed below
DEFAULT_CACHE = Path.home() / ".cache" / "lessonserver"


class ImageError(RuntimeError):
    """A build step failed; the message says which and shows the end of its output."""


@dataclasses.dataclass(frozen=True)
class BuildResult:
    plugin: str
    image: str
    recipe: str
    built: bool          # False: an image with this recipe existed already
    seconds: float


# --- pure: what a build is made of -------------------------------------------------

def _digest(parts: Mapping[str, bytes]) -> str:
    sha = hashlib.sha256()
    for name in sorted(parts):
        sha.update(f"{name}\0{len(parts[name])}\0".encode())
        sha.update(parts[name])
    return sha.hexdigest()


def base_tag(arch: str) -> str:
    """The base image's tag: a hash of how debootstrap makes it."""
    recipe = f"{BASE_FORMAT}|{SUITE}|minbase|{','.join(BASE_PACKAGES)}|{arch}".encode()
    return f"{BASE_REPO}:{_digest({'base': recipe})[:16]}"


def wheel_platforms(arch: str) -> list[str]:
    # pip does not widen an explicit --platform to older manylinux tags: list them (glibc 2.36 down)
    return ([f"manylinux_2_{minor}_{arch}" for minor in range(36, 4, -1)]
            + [f"manylinux{tag}_{arch}" for tag in ("2014", "2010", "1")])


def wheelhouse_key(requirements: bytes, arch: str) -> str:
    return _digest({"requirements": requirements, "python": "|".join(PYTHON).encode(),
                    "arch": arch.encode()})[:16]


def recipe_hash(inputs: Mapping[str, bytes], base: str) -> str:
    """The plugin image's recipe: its build files' bytes and the base it starts from."""
    return _digest({**{f"file:{k}": v for k, v in inputs.items()}, "base": base.encode(),
                    "python": "|".join(PYTHON).encode()})[:24]


def recipe_inputs(plugin: Plugin) -> dict[str, bytes]:
    """The files that make a plugin's image, by their name in the build context."""
    if plugin.build is None or plugin.directory is None:
        raise ImageError(f"plugin {plugin.name!r} has no build recipe")
    folder = plugin.directory
    inputs = {"Dockerfile": _read(folder / plugin.build.dockerfile), "setup.sh": _read(SETUP_SCRIPT)}
    if plugin.build.requirements:
        inputs["requirements.txt"] = _read(folder / plugin.build.requirements)
    for name in plugin.build.files:
        inputs[f"kernel/{name}"] = _read(folder / name)
    return inputs


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read: {exc.strerror or exc}") from None


# --- the shell ----------------------------------------------------------------------

class _Steps:
    """Runs commands under a rich status line; keeps each command's last lines for errors."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def run(self, what: str, argv: Sequence[str], stdin: int | None = None,
            cwd: Path | None = None) -> str:
        tail: deque[str] = deque(maxlen=25)
        with self.console.status(what) as status:
            try:
                proc = subprocess.Popen(list(argv), stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd,
                                        text=True, errors="replace")
            except FileNotFoundError:
                raise ImageError(f"{what}: {argv[0]} is not installed") from None
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    tail.append(line)
                    status.update(f"{what}  [dim]{_escape(line[:100])}[/dim]")
            code = proc.wait()
        if code != 0:
            shown = "\n".join(f"  | {line}" for line in tail)
            raise ImageError(f"{what} failed (exit {code}): {' '.join(argv[:4])} ...\n{shown}")
        return "\n".join(tail)

    def done(self, message: str) -> None:
        self.console.print(message)


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise ImageError("the docker CLI is not installed") from None


def image_label(image: str, label: str = RECIPE_LABEL) -> str | None:
    """The image's label value, or None when there is no such image."""
    found = _docker("image", "inspect", "--format", f'{{{{ index .Config.Labels "{label}" }}}}',
                    image)
    return found.stdout.strip() if found.returncode == 0 else None


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    # Two `images build` at once (two `make test`) would debootstrap twice and race on tags.
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_base(steps: _Steps, cache_dir: Path, arch: str) -> str:
    tag = base_tag(arch)
    if image_label(tag, "lessonserver.base") is not None:
        return tag
    if os.geteuid() != 0:
        raise ImageError(f"building {tag} runs debootstrap, which needs root")
    began = time.monotonic()
    root = cache_dir / f"rootfs-{tag.split(':')[1]}"
    shutil.rmtree(root, ignore_errors=True)
    try:
        steps.run(f"debootstrap {SUITE} (minbase) for {tag}",
                  ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                   SUITE, str(root)])
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)
        try:
            steps.run(f"docker import {tag}",
                      ["docker", "import", "--change", "LABEL lessonserver.base=" + SUITE,
                       "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
                       "-", tag], stdin=tar.stdout.fileno() if tar.stdout else None)
        finally:
            if tar.stdout:
                tar.stdout.close()
            tar.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    steps.done(f"[green]built[/green] {tag} in {time.monotonic() - began:.0f}s")
    return tag


def ensure_wheels(steps: _Steps, cache_dir: Path, requirements: bytes, arch: str) -> Path:
    house = cache_dir / "wheels" / wheelhouse_key(requirements, arch)
    if (house / ".complete").exists():
        return house
    house.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix="partial-", dir=house.parent))
    try:
        (partial / "requirements.txt").write_bytes(requirements)
        platforms = [arg for tag in wheel_platforms(arch) for arg in ("--platform", tag)]
        steps.run("pip download (wheels for the image)",
                  [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                   "--only-binary=:all:", "--python-version", PYTHON[0], "--implementation", "cp",
                   "--abi", PYTHON[1], *platforms, "-d", str(partial),
                   "-r", str(partial / "requirements.txt")])
        (partial / ".complete").touch()
        shutil.rmtree(house, ignore_errors=True)
        partial.rename(house)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return house


def _context(inputs: Mapping[str, bytes], wheels: Path | None, into: Path) -> None:
    for name, data in inputs.items():
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_bytes(data)
    (into / "wheels").mkdir()
    for wheel in (wheels.glob("*.whl") if wheels else ()):
        try:
            os.link(wheel, into / "wheels" / wheel.name)   # same disk: no copy of ~60 MB
        except OSError:
            shutil.copy2(wheel, into / "wheels" / wheel.name)


def build_plugin(steps: _Steps, plugin: Plugin, base: str, cache_dir: Path, arch: str,
                 force: bool) -> BuildResult:
    began = time.monotonic()
    inputs = recipe_inputs(plugin)
    recipe = recipe_hash(inputs, base)
    if not force and image_label(plugin.image, RECIPE_LABEL) == recipe:
        steps.done(f"[dim]up to date[/dim] {plugin.image} (recipe {recipe[:12]})")
        return BuildResult(plugin.name, plugin.image, recipe, False, time.monotonic() - began)
    previous = _docker("image", "inspect", "--format", "{{.Id}}", plugin.image).stdout.strip()
    requirements = inputs.get("requirements.txt")
    wheels = ensure_wheels(steps, cache_dir, requirements, arch) if requirements else None
    with tempfile.TemporaryDirectory(prefix=f"context-{plugin.name}-", dir=cache_dir) as context:
        _context(inputs, wheels, Path(context))
        steps.run(f"docker build {plugin.image}",
                  ["docker", "build", "--network", "none", "--force-rm",
                   *(["--no-cache"] if force else []),   # forced: no stale layers either
                   "--build-arg", f"BASE={base}", "--label", f"{RECIPE_LABEL}={recipe}",
                   "--label", f"lessonserver.plugin={plugin.name}",
                   "-t", plugin.image, "-f", str(Path(context) / "Dockerfile"), context])
    now = _docker("image", "inspect", "--format", "{{.Id}}", plugin.image).stdout.strip()
    if previous and previous != now:  # else it lingers untagged; one in use by a container stays
        _docker("rmi", previous)
    seconds = time.monotonic() - began
    steps.done(f"[green]built[/green] {plugin.image} (recipe {recipe[:12]}) in {seconds:.0f}s")
    return BuildResult(plugin.name, plugin.image, recipe, True, seconds)


def build_all(names: Iterable[str] = (), force: bool = False,
              plugins: Sequence[Plugin] | None = None, cache_dir: Path | None = None,
              console: Console | None = None) -> tuple[BuildResult, ...]:
    """Build the named plugins' images (all when none are named); skip unchanged recipes."""
    plugins = tuple(discover() if plugins is None else plugins)
    wanted = list(names)
    unknown = sorted(set(wanted) - {p.name for p in plugins})
    if unknown:
        raise ImageError(f"no plugin named {', '.join(unknown)} "
                         f"(known: {', '.join(p.name for p in plugins)})")
    chosen = [p for p in plugins if not wanted or p.name in wanted]
    buildable = [p for p in chosen if p.build is not None]
    steps = _Steps(console or Console(stderr=True))
    for plugin in chosen:
        if plugin.build is None:
            steps.done(f"[yellow]skipped[/yellow] {plugin.name}: no [build] in its manifest")
    if not buildable:
        return ()
    if _docker("version", "--format", "{{.Server.Version}}").returncode != 0:
        raise ImageError("the Docker engine does not answer (is dockerd running?)")
    cache_dir = Path(cache_dir or DEFAULT_CACHE)
    arch = platform.machine()
    with _locked(cache_dir):
        base = ensure_base(steps, cache_dir, arch)
        return tuple(build_plugin(steps, p, base, cache_dir, arch, force) for p in buildable)
