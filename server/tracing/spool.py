"""Trace batches kept on local disk while the queue cannot take them.

One file per batch, written to a temporary name, fsync'd and renamed (and the
rename fsync'd), so a crash or power loss leaves whole batches or nothing; names sort by time, so replay keeps the
order. A batch is removed only after the queue took it: a crash during replay
sends it again, and the event ids make the second write a no-op. Plain
blocking file I/O: the buffer calls it from a thread.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

log = logging.getLogger("lessonserver.tracing")
Batch = list[dict[str, Any]]


def sync_directory(directory: Path) -> None:
    """Make a rename or unlink in `directory` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def append(self, batch: Batch, suffix: str = ".json") -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}{suffix}"
        final = self.directory / name
        partial = self.directory / f".{name}.partial"
        with open(partial, "w", encoding="utf-8") as out:
            json.dump(batch, out, separators=(",", ":"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, final)
        sync_directory(self.directory)
        return final

    def set_aside(self, batch: Batch) -> Path:
        """Keep a batch the sink refused for a person to look at; replay skips it."""
        return self.append(batch, suffix=".bad")

    def pending(self) -> list[Path]:
        """Spooled batches, oldest first (another process may be replaying some of them)."""
        try:
            return sorted(self.directory.glob("[0-9]*.json"))
        except FileNotFoundError:
            return []

    @staticmethod
    def load(path: Path) -> Batch | None:
        """The batch, or None when another replayer took it or it cannot be read.

        An unreadable file (a disk that filled up under an old version) is set
        aside as `.bad` for a person to look at, so it cannot block the rest.
        """
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:
            log.error("unreadable trace spool file set aside", extra={"fields": {"path": path}})
            path.replace(path.with_suffix(".bad"))
            return None

    @staticmethod
    def remove(path: Path) -> None:
        path.unlink(missing_ok=True)

    # --- the journal of runs whose end is not yet safe (in Redis or in this spool) ---
    @property
    def journal(self) -> Path:
        return self.directory / "open"

    def open_journal(self) -> list[str]:
        """Create the journal; return the runs a previous process left open (it was killed)."""
        self.journal.mkdir(parents=True, exist_ok=True)
        return sorted(path.name for path in self.journal.iterdir())

    def mark_open(self, run_ids: set[str]) -> None:
        # Not fsync'd: a power loss may forget a run; a process kill (the common case) does not.
        self.journal.mkdir(parents=True, exist_ok=True)
        for run_id in run_ids:
            (self.journal / run_id).touch()

    def mark_closed(self, run_ids: set[str]) -> None:
        for run_id in run_ids:
            (self.journal / run_id).unlink(missing_ok=True)


class WriteAheadLog:
    """The events of runs whose verdict went out, appended before it did, until the queue has them.

    An append is one write(2) on the event loop, with no fsync: a killed process
    leaves it in the page cache, so it survives SIGKILL and SIGTERM of the server.
    `sync_handle` gives a duplicate descriptor for an fdatasync off the loop once a
    second (group commit), which covers a power loss up to that second. Segments are
    removed once every event in them is acknowledged; a new process replays what is
    left (the ids make a second write of an event a no-op).
    """
    SEGMENT_BYTES = 1 << 20

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._segments: list[list] = []     # [path, index after its last event], oldest first
        self._fd: int | None = None
        self._size = 0
        self.dirty = False

    def leftovers(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("*.wal"))
        except FileNotFoundError:
            return []

    @staticmethod
    def read(path: Path) -> Batch:
        events = []
        for line in path.read_bytes().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:      # a line torn by a crash mid-write: its events were not promised
                log.warning("torn write-ahead log line skipped", extra={"fields": {"path": path}})
        return events

    def append(self, events: Batch, end: int) -> None:
        """Append `events`, the emitted events up to index `end` (exclusive)."""
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.wal"
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._segments.append([path, end])
            self._size = 0
        data = b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in events)
        os.write(self._fd, data)
        self._segments[-1][1] = end
        self._size += len(data)
        self.dirty = True
        if self._size >= self.SEGMENT_BYTES:
            self._close_segment()

    def due(self, delivered: int) -> bool:
        """Whether `acknowledge(delivered)` would drop a segment (it does file I/O; this does not)."""
        return bool(self._segments) and self._segments[0][1] <= delivered

    def acknowledge(self, delivered: int) -> None:
        """Events before index `delivered` are safe elsewhere: drop the segments that hold only those."""
        while self._segments and self._segments[0][1] <= delivered:
            path, _ = self._segments.pop(0)
            if not self._segments:
                self._close_segment()
            path.unlink(missing_ok=True)

    def sync_handle(self) -> int | None:
        """A duplicate descriptor to fdatasync and close off the loop, or None if nothing to sync."""
        if not self.dirty or self._fd is None:
            return None
        self.dirty = False
        return os.dup(self._fd)

    def _close_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self._close_segment()


def sync_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
