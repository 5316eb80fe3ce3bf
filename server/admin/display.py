"""How the admin pages show values: durations, times, people. Pure functions for templates."""
from __future__ import annotations

import datetime as dt
from typing import Any

MISSING = "-"


def ms(value: float | None) -> str:
    """A duration in whole milliseconds, or "-" when it was never measured."""
    if value is None:
        return MISSING
    return f"{value:,.0f} ms" if value >= 1 or value == 0 else f"{value:.1f} ms"


def utc_text(iso: str | None) -> str:
    """An ISO time as `2026-11-29 21:33:05 UTC` (seconds, the zone named): what the page shows
    before its script rewrites it into the viewer's zone."""
    if not iso:
        return MISSING
    when = dt.datetime.fromisoformat(iso)
    when = (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def who(user_id: str | None, email: str | None, name: str | None = None) -> str:
    """A person as an admin recognises them: the email, else the name, else a short id."""
    if email:
        return email
    if name:
        return name
    return f"anonymous {user_id[:8]}" if user_id else MISSING


def pool(hit: bool | None) -> str:
    return {True: "warm", False: "cold"}.get(hit, MISSING)


def client(value: str | None) -> str:
    return {"api": "Jupyter client", "lesson": "lesson page"}.get(value or "lesson", value or MISSING)


def event_text(kind: str, data: Any) -> str:
    """One trace event's content as a line a person reads, not JSON (the trace keeps an output's
    kind, size and error, not its text)."""
    if not isinstance(data, dict):
        return "" if data is None else str(data)
    if kind == "output":
        what = data.get("name") or data.get("output_type") or "output"
        text = f"{what}, {data.get('bytes', 0)} bytes"
        if data.get("ename"):
            text += f": {data['ename']}: {data.get('evalue') or ''}"
        return text
    return " · ".join(f"{key.replace('_', ' ')}: {_short(value)}" for key, value in data.items()
                      if key not in ("code", "elapsed_ms", "user_id") and value not in (None, ""))


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


HELPERS = {"ms": ms, "utc_text": utc_text, "person": who, "pool": pool, "client_text": client,
           "event_text": event_text}
