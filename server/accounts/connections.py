"""A cap on the long-lived connections (WebSockets) one client address holds at once."""
from __future__ import annotations

import collections


class PerIpCap:
    """Handlers `acquire(ip)` before accepting a socket and `release(ip)` once it closes.

    One counter per server process, shared by every WebSocket route, so a
    client cannot open `limit` lesson sockets and `limit` kernel sockets.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: collections.Counter[str] = collections.Counter()

    def acquire(self, ip: str) -> bool:
        if self._open[ip] >= self.limit:
            return False
        self._open[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self._open[ip] -= 1
        if self._open[ip] <= 0:
            del self._open[ip]

    def held(self, ip: str) -> int:
        return self._open.get(ip, 0)
