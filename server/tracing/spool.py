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
