"""The API token and cookie secret: from settings, else generated once into the data dir."""
from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from server.config import Settings


@dataclasses.dataclass(frozen=True)
class Secrets:
    api_token: str
    cookie_secret: str
    api_token_file: Path | None  # where a generated token was written, to tell the operator


def _load_or_create(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    # 0600 from the first byte: the file is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def load_secrets(settings: Settings) -> Secrets:
    token_file = None
    token = settings.api_token
    if not token:
        token_file = settings.data_dir / "api_token"
        token = _load_or_create(token_file)
    cookie = settings.cookie_secret or _load_or_create(settings.data_dir / "cookie_secret")
    return Secrets(api_token=token, cookie_secret=cookie, api_token_file=token_file)
