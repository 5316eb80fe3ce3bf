"""Trace batches kept on local disk while the queue cannot take them.

One file per batch, written to a temporary name and renamed, so a crash
leaves whole batches or nothing; names sort by time, so replay keeps the
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
        os.replace(partial, final)
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
