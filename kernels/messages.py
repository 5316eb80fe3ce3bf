"""Jupyter messages as values: wire frames in, JSON WebSocket frames out. Pure.

A kernel message arrives as ZMQ frames `[idents..., DELIM, signature, header,
parent_header, metadata, content, buffers...]`. `from_frames` checks the
signature and parses only the two headers (what the relay acts on); metadata
and content stay raw bytes until someone asks for `content`, so a message that
is relayed to a Jupyter client is never parsed and re-serialized whole.
`ws_frame` writes the JSON frame Jupyter Server sends to its WebSocket clients
by splicing those raw parts. `parse_client_frame` is the other direction: one
client frame, checked, as the parts `Session.serialize` signs.
"""
from __future__ import annotations

import dataclasses
import functools
import hmac
import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_client.session import DELIM

CLIENT_CHANNELS = ("shell", "control", "stdin")
MAX_DEPTH = 64                 # nesting a client frame may have (deeper: a bad frame)
PROTOCOL_VERSION = "5.3"


class BadMessage(ValueError):
    """A frame that is not a Jupyter message we can use; the message says why."""


@dataclasses.dataclass(frozen=True)
class KernelMessage:
    """One message from a kernel (or made by the server), parsed as far as needed."""
    channel: str
    header: Mapping[str, Any]
    parent: Mapping[str, Any]
    raw_metadata: bytes = b"{}"
    raw_content: bytes = b"{}"
    raw_header: bytes | None = None       # as it came over the wire, when it did
    raw_parent: bytes | None = None

    @property
    def msg_type(self) -> str:
        return str(self.header.get("msg_type") or "")

    @property
    def parent_id(self) -> str | None:
        value = self.parent.get("msg_id")
        return value if isinstance(value, str) else None

    @functools.cached_property
    def content(self) -> Mapping[str, Any]:
        """The content, parsed on first use; anything but an object reads as empty."""
        try:
            value = _loads(self.raw_content)
        except (ValueError, RecursionError):
            return {}
        return value if isinstance(value, dict) else {}

    def as_dict(self) -> dict[str, Any]:
        """The shape jupyter_client hands out, for the pure fold."""
        return {"header": self.header, "parent_header": self.parent, "msg_type": self.msg_type,
                "content": self.content}

    def with_content(self, content: Mapping[str, Any]) -> "KernelMessage":
        return dataclasses.replace(self, raw_content=_dumps(content))


# One encoder for every message: json.dumps with options builds a new one per call.
_ENCODE = json.JSONEncoder(default=json_default, ensure_ascii=False).encode
_EMPTY = b"{}"


def _dumps(value: Any) -> bytes:
    return _ENCODE(value).encode()


# Every message's headers, and the content of most, are parsed on the reader's path: raw_decode
# skips what json.loads adds (detecting the encoding of bytes, a regex for trailing space).
_DECODE = json.JSONDecoder().raw_decode


def _loads(raw: bytes) -> Any:
    """json.loads(raw) at half its cost; raises ValueError (or RecursionError) as it does."""
    text = raw.decode()
    try:
        value, end = _DECODE(text)
    except ValueError:              # leading space, or no JSON at all: json.loads says which
        return json.loads(text)
    if end != len(text) and text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return value


def _loads_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = _loads(raw)
    except (ValueError, RecursionError):
        raise BadMessage(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise BadMessage(f"{what} is not an object")
    return value


def from_frames(channel: str, frames: list[bytes], key: bytes,
                sign: Any) -> KernelMessage:
    """Check and split one multipart message; `sign(parts) -> bytes` is the session's HMAC.

    Raises BadMessage for a bad signature or shape (the caller skips and counts it)."""
    try:
        split = frames.index(DELIM)
    except ValueError:
        raise BadMessage("no delimiter") from None
    rest = frames[split + 1:]
    if len(rest) < 5:
        raise BadMessage("too few frames")
    signature, parts = rest[0], rest[1:5]
    if key and not hmac.compare_digest(signature, sign(parts)):
        raise BadMessage("bad signature")
    return KernelMessage(channel, _loads_object(parts[0], "header"),
                         _loads_object(parts[1], "parent header"), parts[2], parts[3],
                         parts[0], parts[1])


def to_parts(header: Mapping[str, Any], parent: Mapping[str, Any], metadata: Mapping[str, Any],
             content: Mapping[str, Any]) -> list[bytes]:
    """The four signed parts of an outgoing message."""
    return [_dumps(header), _dumps(parent) if parent else _EMPTY,
            _dumps(metadata) if metadata else _EMPTY, _dumps(content)]


def _utf8(raw: bytes) -> bytes:
    """`raw` as valid UTF-8 (a kernel's bytes are not trusted to be), copied only if not."""
    if raw.isascii():
        return raw
    return raw.decode(errors="replace").encode()


def ws_frame(msg: KernelMessage) -> bytes:
    """The JSON frame Jupyter Server writes to a WebSocket client (no binary buffers), as
    UTF-8 bytes: Tornado sends them as a text frame without decoding and re-encoding."""
    return b"".join((
        b'{"header":', _utf8(msg.raw_header or _dumps(msg.header)),
        b',"parent_header":', _utf8(msg.raw_parent or _dumps(msg.parent)),
        b',"metadata":', _utf8(msg.raw_metadata), b',"content":', _utf8(msg.raw_content),
        b',"msg_id":', _dumps(msg.header.get("msg_id")), b',"msg_type":', _dumps(msg.msg_type),
        b',"channel":', _dumps(msg.channel), b',"buffers":[]}'))


def new_header(msg_type: str, session: str = "lessonserver", username: str = "lessonserver") -> dict:
    # 128 random bits as hex, as uuid4().hex has (less 6 fixed bits) at a sixth of its cost.
    return {"msg_id": os.urandom(16).hex(), "msg_type": msg_type, "username": username,
            "session": session, "date": datetime.now(timezone.utc).isoformat(),
            "version": PROTOCOL_VERSION}


def server_message(channel: str, msg_type: str, content: Mapping[str, Any],
                   parent: Mapping[str, Any] | None = None) -> KernelMessage:
    """A message the server itself sends a client (limit notes, restarting, dead)."""
    return KernelMessage(channel, new_header(msg_type), dict(parent or {}), b"{}", _dumps(content))


# --- client frames ------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ClientMessage:
    channel: str
    header: Mapping[str, Any]
    parent: Mapping[str, Any]
    metadata: Mapping[str, Any]
    content: Mapping[str, Any]

    @property
    def msg_type(self) -> str:
        return str(self.header["msg_type"])

    @property
    def msg_id(self) -> str:
        return str(self.header["msg_id"])


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON value, iteratively (no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def parse_client_frame(raw: str | bytes) -> ClientMessage:
    """A client's JSON frame as a message to sign and send; BadMessage says what is wrong."""
    if isinstance(raw, bytes):
        raise BadMessage("binary frames are not supported; send JSON text frames")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadMessage("frames must be JSON") from None
    if not isinstance(data, dict):
        raise BadMessage("frames must be JSON objects")
    # Each level opens a bracket or brace: with no more of them than the limit in the whole
    # text (nearly every frame), no walk through the values is needed.
    if raw.count("[") + raw.count("{") > MAX_DEPTH and _depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise BadMessage(f"frames may nest at most {MAX_DEPTH} levels")
    channel = data.get("channel") or "shell"    # as Jupyter Server: no channel means shell
    if channel not in CLIENT_CHANNELS:
        raise BadMessage(f"channel must be one of {', '.join(CLIENT_CHANNELS)}, not {channel!r}")
    header = data.get("header")
    if not isinstance(header, dict) or not isinstance(header.get("msg_type"), str) \
            or not isinstance(header.get("msg_id"), str):
        raise BadMessage("header must be an object with string msg_type and msg_id")
    parts = {key: data.get(key) if data.get(key) is not None else {}
             for key in ("parent_header", "metadata", "content")}
    for key, value in parts.items():
        if not isinstance(value, dict):
            raise BadMessage(f"{key} must be an object")
    return ClientMessage(channel, header, parts["parent_header"], parts["metadata"],
                         parts["content"])
