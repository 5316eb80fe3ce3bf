"""Leases: which process owns a kernel, so that reaping never takes a live owner's kernels.

Every sandbox object (one per server process, one per `kernels.launch` process)
holds a lease for its whole life: a lock file `<runtime dir>/leases/<id>.lock`
locked with flock. The kernel drops the lock when the process dies, even on
SIGKILL, so "the lock can be taken" proves the owner is gone. Every kernel is
labelled with the path of its owner's lock file (a docker label, a file in the
local kernel's dir). A reaper removes a kernel only when its lease is provably
dead: the lock file is missing from its folder, or we could lock it. Anything else
(held, unreadable to us, or a folder we cannot see, as from another mount
namespace) counts as alive: a kernel leaked is better than a live one killed.

`orphans` is the pure decision; `Lease` and `probe` are the thin I/O around it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import enum
import fcntl
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterable, Set
from pathlib import Path

log = logging.getLogger(__name__)

LEASE_DIR = "leases"
LEASE_SUFFIX = ".lock"
RECORD = "lease"       # in each kernel's dir: the path of its owner's lock file
# A kernel dir is made, then its lease record written: a dir younger than this without a
# record may be a start in progress (ours or another process's), so it is left alone.
UNRECORDED_GRACE = 60.0
# Lock files nobody refers to any more (their owner died with no kernel) are tidied once
# this old: never a fresh one, which its owner may be about to lock.
STALE_LOCK = 60.0


class LeaseState(str, enum.Enum):
    HELD = "held"          # someone holds the lock: the owner lives
    DEAD = "dead"          # no lock file, or we could lock it: the owner is gone
    UNKNOWN = "unknown"    # not ours to judge (unreadable, not a regular file): treated as held


@dataclasses.dataclass(frozen=True)
class Found:
    """A kernel a reaper found: its handle and what it recorded about its owner."""
    ref: str                        # container id or kernel dir name
    lease: str | None               # the owner's lock file path; None if it recorded none
    age: float | None = None        # seconds since it was made, when known


def orphans(found: Iterable[Found], ours: Set[str], dead: Set[str],
            grace: float = UNRECORDED_GRACE) -> list[str]:
    """The refs to remove: never ours, never a live lease's, and only what is provably dead.

    A kernel without a lease record was made by a version without leases (containers are
    labelled as they are created) or is a dir still being prepared: it goes only when it
    is older than `grace`, or when its age is unknown (a container: labels come at create).
    """
    removed = []
    for kernel in found:
        if kernel.ref in ours:
            continue
        if kernel.lease is None:
            if kernel.age is None or kernel.age > grace:
                removed.append(kernel.ref)
        elif kernel.lease in dead:
            removed.append(kernel.ref)
    return removed


# --- the I/O: holding and probing lock files -------------------------------------------

def lease_dir(runtime_dir: Path) -> Path:
    return Path(runtime_dir) / LEASE_DIR


class Lease:
    """A lock file held for this object's life. The fd is not inherited by kernels (O_CLOEXEC):
    a kernel outliving us must not keep our lease alive."""

    def __init__(self, runtime_dir: Path) -> None:
        self.id = secrets.token_hex(8)
        self.path = lease_dir(runtime_dir) / f"{self.id}{LEASE_SUFFIX}"
        self._fd: int | None = None
        self._take()

    def _take(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def renew(self) -> None:
        """Keep the lock file where reapers look: re-create it if a /tmp cleaner (or anyone)
        removed it, and touch it so age-based cleaners pass it by. Tidy dead owners' files."""
        if self._fd is None:
            return
        now = time.time()
        with contextlib.suppress(OSError):
            for other in self.path.parent.iterdir():
                with contextlib.suppress(OSError):
                    if other != self.path and now - other.lstat().st_mtime > STALE_LOCK:
                        probe(str(other))     # a dead owner's file is removed by the probe
        try:
            same = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(self._fd)
            self._fd = None
            self._take()
        with contextlib.suppress(OSError):
            os.utime(self._fd)

    def release(self) -> None:
        """Remove the lock file, then unlock: our kernels are gone or now anyone's to reap."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                self.path.unlink()
        os.close(self._fd)
        self._fd = None      # the folder stays: a missing file in it is how death is told


def take(runtime_dir: Path, instance: str, backend: str) -> Lease:
    """A sandbox's lease, announced: which instance and lease this process is."""
    lease = Lease(runtime_dir)
    log.info("%s sandbox: instance %s, lease %s (%s)", backend, instance, lease.id, lease.path)
    return lease


def probe(path: str) -> LeaseState:
    """Whether the owner of the lock file at `path` is alive. Never blocks, never follows links."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return LeaseState.DEAD if os.path.isdir(os.path.dirname(path)) else LeaseState.UNKNOWN
    except OSError:
        return LeaseState.UNKNOWN
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return LeaseState.UNKNOWN
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return LeaseState.HELD
        except OSError:
            return LeaseState.UNKNOWN
        # Ours now, and its owner is gone: tidy the file while we hold it.
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)
        return LeaseState.DEAD
    finally:
        os.close(fd)


def dead_leases(found: Iterable[Found]) -> set[str]:
    """Probe each distinct lease once; return the provably dead ones."""
    leases = {kernel.lease for kernel in found if kernel.lease is not None}
    return {lease for lease in leases if probe(lease) is LeaseState.DEAD}


# --- the record in each kernel's dir ------------------------------------------------

def write_record(directory: Path, lease: Lease) -> None:
    """Record which lease owns the kernel of `directory` (read-only; the kernel may read it)."""
    fd = os.open(directory / RECORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    with os.fdopen(fd, "w") as out:
        out.write(str(lease.path))


def read_record(directory: Path) -> str | None:
    """The lease recorded in a kernel's dir; None if none was (yet, or by an older version)."""
    try:
        return (directory / RECORD).read_text().strip() or None
    except OSError:
        return None


def dead_dirs(root: Path, ours: Set[str]) -> list[Path]:
    """The kernel dirs below `root` (named as in `ours`) whose owner is provably gone."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for directory in root.iterdir():
            with contextlib.suppress(OSError):
                if directory.is_dir():
                    age = time.time() - directory.stat().st_mtime
                    found.append(Found(directory.name, read_record(directory), age))
    return [root / name for name in orphans(found, ours, dead_leases(found))]
