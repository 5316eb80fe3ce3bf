"""A small loopback HTTP/1.1 load generator: keep-alive connections, bounded in count and time.

Closed loop (`throughput`: C connections ask back to back for a fixed time, in several
processes so the client is not the bottleneck) and open loop (`schedule`: requests
sent at given instants, whatever the server's speed, as a spike arrives).
"""
from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import statistics
import time
from urllib.parse import urlsplit


class Connection:
    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        assert parts.hostname in ("127.0.0.1", "localhost"), "loopback only"
        self.host, self.port = parts.hostname, parts.port
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.template = f"GET {{}} HTTP/1.1\r\nHost: {self.host}\r\n{extra}\r\n"
        self.reader = self.writer = None

    async def get(self, path: str) -> int:
        """The status of one GET (0 for a broken connection, which is then reopened)."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(self.template.format(path).encode())
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await self.reader.readexactly(length)
            return int(head[9:12])
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            return 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclasses.dataclass(frozen=True)
class Sample:
    latencies: tuple[float, ...]    # seconds, one per request
    errors: int                     # statuses other than 200/304, and broken connections
    seconds: float

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @staticmethod
    def merge(samples: list["Sample"]) -> "Sample":
        return Sample(tuple(l for s in samples for l in s.latencies),
                      sum(s.errors for s in samples), max(s.seconds for s in samples))


async def _closed_loop(url: str, path: str, connections: int, seconds: float,
                       headers: dict[str, str] | None) -> Sample:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        conn = Connection(url, headers)
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            status = await conn.get(path)
            latencies.append(time.perf_counter() - began)
            errors += status not in (200, 304)
        conn.close()
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return Sample(tuple(latencies), errors, time.perf_counter() - began)


def _closed_loop_process(args) -> Sample:
    return asyncio.run(_closed_loop(*args))


def throughput(url: str, path: str, *, connections: int = 50, seconds: float = 5.0,
               processes: int = 2, headers: dict[str, str] | None = None) -> Sample:
    """Requests per second with `connections` in all, split over `processes` client processes."""
    per = max(1, connections // processes)
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return Sample.merge(pool.map(_closed_loop_process,
                                     [(url, path, per, seconds, headers)] * processes))


async def schedule(url: str, paths: list[str], instants: list[float], pool: int = 200) -> list[tuple[float, float, int]]:
    """Open loop: request paths[i % len] at instants[i] (seconds from now) over at most `pool`
    keep-alive connections; (instant, latency, status) per request."""
    free: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(pool):
        free.put_nowait(Connection(url))
    start = time.perf_counter()
    out: list[tuple[float, float, int]] = []

    async def one(i: int, at: float) -> None:
        await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
        began = time.perf_counter()        # waiting for a free connection counts as latency
        conn = await free.get()
        status = await conn.get(paths[i % len(paths)])
        free.put_nowait(conn)
        out.append((at, time.perf_counter() - began, status))
    await asyncio.gather(*(one(i, at) for i, at in enumerate(instants)))
    while not free.empty():
        free.get_nowait().close()
    return out


def median(values) -> float:
    return statistics.median(values) if values else float("nan")
