"""Secrets handed to a browser or an email: random, and stored only as their SHA-256.

A session cookie and an emailed link both carry a 256-bit random token; the
database keeps its digest, so reading the tables signs nobody in and opens no
link. Lifetimes per purpose are decided here, as plain values.
"""
from __future__ import annotations

import datetime as dt
import enum
import hashlib
import secrets


class Purpose(str, enum.Enum):
    VERIFY = "verify"        # confirm the address given at sign-up (and sign in)
    MAGIC = "magic"          # sign in without a password
    RESET = "reset"          # choose a new password
    CHANGE = "change"        # confirm a new address for an account


VERIFY_LIFETIME = dt.timedelta(days=2)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def lifetime(purpose: Purpose, link_minutes: float) -> dt.timedelta:
    """How long a link of `purpose` stays usable: a sign-up link longer, as mail can be slow."""
    return VERIFY_LIFETIME if purpose is Purpose.VERIFY else dt.timedelta(minutes=link_minutes)


def usable(expires_at: dt.datetime, used_at: dt.datetime | None, now: dt.datetime) -> bool:
    return used_at is None and now < expires_at
