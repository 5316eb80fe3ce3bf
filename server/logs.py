"""Structured logging: one `key=value` line per event, one line per HTTP request.

Every line leaves through one formatter on the root handler, ours and the
libraries' alike (Tornado's warnings carry the full URI, `?token=` included),
and that formatter redacts secrets from the finished line.
"""
from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

ACCESS = logging.getLogger("lessonserver.access")
REDACTED = "[redacted]"
MAX_MESSAGE = 4096     # a message is cut here: Tornado's warnings carry URIs a client chose

# A `name=value` is secret when the name contains one of these (query, form, our own fields);
# in a query string also the short names that carry secrets there (OAuth `code`, `key`, `sig`).
_SECRET_WORDS = (r"token|secret|passw|pwd|xsrf|csrf|api[_-]?key|apikey|authori[sz]ation"
                 r"|cookie|credential")
_QUERY_WORDS = _SECRET_WORDS + r"|key|sig|session|auth|code|ticket|nonce"
# Linear on hostile input (a URL of `tokentoken...`): the lookahead finds the word once, the
# possessive quantifiers (++, *+) never backtrack. A log line costs no more than its length.
_VALUE = r"(\\?\"(?:[^\"\\\n]|\\.)*+\"?|(?:(?!%26)[^&\s\"'\\,;)])*+)"
_PATTERNS = (
    # Header-shaped: `Authorization: token T`, `'Cookie': 'a=b; c=d'`, `Set-Cookie=...`.
    re.compile(r"(?i)((?<![\w-])(?:proxy-)?(?:authorization|set-cookie|cookie|x-xsrftoken"
               r"|x-csrftoken|x-api-key)[\"']?\s*+[:=]\s*+[\"']?)([^\n\"'}]++)"),
    re.compile(r"(?i)((?:[?&;]|%3F|%26)(?=[\w.-]*?(?:" + _QUERY_WORDS + r"))[\w.-]++(?:=|%3D))"
               + _VALUE),
    re.compile(r"(?i)((?<![\w.-])(?=[\w.-]*?(?:" + _SECRET_WORDS + r"))[\w.-]++(?:=|%3D))"
               + _VALUE),
)


# Every pattern above needs a word of _QUERY_WORDS, and each of those holds one of these: a
# line without any (most access lines) skips the three scans, three quarters of the cost of
# a request's log line (a regex search for the words alone costs as much as the scans).
_WORDS = ("token", "secret", "passw", "pwd", "xsrf", "csrf", "key", "auth", "cookie",
          "credential", "sig", "session", "code", "ticket", "nonce")


def _may_hold_secret(text: str) -> bool:
    # As the patterns' (?i) sees letters: also the Kelvin sign for k, long s for s (casefold
    # maps both), and dotted and dotless capital I for i (casefold leaves a dot or a ı).
    folded = text.casefold().replace("\u0131", "i").replace("\u0307", "")
    return any(word in folded for word in _WORDS)


def redact(text: str) -> str:
    """`text` with the values of tokens, XSRF, passwords, cookies and auth headers replaced."""
    if not _may_hold_secret(text):
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + (REDACTED if m.group(2) else ""), text)
    return text


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=... logger=... msg="..." k=v` so that lines grep and parse."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _cut(record.getMessage()),
        }
        fields.update(getattr(record, "fields", {}))
        line = " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def _cut(message: str) -> str:
    if len(message) <= MAX_MESSAGE:
        return message
    return f"{message[:MAX_MESSAGE]}... ({len(message)} characters)"


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or " " in text or '"' in text or "=" in text or "\n" in text:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def setup(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Tornado's own access log is replaced by log_request below.
    logging.getLogger("tornado.access").disabled = True


def log_request(handler: Any) -> None:
    """Tornado `log_function`: method, path, status, latency and the request id."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    ACCESS.log(level, "request", extra={"fields": {
        "request_id": getattr(handler, "request_id", "-"),
        "method": request.method,
        "path": request.path,
        "status": status,
        "ms": round(request.request_time() * 1000, 1),
        "ip": request.remote_ip,
    }})
