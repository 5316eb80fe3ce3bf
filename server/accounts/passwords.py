"""Password hashes with argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane).

argon2-cffi's default (64 MiB, 3 passes, 4 lanes) took 450-650 ms per check on
this shared 2-core host: a log-in queue at the first rush, and 64 MiB per
concurrent guess. Hashes carry their parameters, so these can be raised later.

Hashing costs tens of milliseconds of CPU on purpose, so it runs on a thread,
never on the event loop. An unknown address is checked against a dummy hash,
so a wrong address takes as long as a wrong password and timing tells nothing.
"""
from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash("not anybody's password")


def _hash(password: str) -> str:
    return _HASHER.hash(password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hash, password)


async def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches `stored`; None (no such account) costs the same and is False."""
    return await asyncio.to_thread(_verify, stored, password)
