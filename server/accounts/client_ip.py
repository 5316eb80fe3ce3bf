"""Who the client is when proxies stand in between: X-Forwarded-For only from proxies we trust.

Without LS_TRUSTED_PROXIES the peer address is the client, whatever headers
say (anyone can write `X-Forwarded-For: 6.6.6.6`, and per-IP limits would
mean nothing). From a trusted peer, X-Forwarded-For is read right to left,
skipping our own proxies: the first address not trusted is the client.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(raw: str) -> tuple[Network, ...]:
    """`10.0.0.1, 10.1.0.0/16, ::1` as networks; ValueError naming the bad entry."""
    networks = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def is_trusted(address: str, trusted: Iterable[Network]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip.version == net.version and ip in net for net in trusted)


def client_ip(peer: str, headers: Mapping[str, str], trusted: tuple[Network, ...]) -> str:
    """The client's address given the TCP peer and the request headers."""
    if not trusted or not is_trusted(peer, trusted):
        return peer
    forwarded = headers.get("X-Forwarded-For")
    if forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        client = peer
        for hop in reversed(hops):
            if _ip(hop) is None:
                break            # garbage: keep the last address we could vouch for
            client = str(_ip(hop))
            if not is_trusted(hop, trusted):
                break
        return client
    real = _ip(headers.get("X-Real-Ip", "").strip())
    return str(real) if real is not None else peer


def client_scheme(peer: str, scheme: str, headers: Mapping[str, str],
                  trusted: tuple[Network, ...]) -> str:
    """`https` when a trusted proxy says the client used it, else the connection's own scheme."""
    if not trusted or not is_trusted(peer, trusted):
        return scheme
    said = headers.get("X-Forwarded-Proto", headers.get("X-Scheme", "")).split(",")[0].strip().lower()
    return said if said in ("http", "https") else scheme


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
