"""`lessonserver users create-admin` as an operator runs it, on the embedded database."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from server import config, db
from server.accounts import passwords
from server.store import accounts

LESSONSERVER = Path(sys.executable).with_name("lessonserver")


def run(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LS_")}
    env["LS_DATA_DIR"] = str(tmp_path / "data")
    return subprocess.run([str(LESSONSERVER), "users", "create-admin", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=60)


async def account(tmp_path: Path, email: str):
    engine = db.create_engine(config.load({"LS_DATA_DIR": str(tmp_path / "data")}))
    try:
        return await accounts.by_email(engine, email)
    finally:
        await engine.dispose()


def test_create_admin_makes_a_confirmed_admin_and_can_set_its_password(tmp_path):
    done = run(tmp_path, " Root@Example.org ")
    assert done.returncode == 0, done.stderr
    assert "root@example.org is an admin" in done.stdout and "/login/link" in done.stdout
    made = asyncio.run(account(tmp_path, "root@example.org"))
    assert made.is_admin and made.verified and made.password_hash is None

    again = run(tmp_path, "root@example.org", "--set-password", stdin="a long password\na long password\n")
    assert again.returncode == 0, again.stderr
    updated = asyncio.run(account(tmp_path, "root@example.org"))
    assert updated.id == made.id
    assert asyncio.run(passwords.verify_password(updated.password_hash, "a long password"))


def test_create_admin_names_a_bad_address(tmp_path):
    done = run(tmp_path, "root")
    assert done.returncode == 2 and "Email: enter an address" in done.stderr
