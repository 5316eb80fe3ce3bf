"""Processes of a sandbox, seen from the host: who they are, what CPU they used, killing strays.

A process is named by (pid, start time) so that a pid reused by someone else is
never mistaken for ours. The docker backend lists a container's processes from
its cgroup, the local backend walks the bwrap process tree in a `ProcessTable`
it shares among its kernels; both then use the helpers here. `strays`, `tree`,
`cgroup_dir` and `parse_stat` are pure.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
KILL_ROUNDS = 50            # a forking stray gets this many rounds of SIGKILL...
KILL_PAUSE = 0.01           # ...this far apart (the pids limit bounds what it can fork)


@dataclasses.dataclass(frozen=True)
class Proc:
    pid: int
    started: str            # field 22 of /proc/<pid>/stat, in clock ticks since boot


@dataclasses.dataclass(frozen=True)
class Stat:
    proc: Proc
    ppid: int
    state: str
    cpu_ticks: int          # utime + stime + cutime + cstime: its own and its reaped children's


def parse_stat(pid: int, text: str) -> Stat:
    """A /proc/<pid>/stat line (the command name may hold spaces and parentheses)."""
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime..cstime are fields 14..17; starttime is field 22
    return Stat(Proc(pid, fields[19]), int(fields[1]), fields[0],
                sum(int(tick) for tick in fields[11:15]))


def read_stat(pid: int) -> Stat | None:
    try:    # os.read, not Path.read_text: four times faster, and tree() reads every process
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            text = os.read(fd, 4096).decode(errors="replace")
        finally:
            os.close(fd)
        return parse_stat(pid, text)
    except (OSError, IndexError, ValueError):
        return None


def process_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: tells a pid from a later process reusing it."""
    found = read_stat(pid)
    return found.proc.started if found else None


def strays(current: Iterable[Stat], own: frozenset[Proc]) -> list[Proc]:
    """The processes to kill: every live one that was not there when the kernel was ready."""
    return [s.proc for s in current if s.proc not in own and s.state not in ("Z", "X")]


def stats_of(pids: Iterable[int]) -> list[Stat]:
    return [s for s in map(read_stat, pids) if s is not None]


def every_process() -> list[Stat]:
    """One pass over /proc: every process on the host."""
    return stats_of(int(e) for e in os.listdir("/proc") if e.isdigit())


@dataclasses.dataclass(frozen=True)
class Listing:
    """One pass over /proc, indexed once: with hundreds of kernels a tree per kernel that
    walked the whole pass cost each idle sample and run end a walk of every process on
    the host, and a live event's 200 runs 0.6 s of the event loop."""
    by_pid: Mapping[int, Stat]
    below: Mapping[int, tuple[Stat, ...]]      # the children of each pid


def listing(every: Iterable[Stat]) -> Listing:
    stats = tuple(every)
    below: dict[int, list[Stat]] = {}
    for found in stats:
        below.setdefault(found.ppid, []).append(found)
    return Listing({s.proc.pid: s for s in stats},
                   {pid: tuple(children) for pid, children in below.items()})


def tree(root: int, every: Listing) -> list[Stat]:
    """`root` and all its descendants, out of one pass over /proc."""
    top = every.by_pid.get(root)
    if top is None:
        return []
    found, queue = [], [top]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(every.below.get(current.proc.pid, ()))
    return found


class ProcessTable:
    """Passes over /proc shared by all the kernels of a sandbox.

    With hundreds of kernels the host has thousands of processes, and a pass per kernel at
    every run's end (strays) and every idle sample (CPU) kept threads parsing /proc that
    took the GIL from the event loop: in a live event of 200 learners their first outputs
    waited tens of seconds. Now callers that ask while a pass runs share the next one.
    """

    def __init__(self, scan: Callable[[], list[Stat]] = every_process) -> None:
        self._scan = scan
        self._next: asyncio.Future[Listing] | None = None
        self._runner: asyncio.Task | None = None

    async def snapshot(self) -> Listing:
        """Every process, from a pass begun after this call (a stray forked before it shows)."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if self._runner is None or self._runner.done():
                self._runner = asyncio.create_task(self._run())
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        while self._next is not None:
            waiting, self._next = self._next, None      # later callers wait for the pass after
            try:
                stats = await asyncio.to_thread(lambda: listing(self._scan()))
            except Exception as exc:  # e.g. /proc unreadable: each waiter hears it
                waiting.set_exception(exc)
                continue
            waiting.set_result(stats)


def cpu_seconds(stats: Iterable[Stat]) -> float:
    return sum(s.cpu_ticks for s in stats) / TICKS


def kill(proc: Proc) -> bool:
    """SIGKILL `proc` if that very process still runs."""
    if process_start_time(proc.pid) != proc.started:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(proc.pid, signal.SIGKILL)
        return True
    return False


async def kill_strays(look: Callable[[], Awaitable[list[Stat]]], own: frozenset[Proc]) -> int:
    """Kill what `look()` shows beyond `own` until nothing new is left; return how many.

    Rounds, because a stray may fork while we kill it: once strays were seen, it takes two
    empty looks a pause apart to stop (a child forked just after a look shows in the next).
    A run that left nothing costs one look.
    """
    killed: set[Proc] = set()
    seen_any, empty_looks = False, 0
    for _ in range(KILL_ROUNDS):
        found = strays(await look(), own)
        if found:
            seen_any, empty_looks = True, 0
            killed.update(p for p in found if kill(p))
        else:
            empty_looks += 1
            if not seen_any or empty_looks == 2:
                break
        await asyncio.sleep(KILL_PAUSE)
    return len(killed)


# --- cgroups (docker) -------------------------------------------------------------

def cgroup_dir(proc_cgroup: str, mountinfo: str, controller: str) -> Path | None:
    """Where a process's cgroup of `controller` is mounted on this host.

    `proc_cgroup` is /proc/<pid>/cgroup ("7:cpu,cpuacct:/docker/ID" in v1, "0::/system.slice/
    docker-ID.scope" in v2); `mountinfo` is /proc/self/mountinfo. Covers cgroupfs and systemd
    drivers alike, v1 and v2. None when the controller is not mounted.
    """
    path = None
    for line in proc_cgroup.splitlines():
        _, controllers, where = line.split(":", 2)
        if controller in controllers.split(","):
            path, version = where, 1
            break
    else:
        for line in proc_cgroup.splitlines():
            if line.startswith("0::"):
                path, version = line[3:], 2
    if path is None:
        return None
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, kind = before.split(), after.split()
        if not fields or not kind:
            continue
        root, point = fields[3], fields[4]
        if version == 1 and kind[0] == "cgroup" and controller in kind[-1].split(","):
            pass
        elif version == 2 and kind[0] == "cgroup2":
            pass
        else:
            continue
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return Path(point) / path[len(root.rstrip("/")):].lstrip("/")
    return None


def read_cgroup_pids(directory: Path) -> list[int]:
    try:
        return [int(line) for line in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def cgroup_cpu_seconds(directory: Path) -> float | None:
    """CPU time of everything ever in the cgroup: v1 cpuacct.usage (ns), v2 cpu.stat (us)."""
    with contextlib.suppress(OSError, ValueError):
        return int((directory / "cpuacct.usage").read_text()) / 1e9
    with contextlib.suppress(OSError, ValueError, StopIteration):
        stat = (directory / "cpu.stat").read_text().split("\n")
        return int(next(l.split()[1] for l in stat if l.startswith("usage_usec "))) / 1e6
    return None
