"""Structured logging: one `key=value` line per event, one line per HTTP request."""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

ACCESS = logging.getLogger("lessonserver.access")


class KeyValueFormatter(logging.Formatter):
    """`ts=... level=... logger=... msg="..." k=v` so that lines grep and parse."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "fields", {}))
        line = " ".join(f"{key}={_quote(value)}" for key, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n'):
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
