"""A real server of the kernel API routes, on the local sandbox, for the API and channel tests."""
from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import pytest
import tornado.httpclient
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket
from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session

from kernels.manager import KernelManager
from kernels.plugins import discover
from kernels.sandbox import create_sandbox
from server import db
from server.handlers.base import USER_COOKIE, Common
from server.handlers.kernels_api import routes
from server.metrics import Metrics
from server.accounts.connections import PerIpCap
from server.accounts.limiter import (CredentialLimiter, CredentialRules, MemoryRateStore,
                                     NewLearnerLimiter)
from server.store import users
from server.tracing.tracer import KernelEventRouter

TOKEN = "test-token-" + "x" * 20
COOKIE_SECRET = "cookie-secret-" + "y" * 24
XSRF = "xsrf-value-for-tests"


@dataclasses.dataclass
class Api:
    base: str
    manager: KernelManager
    engine: Any
    client: tornado.httpclient.AsyncHTTPClient
    traced: list                # trace events of the runs Jupyter clients sent
    metrics: Metrics

    async def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN,
                   headers: dict | None = None) -> tornado.httpclient.HTTPResponse:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"token {token}"
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if body is None and method == "POST":
            body = b""
        return await self.client.fetch(self.base + path, method=method, body=body, headers=headers,
                                       raise_error=False, follow_redirects=False,
                                       allow_nonstandard_methods=True)

    async def start(self, name: str = "python", **kwargs) -> dict:
        response = await self.call("POST", "/api/kernels", {"name": name}, **kwargs)
        assert response.code == 201, response.body
        return json.loads(response.body)

    async def learner(self) -> tuple[str, dict[str, str]]:
        """A fresh learner's id and headers: the signed user cookie plus the XSRF pair."""
        user = await users.create_anonymous(self.engine)
        signed = tornado.web.create_signed_value(COOKIE_SECRET, USER_COOKIE, user.id).decode()
        return user.id, {"Cookie": f"{USER_COOKIE}={signed}; _xsrf={XSRF}", "X-XSRFToken": XSRF}

    def ws_url(self, kernel_id: str, query: str = "") -> str:
        return self.base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels{query}"


async def serve_api(settings):
    """Start the server; returns (Api, close coroutine function)."""
    await asyncio.to_thread(db.upgrade, settings)
    engine = db.create_engine(settings)
    plugins = discover()
    sandbox = create_sandbox(settings)
    traced: list = []
    metrics = Metrics()
    manager = KernelManager(settings, sandbox, plugins,
                            on_event=[KernelEventRouter(traced.append), metrics.observe_kernel_event])
    await manager.startup()
    metrics.watch_kernels(lambda: len(manager.list()), lambda: manager.queue_length)
    common = Common(settings, engine, metrics,
                    NewLearnerLimiter(MemoryRateStore(), settings.new_learners_per_ip),
                    users.AnonymousRows(engine))
    limiter = CredentialLimiter(MemoryRateStore(), CredentialRules(settings.auth_per_ip,
                                                                   settings.auth_per_account))
    app = tornado.web.Application(routes(manager, plugins, common, TOKEN, limiter,
                                         PerIpCap(settings.ws_per_ip)),
                                  cookie_secret=COOKIE_SECRET, xsrf_cookies=True)
    server = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    api = Api(f"http://127.0.0.1:{sockets[0].getsockname()[1]}", manager, engine,
              tornado.httpclient.AsyncHTTPClient(), traced, metrics)

    async def close() -> None:
        server.stop()
        await manager.close()
        await sandbox.close()
        await engine.dispose()

    return api, close


@pytest.fixture
async def api_for(make_settings):
    closers = []

    async def make(**env: str):
        api, close = await serve_api(make_settings(LS_SANDBOX="local", **env))
        closers.append(close)
        return api

    yield make
    for close in closers:
        await close()


@pytest.fixture
async def api(api_for):
    return await api_for()


class Channels:
    """A Jupyter client over the channels WebSocket: JSON frames, messages collected in order."""

    def __init__(self, conn: tornado.websocket.WebSocketClientConnection) -> None:
        self.conn = conn
        self.session = Session()
        self.received: list[dict] = []

    @classmethod
    async def open(cls, api: Api, kernel_id: str, token: str = TOKEN) -> Channels:
        request = tornado.httpclient.HTTPRequest(
            api.ws_url(kernel_id, f"?session_id=test-session"),
            headers={"Authorization": f"token {token}"})
        return cls(await tornado.websocket.websocket_connect(request))

    async def send(self, channel: str, msg_type: str, content: dict) -> str:
        msg = self.session.msg(msg_type, content)
        await self.conn.write_message(json.dumps({**msg, "channel": channel}, default=json_default))
        return msg["header"]["msg_id"]

    async def execute(self, code: str, **content) -> str:
        return await self.send("shell", "execute_request",
                               {"code": code, "silent": False, "store_history": True,
                                "user_expressions": {}, "allow_stdin": False, **content})

    async def next(self, timeout: float = 10) -> dict | None:
        raw = await asyncio.wait_for(self.conn.read_message(), timeout)
        if raw is None:
            return None
        msg = json.loads(raw)
        self.received.append(msg)
        return msg

    async def until(self, test, timeout: float = 15) -> dict:
        """Read until a message passes `test`; every message read is in self.received."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.next(timeout)
                if msg is None:
                    raise AssertionError("the socket closed")
                if test(msg):
                    return msg

    async def reply_to(self, msg_id: str, timeout: float = 15) -> dict:
        """The shell reply to a request, after the kernel went idle for it."""
        reply = idle = None
        async with asyncio.timeout(timeout):
            while reply is None or idle is None:
                msg = await self.until(lambda m: m["parent_header"].get("msg_id") == msg_id)
                if msg["channel"] == "shell":
                    reply = msg
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = msg
        return reply

    def outputs(self, msg_id: str) -> list[dict]:
        return [m for m in self.received if m["channel"] == "iopub"
                and m["parent_header"].get("msg_id") == msg_id
                and m["msg_type"] in ("stream", "execute_result", "error", "display_data")]

    def close(self) -> None:
        self.conn.close()
