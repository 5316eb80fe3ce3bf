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


SECRETS = frozenset({"api_token", "cookie_secret"})


def shown(attr: str, value: object) -> str:
    """A setting's current value as `lessonserver settings` prints it: secrets never."""
    from urllib.parse import urlsplit
    if value is None:
        return "(unset)"
    if attr in SECRETS:
        return "(set)"
    if isinstance(value, str) and urlsplit(value).password:
        parts = urlsplit(value)
        return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if attr in ("auth_per_ip", "auth_per_account"):
        return f"{value.burst}/{value.window:g}"
    return str(value)


@main.command()
def settings() -> None:
    """List every LS_* setting with its current value (environment, else default) and meaning."""
    current = _settings()
    for field in config.FIELDS:
        click.echo(f"{field.env:26} {shown(field.attr, getattr(current, field.attr)):28} {field.doc}")


@main.command()
@click.option("--dev", is_flag=True, help="Authoring mode (as LS_DEV=1): reload a changed lesson "
              "within a second, show its errors on its page, refresh the open page.")
def serve(dev: bool) -> None:
    """Serve the course, the kernel API and the admin pages (Ctrl-C stops)."""
    from server.app import serve as run_server
    settings = _settings()
    run_server(settings.replace(dev=True) if dev else settings)


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
def users() -> None:
    """Account commands."""


@users.command("create-admin")
@click.argument("email")
@click.option("--set-password", is_flag=True, help="Prompt for a password (else sign in by "
              "an emailed link, or choose one at /password/reset).")
def users_create_admin(email: str, set_password: bool) -> None:
    """Make EMAIL an admin, creating its account (confirmed) if there is none."""
    import asyncio
    from server.accounts.rules import InvalidInput, check_password, normalize_email
    try:
        address = normalize_email(email)
        password = check_password(click.prompt("Password", hide_input=True,
                                               confirmation_prompt=True)) if set_password else None
    except InvalidInput as exc:
        click.echo(f"lessonserver users create-admin: {exc}", err=True)
        sys.exit(2)
    account = asyncio.run(_make_admin(_settings(), address, password))
    click.echo(f"{account.email} is an admin (user {account.id}); "
               + ("sign in with the password." if password else
                  "sign in with a link from /login/link, or choose a password at /password/reset."))


async def _make_admin(settings: config.Settings, email: str, password: str | None):
    from server import db
    from server.accounts.passwords import hash_password
    from server.store import accounts
    if settings.database_url is None:     # embedded: the file may not exist yet
        db.upgrade(settings)
    engine = db.create_engine(settings)
    try:
        account = await accounts.make_admin(engine, email)
        if password is not None:
            await accounts.set_password(engine, account.id, await hash_password(password))
            await accounts.mark_verified(engine, account.id)
        return account
    finally:
        await engine.dispose()


@main.group()
def lessons() -> None:
    """Course content commands."""


@lessons.command("check")
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--kernel", "kernels", multiple=True,
              help="Known kernel names (repeatable); default: the installed kernel plugins.")
@click.option("--run", "run", is_flag=True,
              help="Also run every starter (must fail) and solution (must pass) in real kernels "
                   "(LS_SANDBOX).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for editors and CI).")
def lessons_check(paths: tuple[Path, ...], kernels: tuple[str, ...], run: bool, as_json: bool) -> None:
    """Check lesson files and folders; print every error as file:line: message.

    A folder is read as the server reads its lessons folder (course folders with a
    course.yaml, or loose lessons as a course of their own); a file is checked with
    its course. Exits 1 on any error, including "no lessons found".
    """
    import json
    import time
    from server.course.check import check_paths
    from server.course.model import Bounds
    started = time.monotonic()
    settings = _settings()     # the host's bounds for exercise limits, and the sandbox for --run
    result = check_paths(paths, frozenset(kernels) or _known_kernels(), Bounds.of(settings))
    errors = list(result.errors)
    report = result.to_json()
    if run and result.lessons:
        import asyncio
        from server.course.rehearsal import rehearse_in_sandbox
        try:
            rehearsal = asyncio.run(rehearse_in_sandbox(settings, result.lessons))
        except Exception as exc:  # no docker engine, missing images: say so, not a traceback
            click.echo(f"lessonserver lessons check --run: cannot run kernels "
                       f"(LS_SANDBOX={settings.sandbox}): {exc}", err=True)
            sys.exit(1)
        errors.extend(rehearsal.errors)
        report.update(ran=rehearsal.exercises, solutions=rehearsal.solutions,
                      errors=[error.to_json() for error in errors])
    report["seconds"] = round(time.monotonic() - started, 1)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for error in errors:
            click.echo(str(error), err=True)
        ran = (f", {report['ran']} exercises run ({report['solutions']} with a solution)"
               if "ran" in report else "")
        click.echo(f"{report['lessons']} lessons in {report['courses']} courses{ran}, "
                   f"{len(errors)} errors ({report['seconds']} s)")
    sys.exit(1 if errors else 0)


@lessons.command("import")
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--title", default=None, help="Lesson title (default: the notebook's first heading).")
@click.option("--slug", default=None, help="Lesson slug (default: from the file name).")
@click.option("--kernel", default=None, help="Our kernel (default: from the notebook's kernelspec).")
@click.option("--order", type=int, default=None, help="Position in the course.")
def lessons_import(notebook: Path, title: str | None, slug: str | None, kernel: str | None,
                   order: int | None) -> None:
    """Write the lesson metadata a Jupyter notebook needs into it, then check it."""
    from server.course.importer import NotebookImportError, lesson_metadata
    from server.course.notebook import read_notebook
    known = _known_kernels()
    try:
        text = lesson_metadata(notebook.read_text(encoding="utf-8"), notebook.stem, known,
                               title=title, slug=slug, kernel=kernel, order=order)
    except NotebookImportError as exc:
        click.echo(f"{notebook}: {exc}", err=True)
        sys.exit(1)
    notebook.write_text(text, encoding="utf-8")
    parsed = read_notebook(text, str(notebook), known)
    for error in parsed.errors:
        click.echo(str(error), err=True)
    exercises = len(parsed.lesson.exercises) if parsed.lesson else 0
    click.echo(f"{notebook}: lesson metadata written, {exercises} exercises, "
               f"{len(parsed.errors)} errors")
    sys.exit(1 if parsed.errors else 0)


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


@main.group()
def kernelspecs() -> None:
    """Kernelspecs for local Jupyter tools (jupyter console, run, execute)."""


@kernelspecs.command("install")
@click.option("--user", is_flag=True, help="Into your Jupyter data folder.")
@click.option("--prefix", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Into PREFIX/share/jupyter/kernels.")
@click.option("--sandbox", type=click.Choice(["docker", "local"]), default="docker", show_default=True,
              help="Where the kernels of these specs run.")
def kernelspecs_install(user: bool, prefix: Path | None, sandbox: str) -> None:
    """Write a lessonserver-<plugin> kernelspec per kernel plugin (default: into this
    environment, sys.prefix), each starting its kernel in the sandbox through our launcher.

    Other LS_* settings (limits, LS_INSTANCE) come from the environment of the Jupyter tool.
    """
    from jupyter_core.paths import jupyter_path
    from kernels import kernelspecs as specs
    from kernels.launch import launcher_argv
    from kernels.plugins import PluginError, discover
    try:
        target = specs.kernels_dir(user, prefix)
        written = specs.write(discover(), target, lambda plugin: launcher_argv(plugin.name),
                              prefix=specs.INSTALL_PREFIX, amend=specs.sandboxed(sandbox))
    except (ValueError, PluginError, OSError) as exc:
        click.echo(f"lessonserver kernelspecs install: {exc}", err=True)
        sys.exit(1)
    for folder in written:
        click.echo(f"installed {folder.name} in {folder}")
    searched = {Path(p).resolve() for p in jupyter_path("kernels")}
    if target.resolve() not in searched:
        click.echo(f"Jupyter does not look in {target} yet: set JUPYTER_PATH={target.parent}", err=True)
    names = [folder.name for folder in written]
    if names:
        example = specs.INSTALL_PREFIX + "python"
        click.echo(f"try: jupyter console --kernel={example if example in names else names[0]}")


if __name__ == "__main__":
    main()
