"""Where to send a browser after signing in: only a path on this site, never another host."""
from __future__ import annotations

import urllib.parse

_MAX_DECODES = 3


def local_redirect(target: object, default: str = "/") -> str:
    """`target` when it is a plain local path (`/x?y#z`), else `default`.

    Refused: anything not starting with a single `/`; `//host` and `/\\host`
    (browsers read a backslash as a slash); a backslash, space, control or
    non-ASCII character anywhere (browsers strip tab and newline, so
    `/<TAB>/host` becomes `//host`); and `//`, `/\\` or controls hiding behind
    percent-encoding, in case something on the way decodes it again.
    """
    if not isinstance(target, str) or len(target) > 2048 or not _local_start(target):
        return default
    if "\\" in target or any(not 0x20 < ord(c) < 0x7f for c in target):
        return default
    text = target
    for _ in range(_MAX_DECODES):
        decoded = urllib.parse.unquote(text)
        if decoded == text:
            return target
        if not _local_start(decoded) or any(ord(c) < 0x20 or ord(c) == 0x7f for c in decoded):
            return default
        text = decoded
    return default      # still encoded after several rounds: nobody needs that


def _local_start(text: str) -> bool:
    if not text.startswith("/") or text[1:2] in ("/", "\\"):
        return False
    parts = urllib.parse.urlsplit(text)
    return not parts.scheme and not parts.netloc
