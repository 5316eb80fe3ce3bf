"""The host's kernels: who owns which, one run at a time each, replaced when lost.

A managed kernel keeps its id for its whole life; the sandboxed kernel behind
it may change: when it dies (watched between runs too), is killed by a limit,
or is restarted, a fresh one comes from the plugin's pool and the learner is
told. Jupyter clients reach a kernel through a Relay (`connect`) that follows
it across replacements. Idle kernels are culled and none outlives
`max_lifetime`. Each owner is held to a quota (kernels at once, starts and runs
per minute). Observers (`on_event`) see every assignment, limit hit, death,
restart and relayed run as a `kernels.events` value; the trace pipeline and
the metrics are two of them.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kernels import fold, idle_watch, messages, quotas
from kernels.events import (KernelAssigned, KernelDied, KernelEvent, KernelGone,
                            KernelInterrupted, KernelLimited, KernelRestarted, RunEnded, RunOutput,
                            RunStarted, StartQueued, StartRejected)
from kernels.pool import CapacityError, Pool, StartGate
from kernels.quotas import Quota, Quotas, Tier
from kernels.relay import Relay
from kernels.result import Output, RunLimits, RunResult, RunStatus
from kernels.sandbox import SandboxError, StartSpec
from kernels.session import (KernelSession, OnInput, OnOutput, SessionClosed, SessionHooks,
                             shared_context)
from kernels.settings import KernelSettings

if TYPE_CHECKING:
    from kernels.plugins import Plugin
    from kernels.sandbox import Sandbox, SandboxKernel

log = logging.getLogger(__name__)

Observer = Callable[[KernelEvent], Any]
CULL_EVERY = (0.2, 30.0)   # seconds between cull passes: at least, at most
RECONCILE_EVERY = 2.0      # seconds between passes that reap kernels of dead owners
FORGET_EVERY = 1.0         # seconds between sweeps of owners with no kernel and no recent use
SAMPLE_EVERY = 1.0         # seconds between CPU samples of idle kernels
ESCAPED = ("Code from an earlier run kept running after the run had ended, so the kernel "
           "was restarted; earlier variables are gone")
FULL_RETRY_AFTER = 30.0    # Retry-After when every kernel slot on the host is taken
RESTART_REQUESTED = "restart requested"
QUEUE_WAIT = 120.0         # seconds a queued kernel request waits at most before a 429


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
    connections: int = 0       # Jupyter clients attached (channels sockets)
    pool_hit: bool = False     # how the current sandboxed kernel was had: warm from the pool,
    start_ms: float = 0.0      # or started for this caller in start_ms


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
    relays: set[Relay] = dataclasses.field(default_factory=set)
    kernel_state: str = "idle"     # what the kernel itself last said (runs of Jupyter clients)
    pool_hit: bool = False
    start_ms: float = 0.0
    cpu: tuple[idle_watch.CpuSample, ...] = ()   # samples while idle, for the CPU watch
    notice: str | None = None      # told with the next run's result (a restart while idle)
    memory_mb: int | None = None   # the kernel's memory limit when a run changed it; None: its start's

    def snapshot(self) -> ManagedKernel:
        state = self.kernel_state if self.state == "idle" else self.state
        return ManagedKernel(self.id, self.owner, self.plugin, self.created_at,
                             self.last_activity, state, self.kernel.connection,
                             str(self.kernel.ref), len(self.relays), self.pool_hit, self.start_ms)


@dataclasses.dataclass(eq=False)
class _Owner:
    """One owner's recent use, for the quotas."""
    tier: Tier
    starts: tuple[float, ...] = ()
    runs: tuple[float, ...] = ()


def run_limits(settings: KernelSettings, plugin: Plugin) -> RunLimits:
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


def memory_change(started_mb: int, current_mb: int | None, wanted_mb: int) -> int | None:
    """The memory limit to give a running kernel before a run that wants `wanted_mb` (an
    exercise's own), or None when it has that already. Never above the limit it was started
    with (`current_mb` None): the host's bound, and the local sandbox's hard rlimit."""
    target = min(wanted_mb, started_mb)
    return None if target == (started_mb if current_mb is None else current_mb) else target


def start_spec(settings: KernelSettings, plugin: Plugin) -> StartSpec:
    """How to start a kernel of this plugin with the host's container limits."""
    return StartSpec(plugin=plugin.name, image=plugin.image, argv=tuple(plugin.argv),
                     local_argv=tuple(plugin.local_argv), memory_mb=settings.memory_mb,
                     pids_limit=settings.pids_limit, cpus=settings.cpus, tmp_mb=settings.tmp_mb,
                     labels={"lessonserver.plugin": plugin.name})


class KernelManager:
    def __init__(self, settings: KernelSettings, sandbox: Sandbox, plugins: Iterable[Plugin],
                 on_event: Iterable[Observer] = (), owner_quotas: Quotas | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings = KernelSettings.of(settings)
        self.sandbox = sandbox
        self.plugins = {p.name: p for p in plugins}
        # Settings and plugins are fixed: each language's run limits are worked out once, not
        # on every run's way to its kernel.
        self._limits = {name: run_limits(settings, p) for name, p in self.plugins.items()}
        self.observers = list(on_event)
        self.quotas = owner_quotas or Quotas(
            anonymous=Quota(settings.anon_kernels, settings.anon_starts_per_minute,
                            settings.anon_runs_per_minute),
            member=Quota(settings.member_kernels, settings.member_starts_per_minute,
                         settings.member_runs_per_minute))
        self.clock = clock
        self.gate = StartGate(settings.start_concurrency, settings.start_queue)
        self.pools = {name: Pool(sandbox, start_spec(settings, p), settings.pool_size, self.gate,
                                 room=self._room_for_pools, prepare=self._open_ahead,
                                 release=self._close_ahead)
                      for name, p in self.plugins.items()}
        self._ahead: dict[str, KernelSession] = {}   # pooled kernels' sessions, handshake done
        self._kernels: dict[str, _Entry] = {}
        self._owners: dict[str, _Owner] = {}
        self._swept_owners_at = -math.inf
        self._reserved = 0               # starts in progress, counted against max_kernels
        self._queue: list[object] = []   # callers waiting for room on the host, in order
        self._room_changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._spawned: set[asyncio.Task] = set()
        self._releasing: set[asyncio.Task] = set()
        self._zmq = shared_context(settings.max_kernels)   # every session's sockets

    # --- the outside world's view -----------------------------------------

    def get(self, kernel_id: str) -> ManagedKernel | None:
        entry = self._kernels.get(kernel_id)
        return entry.snapshot() if entry else None

    def holds(self, kernel_id: str) -> bool:
        """Whether the kernel is this manager's, without a snapshot: on every run's way."""
        return kernel_id in self._kernels

    def list(self, owner: str | None = None) -> list[ManagedKernel]:
        return [e.snapshot() for e in self._kernels.values() if owner is None or e.owner == owner]

    def limits(self, plugin: str) -> RunLimits:
        return self._limits[plugin]

    def _alive(self) -> int:
        """Kernels on the host: assigned, being started for someone, and warm in the pools."""
        return len(self._kernels) + self._reserved + sum(p.ready + p.starting
                                                         for p in self.pools.values())

    def _room(self) -> bool:
        return self._alive() < self.settings.max_kernels

    def _room_for_pools(self) -> bool:
        """Warm kernels come after learners waiting in the queue."""
        return not self._queue and self._room()

    def _emit(self, event: KernelEvent) -> None:
        for observer in self.observers:
            try:
                observer(event)
            except Exception:  # an observer's bug must not break a learner's run
                log.exception("observer %r failed on %s", observer, type(event).__name__)

    # --- quotas -----------------------------------------------------------

    def _owner(self, owner: str, tier: Tier | None = None) -> _Owner:
        use = self._owners.get(owner)
        if use is None:
            use = self._owners[owner] = _Owner(tier or Tier.MEMBER)
        elif tier is not None:
            use.tier = tier
        return use

    def _refuse(self, owner: str, refusal: quotas.Refusal) -> CapacityError:
        self._emit(StartRejected(owner, refusal.reason))
        return CapacityError(refusal.message, refusal.retry_after, refusal.reason)

    def admit_run(self, owner: str) -> quotas.Refusal | None:
        """Count one run of `owner`, or say why it may not run now (its runs per minute)."""
        use = self._owner(owner)
        quota = self.quotas.of(use.tier)
        if quota is None:             # exempt (the API token, tools): nothing to count
            return None
        now = self.clock()
        use.runs = quotas.recent(use.runs, now)
        refusal = quotas.may_run(quota, use.runs, now)
        if refusal is None:
            use.runs = (*use.runs, now)
        else:
            self._emit(StartRejected(owner, refusal.reason))
        return refusal

    def _forget_idle_owners(self) -> None:
        """At most once a second: at a live event's end hundreds of kernels close together,
        and a sweep of every owner for each of them was 7% of the server's time."""
        now = self.clock()
        if now - self._swept_owners_at < FORGET_EVERY:
            return
        self._swept_owners_at = now
        held = {e.owner for e in self._kernels.values()}
        for owner, use in list(self._owners.items()):
            if owner not in held and not quotas.recent((*use.starts, *use.runs), now):
                del self._owners[owner]

    # --- life cycle -------------------------------------------------------

    async def startup(self) -> None:
        """Remove what an earlier run of this instance left behind, then warm the pools."""
        reaped = await self.sandbox.reap_orphans()
        if reaped:
            log.info("removed %d orphaned kernels", reaped)
        for pool in self.pools.values():
            pool.refill()
        self._tasks = [asyncio.create_task(self._cull_forever()),
                       asyncio.create_task(self._reconcile_forever()),
                       asyncio.create_task(self._watch_idle_cpu())]

    async def start(self, owner: str, plugin: str, tier: Tier = Tier.MEMBER,
                    on_queued: Callable[[int], Any] | None = None) -> ManagedKernel:
        """A kernel for `owner`. When the host is full, a caller with `on_queued` waits its
        turn in a fair queue (told its position as it changes) instead of a 429 at once."""
        if plugin not in self.pools:
            raise KeyError(f"no kernel plugin named {plugin!r}")
        use = self._owner(owner, tier)
        now = self.clock()
        use.starts = quotas.recent(use.starts, now)
        held = sum(1 for e in self._kernels.values() if e.owner == owner)
        refusal = quotas.may_start(self.quotas.of(tier), held, use.starts, now)
        if refusal is not None:
            raise self._refuse(owner, refusal)
        if self._queue or (not self.pools[plugin].ready and not self._room()):
            await self._wait_for_room(owner, plugin, on_queued)
        use.starts = (*use.starts, now)
        self._reserved += 1
        try:
            kernel, hit, ms = await self._acquire(plugin)
        except CapacityError as exc:
            self._emit(StartRejected(owner, exc.reason))
            raise
        finally:
            self._reserved -= 1
        now = time.time()
        entry = _Entry(str(uuid.uuid4()), owner, plugin, kernel, None, now, now)  # type: ignore[arg-type]
        entry.session = self._session(entry, kernel)
        entry.pool_hit, entry.start_ms = hit, ms
        self._kernels[entry.id] = entry
        entry.watcher = asyncio.create_task(self._watch(entry, entry.session))
        self._emit(KernelAssigned(entry.id, owner, plugin, hit, str(kernel.ref), ms))
        return entry.snapshot()

    def _full(self) -> CapacityError:
        return CapacityError(f"all {self.settings.max_kernels} kernels of this host are in use",
                             FULL_RETRY_AFTER)

    async def _wait_for_room(self, owner: str, plugin: str,
                             on_queued: Callable[[int], Any] | None) -> None:
        """First come, first served: wait at the back of the queue until this caller is at
        its head and a kernel can be had; pool refills wait behind the queue too."""
        if on_queued is None or len(self._queue) >= self.settings.start_queue:
            self._emit(StartRejected(owner, "host"))
            raise self._full()
        ticket = object()
        self._queue.append(ticket)
        loop = asyncio.get_running_loop()
        began = loop.time()
        told = 0
        try:
            while not (self._queue[0] is ticket and (self.pools[plugin].ready or self._room())):
                position = self._queue.index(ticket) + 1
                if position != told:
                    told = position
                    on_queued(position)
                left = began + QUEUE_WAIT - loop.time()
                if left <= 0:
                    self._emit(StartRejected(owner, "host"))
                    raise self._full()
                self._room_changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):   # pools free room too: look each s
                    await asyncio.wait_for(self._room_changed.wait(), min(left, 1.0))
        finally:
            self._queue.remove(ticket)
            self._room_changed.set()            # the next in line looks again
        self._emit(StartQueued(owner, round(loop.time() - began, 3)))

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    def _session(self, entry: _Entry, kernel: SandboxKernel) -> KernelSession:
        """A session whose relayed runs are limited, counted and reported as this kernel's."""
        def touch() -> None:
            entry.last_activity = time.time()

        def status(state: str) -> None:
            entry.kernel_state = state
            touch()

        def admit_run() -> str | None:
            refusal = self.admit_run(entry.owner)
            return None if refusal is None else refusal.message

        def run_started(run_id: str, code: str) -> None:
            touch()
            self._emit(RunStarted(entry.id, entry.owner, entry.plugin, run_id, code))

        def run_output(run_id: str, output: Output) -> None:
            self._emit(RunOutput(entry.id, run_id, output))

        def run_ended(run_id: str, result: RunResult) -> None:
            touch()
            self._spawn(self._after_run(entry, kernel))
            if result.limit is not None:
                self._emit(KernelLimited(entry.id, entry.owner, entry.plugin, result.limit.value,
                                         result.message))
            self._emit(RunEnded(entry.id, run_id, result))

        hooks = SessionHooks(run_started=run_started, run_output=run_output, run_ended=run_ended,
                             status=status, admit_run=admit_run)
        session = self._ahead.pop(kernel.id, None)
        if session is None:   # a cold start, or its session died in the pool (closed by _acquire)
            return KernelSession(self.sandbox, kernel, self.limits(entry.plugin), hooks, self._zmq)
        session.bind(self.limits(entry.plugin), hooks)
        return session

    async def _open_ahead(self, kernel: SandboxKernel) -> None:
        """A pooled kernel's session, its sockets connected and its handshake done before anyone
        asks: in a live event 200 first runs made both at once, a fifth of the server's time."""
        session = KernelSession(self.sandbox, kernel, context=self._zmq)
        self._ahead[kernel.id] = session
        try:
            await session.ready()
        except BaseException:
            await self._close_ahead(kernel)
            raise

    async def _close_ahead(self, kernel: SandboxKernel) -> None:
        session = self._ahead.pop(kernel.id, None)
        if session is not None:
            await session.close()

    async def _acquire(self, plugin: str) -> tuple[SandboxKernel, bool, float]:
        began = time.perf_counter()
        kernel, hit = await self.pools[plugin].acquire()
        ms = round((time.perf_counter() - began) * 1000, 2)
        ahead = self._ahead.get(kernel.id)
        if ahead is not None and ahead.dead:   # it ended in the pool before the pool saw it
            await self._close_ahead(kernel)    # (its readers and sockets go with it)
        return kernel, hit, ms

    def _entry(self, kernel_id: str) -> _Entry:
        try:
            return self._kernels[kernel_id]
        except KeyError:
            raise UnknownKernel(kernel_id) from None

    async def execute(self, kernel_id: str, code: str, limits: RunLimits | None = None,
                      on_output: OnOutput | None = None, on_input: OnInput | None = None, *,
                      store_history: bool = True) -> RunResult:
        entry = self._entry(kernel_id)
        limits = limits or self.limits(entry.plugin)
        async with entry.lock:
            if entry.closing:
                raise UnknownKernel(kernel_id)
            if entry.session.dead:        # lost between runs and not replaced yet
                await self._replace(entry, "lost before the run")
            refused = await self._fit_memory(entry, limits.memory_mb)
            if refused is not None:
                return RunResult(RunStatus.DIED, message=refused)
            session = entry.session
            entry.state = "busy"
            entry.last_activity = time.time()
            try:
                result = await session.execute(code, limits, on_output, on_input,
                                               store_history=store_history)
            except SessionClosed as exc:
                result = RunResult(RunStatus.DIED, message="The kernel was shut down"
                                   if entry.closing else f"The kernel did not answer ({exc})")
            finally:
                entry.state = "idle"
                entry.last_activity = time.time()
            await self._after_run(entry, session.kernel)
            if entry.notice is not None:
                result = dataclasses.replace(result, message=f"{entry.notice}. {result.message}"
                                             if result.message else entry.notice)
                entry.notice = None
            if result.limit is not None:
                self._emit(KernelLimited(entry.id, entry.owner, entry.plugin, result.limit.value,
                                         result.message))
            if session.dead and not entry.closing:
                await self._replace(entry, result.message or "kernel lost during the run")
                result = fold.note_restart(result)
        return result

    async def _fit_memory(self, entry: _Entry, wanted_mb: int) -> str | None:
        """Give the kernel the run's memory limit, or say why it could not have it; the caller
        holds entry.lock. A kernel that holds more than that already (earlier runs' variables)
        cannot have it: a fresh one can."""
        for attempt in range(2):
            change = memory_change(self.settings.memory_mb, entry.memory_mb, wanted_mb)
            if change is None:
                return None
            try:
                await self.sandbox.set_memory(entry.kernel, change)
            except SandboxError as exc:
                if attempt:
                    log.warning("kernel %s: %s", entry.id, exc)
                    return f"The kernel could not be given the memory limit of {change} MiB"
                log.info("kernel %s: %s; restarting it", entry.id, exc)
                await self._replace(entry, f"memory limit {change} MiB")
                entry.notice = (f"The kernel was restarted to give this exercise its memory limit "
                                f"of {change} MiB; earlier variables are gone")
                continue
            entry.memory_mb = change
            return None
        return None

    # --- Jupyter clients --------------------------------------------------

    async def connect(self, kernel_id: str) -> Relay:
        """A relay to the kernel for one Jupyter client; it follows restarts until closed.

        The relay is the kernel's from the first moment: a shutdown or death while the
        handshake runs reaches it as a status ("dead", or "restarting" and a replacement)."""
        entry = self._entry(kernel_id)
        relay = Relay()
        entry.relays.add(relay)
        entry.last_activity = time.time()
        session = entry.session
        try:
            await session.ready()
        except SessionClosed:
            return relay                 # shut down (told "dead") or dying (the watcher replaces)
        if not relay.closed and entry.session is session and not entry.closing:
            session.attach(relay)
        return relay

    def disconnect(self, kernel_id: str, relay: Relay) -> None:
        relay.close("the client went away")
        entry = self._kernels.get(kernel_id)
        if entry is not None:
            entry.relays.discard(relay)

    def _tell_clients(self, entry: _Entry, state: str) -> None:
        """A status from the server itself, as Jupyter Server sends around restarts."""
        status = messages.server_message("iopub", "status", {"execution_state": state})
        for relay in entry.relays:
            relay.put(status)

    async def interrupt(self, kernel_id: str) -> None:
        entry = self._entry(kernel_id)
        await entry.session.interrupt()
        self._emit(KernelInterrupted(entry.id, entry.owner))

    async def restart(self, kernel_id: str) -> ManagedKernel:
        """A fresh kernel under the same id; a run in progress ends as the old kernel dies."""
        entry = self._entry(kernel_id)
        before = entry.session
        if entry.lock.locked():
            await self.sandbox.kill(entry.kernel)
        async with entry.lock:
            if entry.session is before:
                await self._replace(entry, RESTART_REQUESTED)
        return entry.snapshot()

    async def shutdown(self, kernel_id: str, reason: str = "shutdown requested",
                       culled: bool = False) -> None:
        entry = self._kernels.pop(kernel_id, None)
        if entry is None:
            raise UnknownKernel(kernel_id)
        entry.closing = True
        entry.state = "dead"
        self._tell_clients(entry, "dead")
        for relay in list(entry.relays):
            relay.close(f"the kernel was shut down ({reason})")
        await self._drop(entry.session)
        self._emit(KernelGone(entry.id, entry.owner, reason, culled))
        self._room_changed.set()              # a slot is free: the queue's head may go
        self._forget_idle_owners()
        for pool in self.pools.values():  # a slot on the host is free again
            pool.refill()

    def release(self, kernel_id: str, reason: str) -> None:
        """Shut a kernel down in the background (its removal takes an engine round trip)."""
        task = asyncio.create_task(self.shutdown(kernel_id, reason))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())   # UnknownKernel: gone

    async def close(self) -> None:
        """Stop culling, shut down our kernels and empty the pools."""
        for task in (*self._tasks, *self._spawned):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._spawned, *self._releasing,
                             return_exceptions=True)
        await asyncio.gather(*(self.shutdown(k, "server stopping") for k in list(self._kernels)),
                             return_exceptions=True)
        await asyncio.gather(*(pool.close() for pool in self.pools.values()))
        self._zmq.destroy(linger=0)

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
        if reason != RESTART_REQUESTED:   # JupyterLab reads "restarting" as "the kernel died"
            self._tell_clients(entry, "restarting")
        await self._drop(entry.session)
        try:
            kernel, hit, ms = await self._acquire(entry.plugin)
        except Exception as exc:
            entry.state = "dead"          # the next execute tries again
            log.warning("kernel %s: no replacement (%s)", entry.id, exc)
            return
        if entry.closing:                 # shut down while we waited for a kernel
            await self._close_ahead(kernel)
            await self.sandbox.kill(kernel)
            return
        entry.kernel, entry.session = kernel, self._session(entry, kernel)
        entry.memory_mb = None            # a fresh kernel has the limit of its start
        entry.pool_hit, entry.start_ms = hit, ms
        entry.kernel_state = "idle"
        entry.watcher = asyncio.create_task(self._watch(entry, entry.session))
        if entry.relays:
            try:
                await entry.session.ready()
            except SessionClosed as exc:
                log.warning("kernel %s: replacement did not answer (%s)", entry.id, exc)
            for relay in list(entry.relays):
                entry.session.attach(relay)
            self._tell_clients(entry, "idle")
        entry.state = "idle"
        self._emit(KernelRestarted(entry.id, entry.owner, entry.plugin, reason, hit,
                                   str(kernel.ref), ms))

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
        self._emit(KernelDied(entry.id, entry.owner, entry.plugin, str(session.kernel.ref),
                              ended.exit_code, ended.oom_killed, ended.reason, session.killed))
        async with entry.lock:           # a run in progress replaces it itself
            if entry.session is session and not entry.closing:
                await self._replace(entry, f"kernel died ({ended.reason})")

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def _after_run(self, entry: _Entry, kernel: SandboxKernel) -> None:
        """Nothing of a run may outlive it: what it left running is killed now, and the
        CPU watch starts afresh (the run's end is ours to decide, not the kernel's word)."""
        entry.cpu = ()
        if entry.kernel is not kernel or entry.closing:
            return
        try:
            killed = await self.sandbox.kill_strays(kernel)
        except Exception as exc:   # the kernel ended meanwhile: its watcher replaces it
            log.info("kernel %s: strays not checked (%s)", entry.id, exc)
            return
        if killed:
            log.info("kernel %s: killed %d processes its run left behind", entry.id, killed)

    async def _reconcile_forever(self) -> None:
        """Kernels whose owner (another server, a launcher) died go within seconds."""
        while True:
            await asyncio.sleep(RECONCILE_EVERY)
            try:
                reaped = await self.sandbox.reap_orphans()
            except Exception:
                log.exception("reconcile pass failed")
                continue
            if reaped:
                log.info("removed %d kernels of dead owners", reaped)

    async def _watch_idle_cpu(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY)
            # All at once: the local sandbox serves them from one pass over /proc.
            await asyncio.gather(*(self._sample_cpu(entry) for entry in list(self._kernels.values())))

    async def _sample_cpu(self, entry: _Entry) -> None:
        """An idle kernel that burns CPU runs something that escaped its run: replace it."""
        if entry.lock.locked() or entry.kernel_state == "busy" or entry.closing:
            entry.cpu = ()
            return
        kernel = entry.kernel
        try:
            used = await self.sandbox.cpu_seconds(kernel)
        except Exception:          # gone: the watcher replaces it
            entry.cpu = ()
            return
        entry.cpu = idle_watch.keep(entry.cpu, idle_watch.CpuSample(time.monotonic(), used),
                                    self.settings.idle_cpu_window)
        if not idle_watch.burning(entry.cpu, self.settings.idle_cpu_window,
                                  self.settings.idle_cpu_share):
            return
        entry.cpu = ()
        async with entry.lock:
            if entry.kernel is not kernel or entry.closing:
                return
            log.warning("kernel %s: burning CPU while idle; replacing it", entry.id)
            self._emit(KernelLimited(entry.id, entry.owner, entry.plugin, "cpu", ESCAPED))
            entry.notice = ESCAPED
            for relay in entry.relays:
                relay.put(messages.server_message("iopub", "stream", {
                    "name": "stderr", "text": f"\n[{ESCAPED}]\n"}))
            await self._replace(entry, "burning CPU while idle")

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
            elif (not entry.lock.locked() and entry.kernel_state != "busy"
                  and now - entry.last_activity > self.settings.idle_timeout):
                reason = "idle"
            else:
                continue
            with contextlib.suppress(UnknownKernel):
                await self.shutdown(entry.id, reason, culled=True)
