"""The channels WebSocket: Jupyter messaging v5 over JSON frames, against real local kernels."""
from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
import tornado.httpclient
import tornado.websocket
from jupyter_client.session import Session

from kernels import messages
from kernels.messages import BadMessage, parse_client_frame
from kernels.relay import Relay
from tests.kernel_api_support import TOKEN, Channels, api, api_for  # noqa: F401 - fixtures


@pytest.fixture
async def channels(api):
    kernel_id = (await api.start("python"))["id"]
    conn = await Channels.open(api, kernel_id)
    conn.kernel_id = kernel_id
    yield conn
    conn.close()


@contextlib.asynccontextmanager
async def channels_with(api_for, **env: str):
    """(the API, channels to a fresh python kernel) of a server with `env` settings."""
    api = await api_for(**env)
    kernel_id = (await api.start("python"))["id"]
    conn = await Channels.open(api, kernel_id)
    try:
        yield api, conn
    finally:
        conn.close()


def stream_text(messages: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")


# --- pure parts -------------------------------------------------------------------

def test_client_frames_are_checked():
    msg = parse_client_frame(json.dumps({"channel": "shell", "header": {
        "msg_id": "1", "msg_type": "kernel_info_request"}, "content": None}))
    assert (msg.channel, dict(msg.header), msg.parent, msg.metadata, msg.content) == (
        "shell", {"msg_id": "1", "msg_type": "kernel_info_request"}, {}, {}, {})
    deep = "[" * 100_000 + "]" * 100_000
    nested_value: list = [1]
    for _ in range(messages.MAX_DEPTH + 1):
        nested_value = [nested_value]
    nested = json.dumps({"channel": "shell", "header": {"msg_type": "x", "msg_id": "1"},
                         "content": {"a": nested_value}})
    for frame in (b"{}", "nope", "[]", deep, nested, json.dumps({"channel": "iopub", "header": {}}),
                  json.dumps({"channel": "shell", "header": {"msg_type": "x"}}),
                  json.dumps({"channel": "shell", "header": {"msg_type": "x", "msg_id": "1"},
                              "content": [1]})):
        with pytest.raises(BadMessage):
            parse_client_frame(frame)


def test_kernel_messages_parse_as_json_loads_would_and_bad_ones_are_named():
    """The reader's faster parse accepts what json.loads accepts and refuses the rest."""
    session = Session(key=b"secret")

    def frames(header: bytes, content: bytes = b"{}") -> list[bytes]:
        parts = [header, b"{}", b"{}", content]
        return [b"id", messages.DELIM, session.sign(parts), *parts]

    header = b'{"msg_id": "m", "msg_type": "status", "date": "2026-11-30T00:00:00Z"}'
    for raw in (header, b" \n" + header + b"\n "):
        msg = messages.from_frames("iopub", frames(raw, b' {"execution_state": "idle"}\n'),
                                   session.key, session.sign)
        assert (msg.msg_type, msg.content) == ("status", {"execution_state": "idle"})
    for raw, why in ((b"{} {}", "header is not JSON"), (b"\xff{}", "header is not JSON"),
                     (b"[]", "header is not an object"), (b"", "header is not JSON"),
                     (b"[" * 100_000, "header is not JSON")):
        with pytest.raises(BadMessage, match=why):
            messages.from_frames("iopub", frames(raw), session.key, session.sign)
    odd = messages.from_frames("iopub", frames(header, b'{"a": 1} trailing'), session.key,
                               session.sign)
    assert odd.content == {}              # content is read lazily: unusable reads as empty
    with pytest.raises(BadMessage, match="bad signature"):
        messages.from_frames("iopub", [messages.DELIM, b"0" * 64, header, b"{}", b"{}", b"{}"],
                             session.key, session.sign)


def test_frames_are_spliced_from_raw_parts_without_reparsing():
    msg = messages.KernelMessage("iopub", {"msg_id": "m1", "msg_type": "stream"},
                                 {"msg_id": "p1"}, b'{"k": 1}', b'{"name": "stdout", "text": "hi"}')
    frame = json.loads(messages.ws_frame(msg))
    assert frame == {"header": {"msg_id": "m1", "msg_type": "stream"},
                     "parent_header": {"msg_id": "p1"}, "metadata": {"k": 1},
                     "content": {"name": "stdout", "text": "hi"}, "msg_id": "m1",
                     "msg_type": "stream", "channel": "iopub", "buffers": []}


async def test_a_client_that_does_not_read_is_dropped_at_a_bounded_backlog():
    """Before its connection is given, the outbox holds what comes, within the same bound."""
    loop = asyncio.get_running_loop()
    relay = Relay(backlog_bytes=10_000)
    chunk = messages.server_message("iopub", "stream", {"name": "stdout", "text": "x" * 1000})
    for _ in range(100):
        relay.put(chunk)
    assert relay.closed and relay.backlog <= 10_000
    assert "fast enough" in relay.close_reason
    drained, closed = [], []
    relay.deliver_to(lambda msg: drained.append(msg) or loop.create_future(), closed.append)
    assert 0 < len(drained) < 10 and closed == [relay.close_reason]


async def test_a_connection_that_does_not_flush_is_dropped_at_a_bounded_backlog():
    """Written straight from the reader: unflushed bytes count against the same bound."""
    loop = asyncio.get_running_loop()
    relay, written, closed = Relay(backlog_bytes=10_000), [], []
    chunk = messages.server_message("iopub", "stream", {"name": "stdout", "text": "x" * 1000})
    relay.put(chunk)                                   # before the connection: queued

    def write(msg):
        written.append(msg)
        return loop.create_future()                    # never flushed: the client reads nothing

    relay.deliver_to(write, closed.append)
    assert written == [chunk]                          # what waited goes first
    for _ in range(100):
        relay.put(chunk)
    assert relay.closed and closed == ["the client did not read its messages fast enough"]
    assert 0 < len(written) < 10 and relay.backlog <= 10_000


async def test_flushed_writes_free_the_backlog_and_a_gone_client_closes_the_relay():
    loop = asyncio.get_running_loop()
    relay, closed = Relay(backlog_bytes=10_000), []
    chunk = messages.server_message("iopub", "stream", {"name": "stdout", "text": "x" * 1000})
    flushed = []

    def write(msg):
        if len(flushed) == 150:
            raise ConnectionError("gone")
        future = loop.create_future()
        future.set_result(None)
        flushed.append(future)
        return future

    relay.deliver_to(write, closed.append)
    for _ in range(200):
        relay.put(chunk)
        await asyncio.sleep(0)                         # the flush callbacks run
    assert len(flushed) == 150 and relay.backlog == 0
    assert relay.closed and closed == ["the client went away"]


# --- over a real WebSocket ----------------------------------------------------------

async def test_execute_streams_output_and_replies_to_the_request(channels, api):
    msg_id = await channels.execute("print(1)")
    reply = await channels.reply_to(msg_id)
    assert reply["channel"] == "shell" and reply["msg_type"] == "execute_reply"
    assert reply["content"]["status"] == "ok"
    assert reply["parent_header"]["msg_id"] == msg_id
    assert reply["parent_header"]["session"] == channels.session.session
    outputs = channels.outputs(msg_id)
    assert [(m["msg_type"], m["content"]["name"], m["content"]["text"]) for m in outputs] == [
        ("stream", "stdout", "1\n")]
    states = [m["content"]["execution_state"] for m in channels.received
              if m["msg_type"] == "status" and m["parent_header"].get("msg_id") == msg_id]
    assert states == ["busy", "idle"]
    assert all(m["channel"] in ("shell", "iopub") for m in channels.received)
    assert all(isinstance(m["header"]["date"], str) for m in channels.received)
    model = json.loads((await api.call("GET", f"/api/kernels/{channels.kernel_id}")).body)
    assert model["connections"] == 1


async def test_kernel_info_and_input_over_stdin(channels):
    info_id = await channels.send("shell", "kernel_info_request", {})
    info = await channels.reply_to(info_id)
    assert info["content"]["language_info"]["name"] == "python"
    run_id = await channels.execute("name = input('Who? ')\nprint('hi', name)", allow_stdin=True)
    request = await channels.until(lambda m: m["channel"] == "stdin")
    assert request["msg_type"] == "input_request" and request["content"]["prompt"] == "Who? "
    await channels.send("stdin", "input_reply", {"value": "Ada"})
    await channels.reply_to(run_id)
    assert stream_text(channels.outputs(run_id)) == "hi Ada\n"


async def test_interrupt_through_rest_stops_a_loop_run_over_the_socket(channels, api):
    msg_id = await channels.execute("while True: pass")
    await channels.until(lambda m: m["msg_type"] == "execute_input")
    await asyncio.sleep(0.3)
    began = time.monotonic()
    response = await api.call("POST", f"/api/kernels/{channels.kernel_id}/interrupt")
    assert response.code == 204
    reply = await channels.reply_to(msg_id, timeout=10)
    assert time.monotonic() - began < 5
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    again = await channels.execute("print('still here')")
    await channels.reply_to(again)
    assert stream_text(channels.outputs(again)) == "still here\n"


async def test_a_requested_restart_is_followed_by_the_socket_without_a_crash_notice(channels, api):
    first = await channels.execute("x = 5")
    await channels.reply_to(first)
    response = await api.call("POST", f"/api/kernels/{channels.kernel_id}/restart")
    assert response.code == 200
    await channels.until(lambda m: m["msg_type"] == "status" and not m["parent_header"]
                         and m["content"]["execution_state"] == "idle")
    states = [m["content"]["execution_state"] for m in channels.received
              if m["msg_type"] == "status" and not m["parent_header"]]
    assert "restarting" not in states     # JupyterLab would take it for a crash
    run = await channels.execute("print(x)")
    reply = await channels.reply_to(run)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "NameError"


async def test_a_kernel_death_is_followed_by_a_fresh_kernel(channels):
    await channels.execute("import os; os._exit(1)")
    await channels.until(lambda m: m["msg_type"] == "status"
                         and m["content"]["execution_state"] == "restarting", timeout=15)
    await channels.until(lambda m: m["msg_type"] == "status"
                         and m["content"]["execution_state"] == "idle"
                         and not m["parent_header"], timeout=15)
    run = await channels.execute("print('reborn')")
    await channels.reply_to(run)
    assert stream_text(channels.outputs(run)) == "reborn\n"


async def test_an_output_flood_is_cut_per_request(api_for):
    async with channels_with(api_for, LS_OUTPUT_LIMIT="4096") as (api, channels):
        began = time.monotonic()
        flood = await channels.execute("while True: print('x' * 1000)")
        reply = await channels.reply_to(flood, timeout=20)
        assert time.monotonic() - began < 10
        assert reply["content"]["status"] == "error"            # interrupted by the cap
        text = stream_text([m for m in channels.outputs(flood) if m["content"].get("name") == "stdout"])
        assert 0 < len(text) <= 4096
        notes = [m for m in channels.outputs(flood) if m["content"].get("name") == "stderr"]
        assert any("Output cut" in m["content"]["text"] for m in notes)
        after = await channels.execute("print('ok')")            # the next request starts afresh
        await channels.reply_to(after)
        assert stream_text(channels.outputs(after)) == "ok\n"


async def test_shutdown_says_dead_and_closes(channels, api):
    response = await api.call("DELETE", f"/api/kernels/{channels.kernel_id}")
    assert response.code == 204
    await channels.until(lambda m: m["msg_type"] == "status"
                         and m["content"]["execution_state"] == "dead")
    assert await channels.next() is None


async def test_socket_auth_and_ownership(api):
    kernel_id = (await api.start("python"))["id"]

    async def refused(url: str, headers: dict | None = None) -> int:
        with pytest.raises(tornado.httpclient.HTTPClientError) as caught:
            await tornado.websocket.websocket_connect(
                tornado.httpclient.HTTPRequest(url, headers=headers or {}))
        return caught.value.code

    assert await refused(api.ws_url(kernel_id)) == 401
    assert await refused(api.ws_url(kernel_id, "?token=wrong")) == 403
    _, learner = await api.learner()
    assert await refused(api.ws_url(kernel_id), learner) == 404      # not the learner's kernel
    assert await refused(api.ws_url("0" * 32, f"?token={TOKEN}")) == 404
    conn = await tornado.websocket.websocket_connect(api.ws_url(kernel_id, f"?token={TOKEN}"))
    conn.close()


async def test_a_clients_run_is_cut_at_the_run_timeout_told_and_traced(api_for):
    async with channels_with(api_for, LS_RUN_TIMEOUT="1") as (api, channels):
        began = time.monotonic()
        run = await channels.execute("import time; time.sleep(13)")
        reply = await channels.reply_to(run, timeout=10)
        assert time.monotonic() - began < 5
        assert reply["content"]["status"] == "error"
        notes = [m["content"]["text"] for m in channels.outputs(run)
                 if m["content"].get("name") == "stderr"]
        assert any("Stopped after 1 s" in text for text in notes)
        after = await channels.execute("print('ok')")
        await channels.reply_to(after)
        assert stream_text(channels.outputs(after)) == "ok\n"
    kinds = [(e.kind.value, e.data.get("client"), e.data.get("limit")) for e in api.traced]
    assert ("requested", "api", None) in kinds and ("limit", None, "timeout") in kinds
    finished = [e for e in api.traced if e.kind.value == "finished"]
    assert [e.data["status"] for e in finished] == ["limit", "ok"]
    assert {e.run_id for e in api.traced} == {finished[0].run_id, finished[1].run_id}
    exposition = api.metrics.exposition().decode()
    assert 'lessonserver_limit_hits_total{kernel="python",limit="timeout"} 1.0' in exposition
    assert 'lessonserver_runs_total{kernel="python",status="limit"} 1.0' in exposition


async def test_invented_parent_ids_do_not_dodge_the_output_cap(api_for):
    async with channels_with(api_for, LS_OUTPUT_LIMIT="4096") as (api, channels):
        run = await channels.execute(
            "import threading\nk = get_ipython().kernel\n"
            "for n in range(50):\n"
            "    k.session.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': 'A' * 10000},"
            " parent={'msg_id': f'forged-{n}'})\n"
            "print('done')")
        await channels.reply_to(run, timeout=10)
        forged = [m for m in channels.received if m["msg_type"] == "stream"
                  and str(m["parent_header"].get("msg_id", "")).startswith("forged")]
        assert sum(len(m["content"]["text"]) for m in forged) <= 4096
