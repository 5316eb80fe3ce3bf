"""Admin JSON for traced runs: `GET /api/admin/runs` and `GET /api/admin/runs/{id}`.

Admin only: `Authorization: token <api token>`, compared in constant time;
401 without credentials, 403 with wrong ones. Dependencies come through
`routes(**deps)` into initialize(): the API token and the async engine.
"""
from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Mapping
from typing import Any

import tornado.web
from sqlalchemy.ext.asyncio import AsyncEngine

from server.tracing import queries
from server.tracing.queries import RunFilter

MAX_LIMIT = 500
STATUSES = frozenset({"running", "ok", "error", "limit", "died"})


class BadFilter(ValueError):
    """A query parameter the API cannot use; the message says which and why."""


def parse_filter(args: Mapping[str, str]) -> RunFilter:
    """The query string (one value per name) as a RunFilter."""
    status = args.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadFilter(f"status must be one of {', '.join(sorted(STATUSES))}")
    return RunFilter(user=args.get("user") or None, exercise=args.get("exercise") or None,
                     status=status, since=parse_time(args, "since"), until=parse_time(args, "until"),
                     limit=parse_count(args, "limit", 50, 1, MAX_LIMIT),
                     offset=parse_count(args, "offset", 0, 0, None))


def parse_time(args: Mapping[str, str], name: str) -> dt.datetime | None:
    raw = args.get(name)
    if not raw:
        return None
    try:
        when = (dt.datetime.fromtimestamp(float(raw), dt.timezone.utc)
                if raw.replace(".", "", 1).isdigit() else dt.datetime.fromisoformat(raw))
    except ValueError:
        raise BadFilter(f"{name} must be an ISO 8601 time or seconds since the epoch") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def parse_count(args: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bound = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise BadFilter(f"{name} must be a whole number {bound}")
    return int(raw)


def token_verdict(header: str | None, expected: str | None) -> int | None:
    """None when allowed, else the HTTP status: 401 without a token, 403 with a wrong one."""
    scheme, _, given = (header or "").partition(" ")
    if scheme.lower() != "token" or not given.strip():
        return 401
    if not expected or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return 403
    return None


class AdminRunsBase(tornado.web.RequestHandler):
    def initialize(self, api_token: str | None, engine: AsyncEngine) -> None:
        self.api_token = api_token
        self.engine = engine

    def prepare(self) -> None:
        verdict = token_verdict(self.request.headers.get("Authorization"), self.api_token)
        if verdict == 401:
            self.set_header("WWW-Authenticate", 'token realm="lessonserver admin"')
            raise tornado.web.HTTPError(401, "an admin token is required")
        if verdict == 403:
            raise tornado.web.HTTPError(403, "this token is not an admin token")

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def reply(self, payload: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = exc.log_message if isinstance(exc, tornado.web.HTTPError) and status_code < 500 \
            else None
        self.reply({"error": {"status": status_code, "reason": self._reason, "message": message}})


class RunsHandler(AdminRunsBase):
    async def get(self) -> None:
        args = {name: self.get_query_argument(name) for name in self.request.query_arguments}
        try:
            run_filter = parse_filter(args)
        except BadFilter as exc:
            raise tornado.web.HTTPError(400, str(exc)) from None
        runs = await queries.search_runs(self.engine, run_filter)
        self.reply({"runs": runs, "limit": run_filter.limit, "offset": run_filter.offset})


class RunHandler(AdminRunsBase):
    async def get(self, run_id: str) -> None:
        run = await queries.get_run(self.engine, run_id)
        if run is None:
            raise tornado.web.HTTPError(404, "no run with this id")
        self.reply(run)


def routes(**deps: Any) -> list[tuple]:
    """`routes(api_token=..., engine=...)` for the application's route table."""
    return [(r"/api/admin/runs", RunsHandler, deps),
            (r"/api/admin/runs/([0-9a-f]{32})", RunHandler, deps)]
