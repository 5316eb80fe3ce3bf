"""JSON from strangers (WebSocket frames): bounded in size and nesting, every failure a ValueError.

`json.loads` recurses in C: a 100,000-deep `[[[...` raises RecursionError,
which is not a ValueError and escapes handlers that catch bad JSON. Here it
is a BadJson like any other malformed frame, and anything nested deeper than
`max_depth` (which later recursive code could trip over) is refused too.
"""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64     # Jupyter messages nest a handful of levels; widget state a few more


class BadJson(ValueError):
    """Not acceptable JSON; the message says why, in words a client can act on."""


def loads(raw: str | bytes, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    if len(raw) > max_bytes:
        raise BadJson(f"the frame is larger than {max_bytes} bytes")
    try:
        value = json.loads(raw)    # NaN and Infinity pass, as in jupyter_client's own JSON
    except RecursionError:
        raise BadJson(f"the frame nests deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError, TypeError):
        raise BadJson("the frame is not valid JSON") from None
    if openings(raw) > max_depth and depth(value, max_depth) > max_depth:
        raise BadJson(f"the frame nests deeper than {max_depth} levels")
    return value


def openings(raw: str | bytes) -> int:
    """Brackets and braces in the text: each level of nesting opens one, so a frame with no
    more than the limit (a run's frame, nearly always) needs no walk through its values."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def depth(value: Any, stop_past: int) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion; stops once past `stop_past`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > stop_past:
            return deepest
        stack.extend((child, level) for child in children)
    return deepest
