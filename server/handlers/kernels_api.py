"""The Jupyter-Server-compatible kernel API: /api/kernelspecs and /api/kernels.

Existing Jupyter clients (nbclient through a gateway, JupyterLab, Thebe) speak
this shape, so the JSON follows Jupyter Server's, field for field. Callers are
the API token (owner "api:token") or a learner's cookie (owner = user id); a
caller sees only its own kernels, and another owner's kernel is a 404 so ids
cannot be probed. The WebSocket lives in kernel_channels.py.
"""
from __future__ import annotations

import datetime as dt
import http
import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import tornado.web

from kernels.launch import CONSOLE_SCRIPT, launcher_argv
from kernels.manager import KernelManager, ManagedKernel, UnknownKernel
from kernels import kernelspecs
from kernels.pool import CapacityError
from kernels.quotas import Tier
from kernels.sandbox import SandboxError
from server import auth
from server.accounts.connections import PerIpCap
from server.accounts.limiter import CredentialLimiter
from server.handlers.base import (SESSION_COOKIE, USER_COOKIE, BaseHandler, Common, HeaderError, json_response,
                                  owner_tier, too_many)

if TYPE_CHECKING:
    from kernels.plugins import Plugin

DEFAULT_KERNEL = "python"
TOKEN_ACCOUNT = "api-token"   # the rate limiter's account for guesses at the API token
# Jupyter Server routes only dashed UUIDs (`\w+-\w+-\w+-\w+-\w+`), so ours have that shape.
KERNEL_ID = r"(?P<kernel_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"


ApiError = HeaderError     # an HTTPError that keeps its headers (Retry-After, WWW-Authenticate)


# --- JSON shapes (pure) ------------------------------------------------------

def iso_time(epoch: float) -> str:
    """Jupyter's timestamp format: ISO 8601 in UTC with a Z."""
    moment = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def kernel_model(kernel: ManagedKernel) -> dict[str, Any]:
    return {"id": kernel.id, "name": kernel.plugin, "last_activity": iso_time(kernel.last_activity),
            "execution_state": kernel.execution_state, "connections": kernel.connections}


def kernelspecs_model(plugins: Iterable[Plugin]) -> dict[str, Any]:
    """Remote clients see the launcher's console script (what `lessonserver kernelspecs
    install` sets up on their machine), never a path of this server."""
    return kernelspecs.api_model(plugins, lambda plugin: launcher_argv(plugin.name, CONSOLE_SCRIPT),
                                 DEFAULT_KERNEL)


def error_body(status: int, reason: str, message: str | None, request_id: str) -> dict[str, Any]:
    """Jupyter Server's error shape (top-level "message" and "reason", which its gateway
    client shows to the user) around our usual "error" object."""
    return {"message": message or reason, "reason": reason,
            "error": {"status": status, "reason": reason, "message": message,
                      "request_id": request_id}}


def requested_name(body: bytes, known: Iterable[str]) -> str:
    """The kernel name of a POST /api/kernels body (empty body: the default kernel)."""
    if not body.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the body must be JSON, like {\"name\": \"python\"}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object, like {\"name\": \"python\"}")
    name = data.get("name") or DEFAULT_KERNEL
    if not isinstance(name, str):
        raise ApiError(400, "'name' must be a string")
    known = sorted(known)
    if name not in known:
        raise ApiError(400, f"no kernel named {name!r} (known: {', '.join(known)})")
    return name


# --- handlers ----------------------------------------------------------------

class ApiHandler(BaseHandler):
    """Authentication, ownership and JSON errors shared by the REST handlers and the WebSocket."""
    route = "kernels_api"
    query_token = False          # only the WebSocket takes ?token= (browsers cannot set headers)

    def initialize(self, common: Common, manager: KernelManager, plugins: tuple[Plugin, ...],
                   api_token: str | None, limiter: CredentialLimiter, ws_cap: PerIpCap) -> None:
        super().initialize(common)
        self.manager = manager
        self.plugins = plugins
        self.api_token = api_token
        self.limiter = limiter
        self.ws_cap = ws_cap
        self.owner = ""
        self.tier = Tier.MEMBER

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:
        # A token is not sent by browsers on their own, so token calls cannot be forged
        # cross-site; without any credentials prepare() answers 401 rather than an XSRF 403.
        if auth.header_token(self.request.headers.get("Authorization")) is not None:
            return
        if self.get_cookie(USER_COOKIE) is None and self.get_cookie(SESSION_COOKIE) is None:
            return
        super().check_xsrf_cookie()

    async def prepare(self) -> None:
        super().prepare()
        token = auth.header_token(self.request.headers.get("Authorization"))
        if token is None and self.query_token:
            token = self.get_query_argument("token", "") or None
        user = await self.load_user() if token is None else None
        ip = self.request.remote_ip or "-"
        if token is not None:                 # a token is a credential: guesses are limited
            decision = await self.limiter.attempt(ip, TOKEN_ACCOUNT)
            if not decision.allowed:
                raise too_many(f"Too many wrong tokens; try again in "
                               f"{decision.retry_after_header} s.", decision.retry_after_header)
        verdict = auth.decide(token, self.api_token, user.id if user else None)
        if token is not None and verdict.allowed:
            await self.limiter.succeeded(ip, TOKEN_ACCOUNT)
        if not verdict.allowed:
            headers = {"WWW-Authenticate": 'token realm="lessonserver"'} if verdict.status == 401 else {}
            raise ApiError(verdict.status or 403, verdict.message, headers)
        self.owner = verdict.owner
        self.tier = Tier.EXEMPT if verdict.owner == auth.API_OWNER else owner_tier(user)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # the XSRF check fails before prepare() has named the request
        self.request_id = getattr(self, "request_id", "-")
        exc = kwargs.get("exc_info", (None, None, None))[1]
        for name, value in getattr(exc, "headers", {}).items():
            self.set_header(name, value)
        said = isinstance(exc, tornado.web.HTTPError) and exc.log_message and status_code < 500
        body = error_body(status_code, self._reason or http.HTTPStatus(status_code).phrase,
                          exc.log_message if said else None, self.request_id)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def owned(self, kernel_id: str) -> ManagedKernel:
        kernel = self.manager.get(kernel_id)
        if kernel is None or not auth.may_see(self.owner, kernel.owner):
            raise ApiError(404, f"no kernel {kernel_id}")
        return kernel

    def model(self, kernel: ManagedKernel) -> dict[str, Any]:
        return kernel_model(kernel)


class KernelSpecsHandler(ApiHandler):
    def get(self) -> None:
        json_response(self, kernelspecs_model(self.plugins))


class KernelSpecHandler(ApiHandler):
    def get(self, name: str) -> None:
        specs = kernelspecs_model(self.plugins)["kernelspecs"]
        if name not in specs:
            raise ApiError(404, f"no kernelspec named {name!r}")
        json_response(self, specs[name])


class KernelsHandler(ApiHandler):
    def get(self) -> None:
        json_response(self, [self.model(k) for k in self.manager.list(self.owner)])

    async def post(self) -> None:
        name = requested_name(self.request.body, self.manager.plugins)
        if self.owner != auth.API_OWNER:
            await self.persist_user()     # a kernel is worth a row; new rows are limited per address
        try:
            kernel = await self.manager.start(self.owner, name, self.tier)
        except CapacityError as exc:
            raise ApiError(429, f"no kernel can be started now: {exc}",
                           {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}) from None
        except SandboxError as exc:
            raise ApiError(503, f"the kernel could not be started: {exc}") from None
        self.set_header("Location", f"/api/kernels/{kernel.id}")
        json_response(self, self.model(kernel), status=201)


class KernelHandler(ApiHandler):
    def get(self, kernel_id: str) -> None:
        json_response(self, self.model(self.owned(kernel_id)))

    async def delete(self, kernel_id: str) -> None:
        self.owned(kernel_id)
        try:
            await self.manager.shutdown(kernel_id, "deleted through the API")
        except UnknownKernel:
            raise ApiError(404, f"no kernel {kernel_id}") from None
        self.set_status(204)
        self.finish()


class KernelActionHandler(ApiHandler):
    async def post(self, kernel_id: str, action: str) -> None:
        self.owned(kernel_id)
        try:
            if action == "interrupt":
                await self.manager.interrupt(kernel_id)
                self.set_status(204)
                self.finish()
                return
            kernel = await self.manager.restart(kernel_id)
        except UnknownKernel:
            raise ApiError(404, f"no kernel {kernel_id}") from None
        json_response(self, self.model(kernel))


def routes(manager: KernelManager, plugins: Iterable[Plugin], common: Common,
           api_token: str | None, limiter: CredentialLimiter, ws_cap: PerIpCap) -> list[tuple]:
    """The kernel API's route table, channels WebSocket included, for server/app.py."""
    from server.handlers.kernel_channels import KernelChannelsHandler

    deps = {"common": common, "manager": manager, "plugins": tuple(plugins),
            "api_token": api_token, "limiter": limiter, "ws_cap": ws_cap}
    return [
        (r"/api/kernelspecs/?", KernelSpecsHandler, deps),
        (r"/api/kernelspecs/(?P<name>[A-Za-z0-9_.-]+)/?", KernelSpecHandler, deps),
        (r"/api/kernels/?", KernelsHandler, deps),
        (rf"/api/kernels/{KERNEL_ID}/?", KernelHandler, deps),
        (rf"/api/kernels/{KERNEL_ID}/(?P<action>interrupt|restart)/?", KernelActionHandler, deps),
        (rf"/api/kernels/{KERNEL_ID}/channels", KernelChannelsHandler, deps),
    ]
