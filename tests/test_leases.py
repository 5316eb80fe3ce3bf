"""Leases and the sandbox's process rules: pure decisions on plain values, lock files for real."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

from kernels import leases, procs
from kernels.idle_watch import CpuSample, burning, keep
from kernels.leases import Found, LeaseState, orphans


def test_only_kernels_of_provably_dead_leases_are_orphans():
    found = [Found("a", "/l/live.lock"), Found("b", "/l/dead.lock"), Found("c", "/l/dead.lock"),
             Found("mine", "/l/dead.lock"), Found("legacy", None),
             Found("young-dir", None, age=5.0), Found("old-dir", None, age=600.0),
             Found("unknown", "/l/unreadable.lock")]
    assert orphans(found, ours={"mine"}, dead={"/l/dead.lock"}) == ["b", "c", "legacy", "old-dir"]
    assert orphans(found, ours=set(), dead=set()) == ["legacy", "old-dir"]   # nothing else
    assert orphans([Found("young-dir", None, age=5.0)], set(), set(), grace=1.0) == ["young-dir"]
    assert orphans([], set(), {"/l/dead.lock"}) == []


def test_a_held_lease_is_live_until_its_process_dies(tmp_path):
    lease = leases.Lease(tmp_path)
    other = leases.Lease(tmp_path)                     # two owners in one process: still apart
    assert lease.path.parent == tmp_path / "leases" and lease.id != other.id
    assert leases.probe(str(lease.path)) is LeaseState.HELD
    assert leases.dead_leases([Found("k", str(lease.path))]) == set()
    lease.release()
    assert not lease.path.exists()
    assert leases.probe(str(lease.path)) is LeaseState.DEAD          # missing: dead
    assert leases.probe(str(other.path)) is LeaseState.HELD
    other.release()

    # A process that dies without releasing (SIGKILL): the kernel frees its lock.
    script = ("import sys, time; sys.path.insert(0, sys.argv[2]); from kernels import leases\n"
              "lease = leases.Lease(sys.argv[1]); print(lease.path, flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(Path.cwd())],
                             stdout=subprocess.PIPE, text=True)
    path = child.stdout.readline().strip()
    assert leases.probe(path) is LeaseState.HELD
    child.kill()
    child.wait()
    assert Path(path).exists() and leases.probe(path) is LeaseState.DEAD
    assert not Path(path).exists()                     # the prober tidied it


def test_probe_never_judges_what_is_not_a_lock_file(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    os.symlink("/etc/hostname", tmp_path / "link")
    assert leases.probe(str(tmp_path / "fifo")) is LeaseState.UNKNOWN
    assert leases.probe(str(tmp_path / "link")) is LeaseState.UNKNOWN
    assert leases.probe(str(tmp_path)) is LeaseState.UNKNOWN
    # A folder we cannot see (another mount namespace, a wiped runtime dir): not ours to judge.
    assert leases.probe(str(tmp_path / "elsewhere" / "x.lock")) is LeaseState.UNKNOWN
    assert leases.probe(str(tmp_path / "x.lock")) is LeaseState.DEAD


def test_stale_lock_files_of_dead_owners_are_tidied_and_live_ones_kept(tmp_path):
    lease, live = leases.Lease(tmp_path), leases.Lease(tmp_path)
    dead, fresh = lease.path.parent / "dead.lock", lease.path.parent / "fresh.lock"
    dead.touch()
    fresh.touch()
    os.utime(dead, (0, 0))
    os.utime(live.path, (0, 0))
    lease.renew()
    assert not dead.exists() and fresh.exists() and live.path.exists()
    assert leases.probe(str(live.path)) is LeaseState.HELD
    lease.release()
    live.release()


def test_a_removed_lock_file_is_taken_again_on_renew(tmp_path):
    lease = leases.Lease(tmp_path)
    lease.path.unlink()                               # a /tmp cleaner
    assert leases.probe(str(lease.path)) is LeaseState.DEAD
    lease.renew()
    assert leases.probe(str(lease.path)) is LeaseState.HELD
    lease.release()


def test_dead_dirs_keep_live_owners_and_young_unrecorded_dirs(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    live, gone = leases.Lease(tmp_path), leases.Lease(tmp_path)
    for name, lease in (("live", live), ("gone", gone), ("mine", gone)):
        (root / name).mkdir()
        leases.write_record(root / name, lease)
    (root / "starting").mkdir()                       # its record is not written yet
    gone.release()
    assert leases.read_record(root / "live") == str(live.path)
    assert sorted(p.name for p in leases.dead_dirs(root, {"mine"})) == ["gone"]
    assert leases.dead_dirs(tmp_path / "missing", set()) == []
    live.release()


def test_stat_lines_and_strays():
    line = "42 (a b) c)) S 7 42 42 0 -1 0 0 0 0 0 150 50 3 2 20 0 1 0 12345 0 0"
    stat = procs.parse_stat(42, line)
    assert (stat.proc, stat.ppid, stat.state, stat.cpu_ticks) == (procs.Proc(42, "12345"), 7, "S", 205)
    own = frozenset({procs.Proc(1, "10"), procs.Proc(2, "11")})
    current = [procs.Stat(procs.Proc(1, "10"), 0, "S", 0), procs.Stat(procs.Proc(2, "11"), 1, "R", 0),
               procs.Stat(procs.Proc(2, "99"), 1, "R", 0),     # pid 2 reused: not ours
               procs.Stat(procs.Proc(5, "50"), 1, "R", 0), procs.Stat(procs.Proc(6, "60"), 1, "Z", 0)]
    assert procs.strays(current, own) == [procs.Proc(2, "99"), procs.Proc(5, "50")]


def test_a_tree_is_its_root_and_descendants_out_of_one_pass():
    def stat(pid: int, ppid: int) -> procs.Stat:
        return procs.Stat(procs.Proc(pid, str(pid)), ppid, "S", 0)
    every = [stat(1, 0), stat(10, 1), stat(11, 10), stat(12, 11), stat(13, 10), stat(20, 1)]
    assert sorted(s.proc.pid for s in procs.tree(10, procs.listing(every))) == [10, 11, 12, 13]
    assert procs.tree(99, procs.listing(every)) == []


async def test_callers_during_a_pass_over_proc_share_the_next_one_and_none_gets_an_older_one():
    passes: list[int] = []
    release = threading.Event()

    def scan() -> list[procs.Stat]:
        passes.append(len(passes) + 1)
        release.wait(5)
        return [procs.Stat(procs.Proc(len(passes), "0"), 0, "S", 0)]

    table = procs.ProcessTable(scan)
    first = asyncio.create_task(table.snapshot())
    while not passes:                       # the first pass is under way
        await asyncio.sleep(0.01)
    later = [asyncio.create_task(table.snapshot()) for _ in range(50)]
    await asyncio.sleep(0.05)
    release.set()
    assert set((await first).by_pid) == {1}
    assert {pid for got in await asyncio.gather(*later) for pid in got.by_pid} == {2}   # begun after they asked
    assert passes == [1, 2]
    assert set((await table.snapshot()).by_pid) == {3}                         # and a fresh one after


def test_cgroup_dir_for_v1_v2_and_both_docker_drivers():
    mounts_v1 = ("30 25 0:26 / /sys/fs/cgroup/cpuacct rw,nosuid - cgroup cgroup rw,cpuacct\n"
                 "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
                 "32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")
    assert procs.cgroup_dir("8:pids:/docker/abc\n2:cpuacct:/docker/abc\n0::/\n", mounts_v1,
                            "cpuacct") == Path("/sys/fs/cgroup/cpuacct/docker/abc")
    assert procs.cgroup_dir("3:cpu,cpuacct:/system.slice/docker-abc.scope\n",
                            mounts_v1.splitlines()[1], "cpuacct") == Path(
        "/sys/fs/cgroup/cpu,cpuacct/system.slice/docker-abc.scope")
    mounts_v2 = "40 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"
    assert procs.cgroup_dir("0::/system.slice/docker-abc.scope\n", mounts_v2, "cpuacct") == Path(
        "/sys/fs/cgroup/system.slice/docker-abc.scope")
    nested = "41 1 0:30 /docker /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"   # a cgroup namespace
    assert procs.cgroup_dir("0::/docker/abc\n", nested, "cpuacct") == Path("/sys/fs/cgroup/abc")
    assert procs.cgroup_dir("2:cpuacct:/docker/abc\n", mounts_v2, "cpuacct") is None
    assert procs.cgroup_dir("2:memory:/x\n", mounts_v1, "cpuacct") is None


def test_cpu_seconds_of_this_process_tree_grows_with_work():
    before = procs.cpu_seconds(procs.tree(os.getpid(), procs.listing(procs.every_process())))
    sum(range(3_000_000))
    assert procs.cpu_seconds(procs.tree(os.getpid(), procs.listing(procs.every_process()))) > before


def samples(*pairs: tuple[float, float]) -> list[CpuSample]:
    return [CpuSample(at, cpu) for at, cpu in pairs]


def test_burning_needs_a_whole_window_above_the_share():
    assert not burning([])
    assert not burning(samples((0, 0), (2.9, 2.9)))                    # not 3 s of evidence yet
    assert burning(samples((0, 0), (1, 1), (2, 2), (3, 3)))            # a core for 3 s
    assert not burning(samples((0, 0), (3, 1.5)))                      # exactly half: no
    assert burning(samples((0, 0), (3, 1.6)))
    assert not burning(samples((0, 0), (1, 0.01), (2, 0.02), (3.1, 0.03)))   # idle kernel
    assert not burning(samples((0, 5), (3, 1)))                        # counter reset: no load
    # A burst long ago does not count: only the newest window is judged.
    assert not burning(samples((0, 0), (1, 1), (5, 1.1), (8, 1.2)))
    assert burning(samples((0, 0), (1, 0), (4, 2)), window=3, share=0.5)
    assert not burning(samples((0, 0), (4, 2)), window=3, share=0.6)


def test_keep_holds_just_one_window_of_samples():
    kept: tuple[CpuSample, ...] = ()
    for second in range(10):
        kept = keep(kept, CpuSample(float(second), second * 0.9))
    assert [s.at for s in kept] == [6.0, 7.0, 8.0, 9.0] and burning(kept)
    assert keep((), CpuSample(0, 0)) == (CpuSample(0, 0),)
