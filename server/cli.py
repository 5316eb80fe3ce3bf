"""The `lessonserver` command: reads settings once and hands them to each subcommand."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from server import config


def _settings() -> config.Settings:
    try:
        return config.load(os.environ)
    except config.ConfigError as exc:
        click.echo(f"lessonserver: bad setting {exc}", err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Interactive programming lessons with Jupyter kernels in hardened sandboxes.

    Settings come from LS_* environment variables (see `lessonserver settings`).
    """


@main.command()
def settings() -> None:
    """List every LS_* setting with its default and meaning."""
    for env, default, doc in config.describe():
        click.echo(f"{env:26} {default:28} {doc}")


@main.command()
def serve() -> None:
    """Serve the course, the kernel API and the admin pages (Ctrl-C stops)."""
    from server.app import serve as run_server
    run_server(_settings())


@main.command()
@click.option("--burst", is_flag=True, help="Drain the queues and exit.")
def worker(burst: bool) -> None:
    """Run an RQ worker for traces, emails and billing jobs (needs LS_REDIS_URL)."""
    from workers.worker import run_worker
    sys.exit(run_worker(_settings(), burst=burst))


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest version (safe to repeat)."""
    from server.db import upgrade
    click.echo(f"database at revision {upgrade(_settings())}")


@main.group()
def lessons() -> None:
    """Course content commands."""


@lessons.command("check")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--kernel", "kernels", multiple=True,
              help="Known kernel names (repeatable); default: the installed kernel plugins.")
def lessons_check(path: Path, kernels: tuple[str, ...]) -> None:
    """Parse every lesson under PATH and print each error with file and line."""
    from server.course.loader import load_catalog
    catalog = load_catalog(path, frozenset(kernels) or _known_kernels())
    for error in catalog.errors:
        click.echo(str(error), err=True)
    lessons = sum(len(course.lessons) for course in catalog.courses)
    click.echo(f"{lessons} lessons in {len(catalog.courses)} courses, {len(catalog.errors)} errors")
    sys.exit(1 if catalog.errors else 0)


def _known_kernels() -> frozenset[str]:
    from kernels.plugins import discover
    return frozenset(plugin.name for plugin in discover())


@main.group()
def images() -> None:
    """Kernel image commands."""


@images.command("build")
@click.option("--plugin", "names", multiple=True, help="Only these plugins (repeatable).")
@click.option("--force", is_flag=True, help="Rebuild even when the recipe is unchanged.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Wheelhouse and scratch space (default ~/.cache/lessonserver).")
def images_build(names: tuple[str, ...], force: bool, cache_dir: Path | None) -> None:
    """Build each plugin's kernel image offline (debootstrap + venv + docker build).

    Skips an image whose recipe (Dockerfile, requirements, kernel files, base) is unchanged.
    """
    from kernels.images import ImageError, build_all
    from kernels.plugins import PluginError
    try:
        build_all(names=names, force=force, cache_dir=cache_dir)
    except (ImageError, PluginError) as exc:
        click.echo(f"lessonserver images build: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
