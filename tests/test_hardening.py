"""The server's own protection, on a real server over real sockets (local-sandbox kernels):
safe redirects and rate limits at admin sign-in, bounded WebSocket frames, connection
timeouts, a per-address WebSocket cap, trusted proxies only, and headers on static files."""
from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest
import tornado.httpclient
import tornado.simple_httpclient
import tornado.websocket

from tests.test_exercise_ws import TOKEN, Page, serve_course

OTHER_IP = "127.0.0.2"      # a second client address on the loopback network


@pytest.fixture
async def site(tmp_path, make_settings):
    async with serve_course(tmp_path, make_settings) as server:
        yield server


async def login_form(site, source: str | None = None) -> tuple[str, str]:
    """(Cookie header, _xsrf value) from the login page, fetched from `source`."""
    page = await site.client.fetch(site.base + "/admin/login", network_interface=source)
    cookie = next(c.split(";", 1)[0] for c in page.headers.get_list("Set-Cookie")
                  if c.startswith("_xsrf="))
    return cookie, cookie.split("=", 1)[1]


async def sign_in(site, token: str, next_: str = "/admin/runs", form=None, source=None):
    cookie, xsrf = form or await login_form(site, source)
    return await site.client.fetch(
        f"{site.base}/admin/login?next={next_}", method="POST", headers={"Cookie": cookie},
        body=f"token={token}&_xsrf={xsrf}", raise_error=False, follow_redirects=False,
        network_interface=source)


# --- item 6: no open redirect after sign-in ----------------------------------------

@pytest.mark.parametrize("next_, location", [
    ("/%5Cevil.example/x", "/admin/runs"), ("//evil.example/x", "/admin/runs"),
    ("%2F%2Fevil.example", "/admin/runs"), ("%5C/evil.example", "/admin/runs"),
    ("http://evil.example/", "/admin/runs"), ("/%09/evil.example", "/admin/runs"),
    ("javascript:alert(1)", "/admin/runs"), ("/admin/runs%3Fstatus%3Dok", "/admin/runs?status=ok"),
])
async def test_sign_in_redirects_only_to_local_paths(site, next_, location):
    response = await sign_in(site, TOKEN, next_)
    assert response.code == 302 and response.headers["Location"] == location


# --- item 7: credential checks are rate-limited per address and per account ----------

async def test_hammering_the_login_gets_429_and_the_right_token_from_elsewhere_still_works(site):
    form = await login_form(site)
    codes, started = [], time.monotonic()
    for n in range(200):
        response = await sign_in(site, f"wrong-{n}", form=form)
        codes.append(response.code)
        if response.code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert "Too many sign-in attempts" in response.body.decode()
    assert codes[:10] == [403] * 10 and codes[10:] == [429] * 190, codes
    assert (await sign_in(site, TOKEN, form=form)).code == 429        # this address waits
    signed = await sign_in(site, TOKEN, source=OTHER_IP)
    assert signed.code == 302 and signed.headers["Location"] == "/admin/runs"
    assert time.monotonic() - started < 30


async def test_an_admin_who_signs_in_often_is_never_limited(site):
    form = await login_form(site)
    codes = [(await sign_in(site, TOKEN, form=form)).code for _ in range(25)]
    assert codes == [302] * 25


# --- item Low: a 100,000-deep frame is a bad frame, and the socket goes on -----------

async def test_deeply_nested_frame_is_answered_and_the_socket_keeps_working(site):
    page = await Page.open(site)
    await page.until("kernel")
    await page.socket.write_message("[" * 100_000)
    error, _ = await page.until("error")
    assert "deeper" in error["message"]
    result, _ = await page.run("hello", "print('hello')")
    assert result["verdict"]["passed"] is True


# --- item Low: stalled connections are closed; one address holds few sockets -----------

def closed_within(port: int, payload: bytes, limit: float) -> float:
    """Seconds until the server closes a connection that sent only `payload`."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as conn:
        conn.sendall(payload)
        started = time.monotonic()
        while conn.recv(4096):
            pass
        return time.monotonic() - started


async def test_half_open_requests_are_closed_after_the_timeouts(tmp_path, make_settings):
    async with serve_course(tmp_path, make_settings, LS_HTTP_IDLE_TIMEOUT="1",
                            LS_HTTP_BODY_TIMEOUT="1", LS_HTTP_MAX_HEADER_BYTES="4096") as site:
        page = await Page.open(site)           # a quiet WebSocket is not an idle HTTP connection
        port = int(site.base.rsplit(":", 1)[1])
        half_headers = b"GET / HTTP/1.1\r\nHost: x\r\n"
        half_body = b"POST /admin/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\ntoken=x"
        waits = await asyncio.gather(*(asyncio.to_thread(closed_within, port, payload, 10)
                                       for payload in [half_headers] * 20 + [half_body] * 5
                                       + [b""] * 5))
        assert max(waits) < 4, waits
        assert (await site.get("/", headers={"X-Pad": "x" * 1000})).code == 200
        with pytest.raises(tornado.simple_httpclient.HTTPStreamClosedError):
            await site.get("/", headers={"X-Pad": "x" * 8000})       # past the header limit
        await page.send(type="bogus")
        assert "unknown frame type" in (await page.until("error"))[0]["message"]


async def test_the_nth_plus_one_websocket_from_one_address_is_refused(tmp_path, make_settings):
    async with serve_course(tmp_path, make_settings, LS_WS_PER_IP="2") as site:
        first = await Page.open(site)
        for _ in range(5):                   # refused handshakes hold no slot
            plain = await site.get("/lessons/practice/ws", headers={"Cookie": first.cookie})
            assert plain.code == 400
        second = await Page.open(site, cookie=first.cookie)
        with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
            await Page.open(site, cookie=first.cookie)
        assert refused.value.code == 429
        second.socket.close()
        for _ in range(50):                  # the slot comes back once the server sees the close
            try:
                third = await Page.open(site, cookie=first.cookie)
                break
            except tornado.httpclient.HTTPClientError:
                await asyncio.sleep(0.1)
        await third.until("kernel")
        await first.until("kernel")


# --- item Low: X-Forwarded-For only from a trusted proxy --------------------------------

async def logged_ip(site, caplog, request_id: str) -> str:
    await site.get("/healthz", headers={"X-Forwarded-For": "6.6.6.6", "X-Real-Ip": "6.6.6.7",
                                        "X-Request-Id": request_id})
    [line] = [r for r in caplog.records if r.name == "lessonserver.access"
              and r.fields.get("request_id") == request_id]
    return line.fields["ip"]


@pytest.mark.parametrize("trusted, expected", [("", "127.0.0.1"), ("10.0.0.0/8", "127.0.0.1"),
                                               ("10.0.0.0/8, 127.0.0.1", "6.6.6.6")])
async def test_forwarded_for_counts_only_from_trusted_proxies(tmp_path, make_settings, caplog,
                                                              trusted, expected):
    caplog.set_level(logging.INFO, logger="lessonserver.access")
    async with serve_course(tmp_path, make_settings, LS_TRUSTED_PROXIES=trusted) as site:
        assert await logged_ip(site, caplog, "xff-check") == expected


# --- item Low: static files carry the pages' headers; there is a favicon ------------------

@pytest.mark.parametrize("path, kind", [("/static/js/notebook.js", "javascript"),
                                        ("/static/img/favicon.svg", "image/svg+xml"),
                                        ("/favicon.ico", "icon")])
async def test_static_files_have_security_headers(site, path, kind):
    response = await site.get(path)
    assert response.code == 200 and kind in response.headers["Content-Type"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    if path == "/favicon.ico":
        assert response.body[:4] == b"\x00\x00\x01\x00"     # an ICO image
    page = (await site.get("/")).body.decode()
    assert 'rel="icon"' in page
