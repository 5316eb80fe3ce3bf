"""The host's kernels: who owns which, one run at a time each, replaced when lost.

A managed kernel keeps its id for its whole life; the sandboxed kernel behind
it may change: when it dies (watched between runs too), is killed by a limit,
or is restarted, a fresh one comes from the plugin's pool and the learner is
told. Idle kernels are culled and none outlives `max_lifetime`. Observers
(`on_event`) see every assignment, limit hit, death and restart; the trace
pipeline is one of them.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kernels import fold
from kernels.pool import CapacityError, Pool, StartGate
from kernels.result import RunLimits, RunResult, RunStatus
from kernels.sandbox import StartSpec
from kernels.session import KernelSession, OnInput, OnOutput, SessionClosed

if TYPE_CHECKING:
    from kernels.plugins import Plugin
    from kernels.sandbox import Sandbox, SandboxKernel
    from server.config import Settings

log = logging.getLogger(__name__)

Observer = Callable[[str, dict], Any]
CULL_EVERY = (0.2, 30.0)   # seconds between cull passes: at least, at most
FULL_RETRY_AFTER = 30.0    # Retry-After when every kernel slot on the host is taken


class UnknownKernel(KeyError):
    """No kernel with that id on this host."""


@dataclasses.dataclass(frozen=True)
class ManagedKernel:
    """A snapshot of one managed kernel, for the API and the pages."""
    id: str
    owner: str
    plugin: str
    created_at: float          # wall-clock epoch seconds
    last_activity: float
    execution_state: str       # idle | busy | starting | restarting | dead
    connection: Mapping[str, Any]
    ref: str                   # the sandbox's handle (container id or pid), for support


@dataclasses.dataclass(eq=False)
class _Entry:
    """The manager's own mutable record; the outside world sees ManagedKernel snapshots."""
    id: str
    owner: str
    plugin: str
    kernel: SandboxKernel
    session: KernelSession
    created_at: float
    last_activity: float
    state: str = "idle"
    closing: bool = False
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    watcher: asyncio.Task | None = None

    def snapshot(self) -> ManagedKernel:
        return ManagedKernel(self.id, self.owner, self.plugin, self.created_at,
                             self.last_activity, self.state, self.kernel.connection,
                             str(self.kernel.ref))


def run_limits(settings: Settings, plugin: Plugin) -> RunLimits:
    """Limits of one run: the settings, then whatever the plugin sets for its language."""
    base = RunLimits(timeout=settings.run_timeout, output_bytes=settings.output_limit,
                     output_messages=settings.output_messages, memory_mb=settings.memory_mb,
                     pids_limit=settings.pids_limit, tmp_mb=settings.tmp_mb)
    own = getattr(plugin, "limits", None) or {}
    if isinstance(own, RunLimits):
        own = {f.name: getattr(own, f.name) for f in dataclasses.fields(own)
               if getattr(own, f.name) != f.default}
    return dataclasses.replace(base, **{k: v for k, v in dict(own).items()
                                        if k in RunLimits.__dataclass_fields__})


def start_spec(settings: Settings, plugin: Plugin) -> StartSpec:
    """How to start a kernel of this plugin with the host's container limits."""
    return StartSpec(plugin=plugin.name, image=plugin.image, argv=tuple(plugin.argv),
                     local_argv=tuple(plugin.local_argv), memory_mb=settings.memory_mb,
                     pids_limit=settings.pids_limit, cpus=settings.cpus, tmp_mb=settings.tmp_mb,
                     labels={"lessonserver.plugin": plugin.name})


class KernelManager:
    def __init__(self, settings: Settings, sandbox: Sandbox, plugins: Iterable[Plugin],
                 on_event: Iterable[Observer] = ()) -> None:
        self.settings = settings
        self.sandbox = sandbox
        self.plugins = {p.name: p for p in plugins}
        self.observers = list(on_event)
        self.gate = StartGate(settings.start_concurrency, settings.start_queue)
        self.pools = {name: Pool(sandbox, start_spec(settings, p), settings.pool_size, self.gate,
                                 room=self._room)
                      for name, p in self.plugins.items()}
        self._kernels: dict[str, _Entry] = {}
        self._reserved = 0               # starts in progress, counted against max_kernels
        self._culler: asyncio.Task | None = None

    # --- the outside world's view -----------------------------------------

    def get(self, kernel_id: str) -> ManagedKernel | None:
        entry = self._kernels.get(kernel_id)
        return entry.snapshot() if entry else None

    def list(self, owner: str | None = None) -> list[ManagedKernel]:
        return [e.snapshot() for e in self._kernels.values() if owner is None or e.owner == owner]

    def limits(self, plugin: str) -> RunLimits:
        return run_limits(self.settings, self.plugins[plugin])

    def _room(self) -> bool:
        alive = len(self._kernels) + self._reserved + sum(p.ready + p.starting
                                                          for p in self.pools.values())
        return alive < self.settings.max_kernels

    def _emit(self, kind: str, **data: Any) -> None:
        for observer in self.observers:
            try:
                observer(kind, data)
            except Exception:  # an observer's bug must not break a learner's run
                log.exception("observer %r failed on %s", observer, kind)

    # --- life cycle -------------------------------------------------------

    async def startup(self) -> None:
        """Remove what an earlier run of this instance left behind, then warm the pools."""
        reaped = await self.sandbox.reap_orphans()
        if reaped:
            log.info("removed %d orphaned kernels", reaped)
        for pool in self.pools.values():
            pool.refill()
        self._culler = asyncio.create_task(self._cull_forever())

    async def start(self, owner: str, plugin: str) -> ManagedKernel:
        if plugin not in self.pools:
            raise KeyError(f"no kernel plugin named {plugin!r}")
        if len(self._kernels) + self._reserved >= self.settings.max_kernels:
            raise CapacityError(f"all {self.settings.max_kernels} kernels of this host are in use",
                                FULL_RETRY_AFTER)
        self._reserved += 1
        try:
            kernel, hit, ms = await self._acquire(plugin)
        finally:
            self._reserved -= 1
        now = time.time()
        entry = _Entry(str(uuid.uuid4()), owner, plugin, kernel,
                       KernelSession(self.sandbox, kernel), now, now)
        self._kernels[entry.id] = entry
        entry.watcher = asyncio.create_task(self._watch(entry, entry.session))
        self._emit("kernel.assigned", kernel_id=entry.id, owner=owner, plugin=plugin,
                   pool_hit=hit, ref=str(kernel.ref), start_ms=ms)
        return entry.snapshot()

    async def _acquire(self, plugin: str) -> tuple[SandboxKernel, bool, float]:
        began = time.perf_counter()
        kernel, hit = await self.pools[plugin].acquire()
        return kernel, hit, round((time.perf_counter() - began) * 1000, 2)

    def _entry(self, kernel_id: str) -> _Entry:
        try:
            return self._kernels[kernel_id]
        except KeyError:
            raise UnknownKernel(kernel_id) from None

    async def execute(self, kernel_id: str, code: str, limits: RunLimits | None = None,
                      on_output: OnOutput | None = None,
                      on_input: OnInput | None = None) -> RunResult:
        entry = self._entry(kernel_id)
        limits = limits or self.limits(entry.plugin)
        async with entry.lock:
            if entry.closing:
                raise UnknownKernel(kernel_id)
            if entry.session.dead:        # lost between runs and not replaced yet
                await self._replace(entry, "lost before the run")
            session = entry.session
            entry.state = "busy"
            entry.last_activity = time.time()
            try:
                result = await session.execute(code, limits, on_output, on_input)
            except SessionClosed as exc:
                result = RunResult(RunStatus.DIED, message="The kernel was shut down"
                                   if entry.closing else f"The kernel did not answer ({exc})")
            finally:
                entry.state = "idle"
                entry.last_activity = time.time()
            if result.limit is not None:
                self._emit("kernel.limit", kernel_id=entry.id, owner=entry.owner,
                           plugin=entry.plugin, limit=result.limit.value, message=result.message)
            if session.dead and not entry.closing:
                await self._replace(entry, result.message or "kernel lost during the run")
                result = fold.note_restart(result)
        return result

    def touch(self, kernel_id: str) -> None:
        """Activity that did not go through execute() (a Jupyter client's own messages)."""
        entry = self._kernels.get(kernel_id)
        if entry is not None:
            entry.last_activity = time.time()

    async def interrupt(self, kernel_id: str) -> None:
        entry = self._entry(kernel_id)
        await entry.session.interrupt()
        self._emit("kernel.interrupted", kernel_id=entry.id, owner=entry.owner)

    async def restart(self, kernel_id: str) -> ManagedKernel:
        """A fresh kernel under the same id; a run in progress ends as the old kernel dies."""
        entry = self._entry(kernel_id)
        before = entry.session
        if entry.lock.locked():
            await self.sandbox.kill(entry.kernel)
        async with entry.lock:
            if entry.session is before:
                await self._replace(entry, "restart requested")
        return entry.snapshot()

    async def shutdown(self, kernel_id: str, reason: str = "shutdown requested") -> None:
        entry = self._kernels.pop(kernel_id, None)
        if entry is None:
            raise UnknownKernel(kernel_id)
        entry.closing = True
        entry.state = "dead"
        await self._drop(entry.session)
        self._emit("kernel.shutdown", kernel_id=entry.id, owner=entry.owner, reason=reason)
        for pool in self.pools.values():  # a slot on the host is free again
            pool.refill()

    async def close(self) -> None:
        """Stop culling, shut down our kernels and empty the pools."""
        if self._culler is not None:
            self._culler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._culler
        await asyncio.gather(*(self.shutdown(k, "server stopping") for k in list(self._kernels)),
                             return_exceptions=True)
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))

    # --- replacement, watching, culling -----------------------------------

    async def _drop(self, session: KernelSession) -> None:
        await session.close()
        try:
            await self.sandbox.kill(session.kernel)
        except Exception:
            log.exception("could not remove kernel %s", session.kernel.id)

    async def _replace(self, entry: _Entry, reason: str) -> None:
        """Swap in a fresh kernel from the pool; the caller holds entry.lock."""
        entry.state = "restarting"
        await self._drop(entry.session)
        try:
            kernel, hit, ms = await self._acquire(entry.plugin)
        except Exception as exc:
            entry.state = "dead"          # the next execute tries again
            log.warning("kernel %s: no replacement (%s)", entry.id, exc)
            return
        if entry.closing:                 # shut down while we waited for a kernel
            await self.sandbox.kill(kernel)
            return
        entry.kernel, entry.session = kernel, KernelSession(self.sandbox, kernel)
        entry.state = "idle"
        entry.watcher = asyncio.create_task(self._watch(entry, entry.session))
        self._emit("kernel.restarted", kernel_id=entry.id, owner=entry.owner, plugin=entry.plugin,
                   reason=reason, pool_hit=hit, ref=str(kernel.ref), start_ms=ms)

    async def _watch(self, entry: _Entry, session: KernelSession) -> None:
        """Notice a death within a second, even between runs, and replace the kernel."""
        try:
            ended = await session.wait_exit()
        except asyncio.CancelledError:
            return                       # the session was closed: whoever closed it decides
        except Exception:
            log.exception("kernel %s: lost track of its sandbox", entry.id)
            return
        if entry.closing:
            return
        self._emit("kernel.died", kernel_id=entry.id, owner=entry.owner, plugin=entry.plugin,
                   ref=str(session.kernel.ref), exit_code=ended.exit_code,
                   oom_killed=ended.oom_killed, reason=ended.reason, killed=session.killed)
        async with entry.lock:           # a run in progress replaces it itself
            if entry.session is session and not entry.closing:
                await self._replace(entry, f"kernel died ({ended.reason})")

    async def _cull_forever(self) -> None:
        s = self.settings
        every = min(CULL_EVERY[1], max(CULL_EVERY[0], min(s.idle_timeout, s.max_lifetime) / 4))
        while True:
            await asyncio.sleep(every)
            await self.cull(time.time())

    async def cull(self, now: float) -> None:
        """Shut down kernels idle longer than idle_timeout or older than max_lifetime."""
        for entry in list(self._kernels.values()):
            if now - entry.created_at > self.settings.max_lifetime:
                reason = "maximum lifetime reached"
            elif not entry.lock.locked() and now - entry.last_activity > self.settings.idle_timeout:
                reason = "idle"
            else:
                continue
            self._emit("kernel.culled", kernel_id=entry.id, owner=entry.owner, reason=reason)
            with contextlib.suppress(UnknownKernel):
                await self.shutdown(entry.id, reason)
