"""`serve --dev`: reload the lessons folder when a file in it changes, and wake the open pages.

The watcher (watchfiles: inotify, with a 50 ms quiet step) loads the whole folder
again off the event loop, puts the new library on the shelf in one assignment, then
lets the server drop what it derived from the old one (cached pages, the catalog
tables). A page asks `wait_for_change(slug, version)` and learns its lesson's new
version as soon as it differs.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import watchfiles

from server.library import Library, Shelf

log = logging.getLogger("lessonserver.dev")
QUIET_MS = 50       # a burst of writes (an editor's save) ends after this much quiet
LONGEST_MS = 300    # ... or after this long, whatever comes


class DevReload:
    def __init__(self, shelf: Shelf, folder: Path, load: Callable[[], Library],
                 on_swap: Callable[[Library], Awaitable[None]]) -> None:
        self.shelf = shelf
        self.folder = folder
        self.load = load
        self.on_swap = on_swap
        self.reloads = 0
        self._changed = asyncio.Event()     # set and replaced at each reload (and at close)
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="dev-reload")

    async def close(self) -> None:
        self._stop.set()
        self._wake()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        async for changes in watchfiles.awatch(self.folder, step=QUIET_MS, debounce=LONGEST_MS,
                                               stop_event=self._stop):
            started = time.monotonic()
            try:
                await self.reload()
            except Exception:   # a reload that fails keeps the library served so far
                log.exception("lessons not reloaded")
                continue
            log.info("lessons reloaded", extra={"fields": {
                "files": sorted({Path(path).name for _, path in changes}),
                "ms": round((time.monotonic() - started) * 1000)}})

    async def reload(self) -> None:
        library = await asyncio.to_thread(self.load)
        self.shelf.swap(library)
        self.reloads += 1
        try:
            await self.on_swap(library)
        except Exception:   # served already; only what derives from it (cache, tables) lags
            log.exception("lessons reloaded, but the page cache or catalog tables were not refreshed")
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for_change(self, slug: str, known: str, timeout: float) -> str:
        """The lesson's version once it differs from `known` ("" when it is gone), or `known`
        after `timeout` seconds or at shutdown."""
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            version = self.shelf.versions.get(slug, "")
            if version != known:
                return version
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                break
        return known
