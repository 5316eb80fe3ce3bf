"""A cookie-keeping HTTP client for account tests, and reading the outbox of embedded mode."""
from __future__ import annotations

import asyncio
import http.cookies
import re
import time
import urllib.parse

import tornado.httpclient

from server.store import emails

LINK = re.compile(r"https?://\S+?(/[^\s?]*\?token=[A-Za-z0-9_-]+)")


class Client:
    """One browser: keeps its cookies, sends the XSRF token with every form it posts."""

    def __init__(self, base: str, user_agent: str = "test-client") -> None:
        self.base = base
        self.cookies: dict[str, str] = {}
        self.morsels: dict[str, http.cookies.Morsel] = {}
        self.user_agent = user_agent
        self.http = tornado.httpclient.AsyncHTTPClient()

    async def fetch(self, path: str, method: str = "GET", body: str | None = None,
                    headers: dict[str, str] | None = None) -> tornado.httpclient.HTTPResponse:
        cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await self.http.fetch(
            self.base + path, method=method, body=body, raise_error=False, follow_redirects=False,
            headers={"User-Agent": self.user_agent, **({"Cookie": cookie} if cookie else {}),
                     **(headers or {})})
        for header in response.headers.get_list("Set-Cookie"):
            jar = http.cookies.SimpleCookie()
            jar.load(header)
            for name, morsel in jar.items():
                self.morsels[name] = morsel
                if morsel.value in ("", '""'):
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    async def get(self, path: str) -> tornado.httpclient.HTTPResponse:
        return await self.fetch(path)

    async def post(self, path: str, form: dict[str, str] | None = None, *,
                   xsrf: bool = True) -> tornado.httpclient.HTTPResponse:
        if xsrf and "_xsrf" not in self.cookies:
            await self.get("/login")          # any form page sets the XSRF cookie
        fields = dict(form or {})
        if xsrf:
            fields["_xsrf"] = self.cookies["_xsrf"]
        return await self.fetch(path, "POST", urllib.parse.urlencode(fields))


XSRF_VALUE = re.compile(r'name="_xsrf" value="[^"]*"')


def same_page(a: tornado.httpclient.HTTPResponse, b: tornado.httpclient.HTTPResponse,
              address_a: str, address_b: str) -> bool:
    """Whether two answers read the same but for the address typed (and the masked XSRF token)."""
    def plain(response, address):
        return XSRF_VALUE.sub("", text(response)).replace(address, "ADDRESS")
    return (a.code, plain(a, address_a)) == (b.code, plain(b, address_b))


def text(response: tornado.httpclient.HTTPResponse) -> str:
    return (response.body or b"").decode()


async def emailed(engine, to: str, kind: str) -> list[emails.LoggedEmail]:
    """Every `kind` email to `to`, newest first."""
    return [e for e in await emails.recent(engine) if e.recipient == to and e.kind == kind]


async def link(engine, to: str, kind: str, timeout: float = 10.0) -> str:
    """The path and token of the newest `kind` email's link to `to` (embedded mode keeps bodies).
    Waits for it: the pages answer before they send anything."""
    return LINK.search((await arrived(engine, to, kind, 1, timeout))[0].outbox).group(1)


async def arrived(engine, to: str, kind: str, count: int = 1,
                  timeout: float = 10.0) -> list[emails.LoggedEmail]:
    """The `kind` emails to `to` once at least `count` are in the outbox with their text."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in await emailed(engine, to, kind) if e.outbox]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)
