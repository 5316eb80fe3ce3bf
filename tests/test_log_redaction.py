"""No secret reaches the logs: `redact` on lines, and a real `lessonserver serve`'s whole stderr
after requests that make Tornado log full URIs (a gone kernel's channels?token=, a 401, XSRF)."""
from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
import tornado.httpclient
import tornado.websocket

from server import logs
from server.logs import MAX_MESSAGE, REDACTED, KeyValueFormatter, redact
from tests.serve_process import serve

TOKEN = "Tk-" + uuid.uuid4().hex            # unique, so a hit can only be a leak
XSRF = "2|" + uuid.uuid4().hex


@pytest.mark.parametrize("line, secret", [
    ("404 GET /api/kernels/x/channels?token=SECRET (127.0.0.1)", "SECRET"),
    ('msg="403 GET /x?a=1&_xsrf=SECRET&b=2 (1.2.3.4): no"', "SECRET"),
    ("uri='/admin/login?next=%2Fx%3Ftoken%3DSECRET%26y%3D1'", "SECRET"),
    ("GET /cb?code=SECRET&state=1", "SECRET"),
    ("Authorization: token SECRET", "SECRET"),
    ("{'Authorization': 'Bearer SECRET', 'Cookie': 'ls_user=SECRET; _xsrf=x'}", "SECRET"),
    ('api_token="SEC RET" other=1', "SEC"),
    ("password=SECRET", "SECRET"),
])
def test_secrets_are_redacted(line, secret):
    cleaned = redact(line)
    assert secret not in cleaned and REDACTED in cleaned


QUERY_ONLY = ("key", "sig", "session", "auth", "code", "ticket", "nonce", "\u212aey",
              "t\u0131cket", "S\u0130G")    # the short names, secret in a query string only


@pytest.mark.parametrize("word", [
    "token", "secret", "password", "pwd", "xsrf", "csrf", "api_key", "api-key", "apikey",
    "authorization", "authorisation", "cookie", "credential", "TOKEN", "\u017fecret",
    "credent\u0130al", *QUERY_ONLY])    # with letters (?i) takes for ASCII ones: K, ſ, İ, ı
def test_the_quick_look_for_secret_words_misses_none_the_patterns_see(word):
    # (a value without any such word itself: "SECRET" would make every line look worth a scan)
    lines = [f"GET /x?{word}=XYZZY&a=1"] + ([] if word in QUERY_ONLY else [f"{word}=XYZZY b=1"])
    for line in lines:
        assert "XYZZY" not in redact(line), line


@pytest.mark.parametrize("line", [
    "level=info logger=lessonserver.access msg=request method=GET path=/lessons/x/ws status=200 ip=1.2.3.4",
    "msg=\"API token generated\" file=/data/api_token",
    "404 GET /lessons/intro?page=2 (127.0.0.1)",
])
def test_ordinary_lines_are_untouched(line):
    assert redact(line) == line


def test_an_access_line_skips_the_scans():
    line = ("ts=2026-11-30T05:55:13.994Z level=info logger=lessonserver.access msg=request "
            "request_id=a1b2c3d4e5f60718 method=GET path=/lessons/hello-python status=200 ms=1.3")
    assert not logs._may_hold_secret(line)
    assert redact(line) == line


def test_hostile_lines_cost_no_more_than_their_length():
    import time
    started = time.perf_counter()
    for line in ("?" + "token" * 16_000, "&" + "a" * 80_000, "token=\"" * 11_000, "&token=" * 11_000):
        assert len(redact(line)) > 0
    assert time.perf_counter() - started < 2.0


def test_long_messages_are_cut_before_they_are_written():
    record = logging.LogRecord("tornado.general", logging.WARNING, __file__, 1,
                               "404 GET /x?%s", ("a" * 100_000,), None)
    line = KeyValueFormatter().format(record)
    assert len(line) < MAX_MESSAGE + 200 and "(100011 characters)" in line


@pytest.fixture
def serve_log(tmp_path, instance_name):
    """A real `lessonserver serve` at DEBUG; yields (base URL, the file its stderr goes to)."""
    env = {"LS_DATA_DIR": str(tmp_path / "data"), "LS_SANDBOX": "local",
           "LS_INSTANCE": instance_name, "LS_POOL_SIZE": "0", "LS_API_TOKEN": TOKEN,
           "LS_LOG_LEVEL": "DEBUG"}
    path = tmp_path / "serve.log"
    with serve(env, path) as base:
        yield base, path


async def test_a_real_server_never_logs_the_token(serve_log):
    base, path = serve_log
    client = tornado.httpclient.AsyncHTTPClient()

    async def fetch(url: str, **kwargs):
        return await client.fetch(base + url, raise_error=False, follow_redirects=False, **kwargs)

    gone = str(uuid.uuid4())
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:   # a culled kernel
        await tornado.websocket.websocket_connect(
            base.replace("http", "ws") + f"/api/kernels/{gone}/channels?token={TOKEN}")
    assert refused.value.code == 404
    assert (await fetch(f"/api/kernels?token={TOKEN}")).code == 401      # token not read from query
    assert (await fetch(f"/api/admin/runs?token={TOKEN}")).code == 401
    assert (await fetch(f"/api/kernels/{gone}", headers={"Authorization": f"token {TOKEN}"})).code == 404
    assert (await fetch(f"/api/kernels", headers={"Authorization": "token wrong" + TOKEN})).code == 403
    assert (await fetch(f"/admin/login?next=/admin/runs&_xsrf={XSRF}", method="POST",
                        body=f"token={TOKEN}&_xsrf={XSRF}")).code == 403  # no XSRF cookie
    assert (await fetch(f"/nowhere?next=%2Fx%3Ftoken%3D{TOKEN}&api_key={TOKEN}")).code == 404
    await asyncio.sleep(0.3)
    text = path.read_text()
    leaks = [line for line in text.splitlines() if TOKEN in line or XSRF.split("|")[1] in line]
    assert leaks == []
    assert f"channels?token={REDACTED}" in text          # the lines were written, redacted
