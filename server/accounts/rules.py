"""The accounts' pure rules: what an address and a password must look like, what sign-up does
with an address already taken, and how two learners' progress becomes one."""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Iterable

MIN_PASSWORD = 8
MAX_PASSWORD = 1024        # argon2 hashes anything, but a megabyte password is an attack
MAX_EMAIL = 320


class InvalidInput(ValueError):
    """A form value is malformed; the message names the field and says what is wrong."""


def normalize_email(raw: str) -> str:
    """The address as stored and compared: trimmed and lower-cased; InvalidInput when it is not one."""
    email = (raw or "").strip().lower()
    local, at, domain = email.rpartition("@")
    if (not at or not local or "." not in domain.strip(".") or len(email) > MAX_EMAIL
            or any(c.isspace() or ord(c) < 0x20 for c in email) or "@" in local):
        raise InvalidInput("Email: enter an address such as ada@example.org.")
    return email


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"Password: use at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"Password: use at most {MAX_PASSWORD} characters.")
    return password


class Role(str, enum.Enum):
    ANONYMOUS = "anonymous"      # a cookie, no account
    LEARNER = "learner"
    ADMIN = "admin"


def role(user) -> Role:
    """The role of a `server.store.users.User` (or None): an account is a user with an address."""
    if user is None or user.email is None:
        return Role.ADMIN if user is not None and user.is_admin else Role.ANONYMOUS
    return Role.ADMIN if user.is_admin else Role.LEARNER


class SignUp(str, enum.Enum):
    """What a sign-up does with its address; the visitor sees the same page in every case."""
    CREATE = "create"            # a new address: create the account, send a confirmation link
    RETRY = "retry"              # an account never confirmed: take the new password, send a new link
    ALREADY = "already"          # a confirmed account: tell its owner by email, change nothing


def sign_up(existing_verified: bool | None) -> SignUp:
    """`existing_verified` is None when no account has the address."""
    if existing_verified is None:
        return SignUp.CREATE
    return SignUp.ALREADY if existing_verified else SignUp.RETRY


@dataclasses.dataclass(frozen=True)
class ExerciseProgress:
    lesson_slug: str
    exercise_id: str
    status: str              # passed | failed
    attempts: int
    code: str
    updated_at: dt.datetime
    last_run: str | None = None                  # the newest run as the page showed it
    solution_shown_at: dt.datetime | None = None  # first shown the solution (reveal=N)


def merge_progress(account: Iterable[ExerciseProgress],
                   anonymous: Iterable[ExerciseProgress]) -> list[ExerciseProgress]:
    """The account's rows after taking in an anonymous learner's: attempts add up, an exercise
    passed by either stays passed, the newer submission's code is kept with its last run, and a
    solution shown to either stays shown. Only rows that change are returned."""
    mine = {(row.lesson_slug, row.exercise_id): row for row in account}
    changed = []
    for row in anonymous:
        old = mine.get((row.lesson_slug, row.exercise_id))
        if old is None:
            changed.append(row)
            continue
        newer = row if row.updated_at > old.updated_at else old
        shown = [at for at in (old.solution_shown_at, row.solution_shown_at) if at is not None]
        changed.append(dataclasses.replace(
            newer, attempts=old.attempts + row.attempts,
            status="passed" if "passed" in (old.status, row.status) else "failed",
            solution_shown_at=min(shown) if shown else None))
    return changed
