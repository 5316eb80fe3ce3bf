"""Jupyter Server 2 in gateway mode in front of a real `lessonserver serve` (docker kernels).

JupyterLab talks to Jupyter Server's REST API and channels WebSocket, and Jupyter
Server relays both to us: so the first test speaks to Jupyter Server exactly as
JupyterLab would (legacy JSON frames, `?session_id=`). The second runs a notebook with
nbclient through jupyter_server's own GatewayKernelManager, pointed straight at us.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
import time

import nbformat
import pytest
import tornado.httpclient
import tornado.web
import tornado.websocket
from nbclient import NotebookClient

from tests import services
from tests.kernel_api_support import TOKEN, Api, Channels
from tests.processes import jupyter_gateway
from tests.serve_process import lessonserver

pytestmark = pytest.mark.docker

JUPYTER_TOKEN = "jupyter-server-token-" + "z" * 16   # Jupyter Server's own, not ours
DASHED_UUID = re.compile(r"^\w+-\w+-\w+-\w+-\w+$")   # what Jupyter Server routes
PLOT = "import matplotlib.pyplot as plt\nplt.plot([0, 1, 4, 9])\nplt.show()"
MODEL_FIELDS = {"id", "name", "last_activity", "execution_state", "connections"}


@pytest.fixture(scope="module")
def ours(tmp_path_factory, instance_name):
    services.ensure_docker()
    with lessonserver(tmp_path_factory.mktemp("ours"), LS_SANDBOX="docker", LS_POOL_SIZE="0",
                      LS_INSTANCE=instance_name, LS_API_TOKEN=TOKEN) as served:
        yield served.url


@pytest.fixture(scope="module")
def jupyter(ours, tmp_path_factory):
    with jupyter_gateway(tmp_path_factory.mktemp("jupyter"), "server", ours, TOKEN,
                         JUPYTER_TOKEN) as url:
        yield url


def client(base: str) -> Api:
    """The API test client for a server seen from outside: only its URL and HTTP client."""
    outside = dict.fromkeys(field.name for field in dataclasses.fields(Api))
    return Api(**{**outside, "base": base, "client": tornado.httpclient.AsyncHTTPClient()})


def body(response) -> dict | list:
    return json.loads(response.body)


async def test_jupyter_server_lists_starts_runs_plots_interrupts_restarts_and_deletes(jupyter, ours):
    front, back = client(jupyter), client(ours)
    took: dict[str, float] = {}

    specs = body(await front.call("GET", "/api/kernelspecs", token=JUPYTER_TOKEN))
    assert {"python", "bash", "sql"} <= set(specs["kernelspecs"])
    python = specs["kernelspecs"]["python"]["spec"]
    assert python["language"] == "python" and python["argv"][0] == "lessonserver-launch"
    assert not any("/" in part for spec in specs["kernelspecs"].values()
                   for part in spec["spec"]["argv"]), "a server path leaked into a kernelspec"

    start = time.monotonic()
    created = await front.call("POST", "/api/kernels", {"name": "python"}, token=JUPYTER_TOKEN)
    took["start"] = time.monotonic() - start
    assert created.code == 201, created.body
    kernel = body(created)
    assert DASHED_UUID.match(kernel["id"]) and kernel["name"] == "python"
    kernel_id = kernel["id"]

    request = tornado.httpclient.HTTPRequest(
        front.ws_url(kernel_id, "?session_id=lab-session"),
        headers={"Authorization": f"token {JUPYTER_TOKEN}"})
    start = time.monotonic()
    channels = Channels(await tornado.websocket.websocket_connect(request))
    try:
        hello = await channels.execute("print('hello from the sandbox')")
        reply = await channels.reply_to(hello, timeout=30)
        took["connect+print"] = time.monotonic() - start
        assert reply["content"]["status"] == "ok"
        assert [m["content"]["text"] for m in channels.outputs(hello)] == ["hello from the sandbox\n"]

        # Jupyter Server refreshes its models from ours when it lists kernels.
        listed = {k["id"]: k for k in body(await front.call("GET", "/api/kernels",
                                                            token=JUPYTER_TOKEN))}
        assert set(listed[kernel_id]) >= MODEL_FIELDS
        assert listed[kernel_id]["connections"] == 1
        assert listed[kernel_id]["execution_state"] == "idle"
        assert listed[kernel_id]["last_activity"] > kernel["last_activity"]

        start = time.monotonic()
        plot = await channels.execute(PLOT)
        assert (await channels.reply_to(plot, timeout=60))["content"]["status"] == "ok"
        took["plot"] = time.monotonic() - start
        images = [m for m in channels.outputs(plot) if m["msg_type"] == "display_data"]
        assert len(images) == 1 and images[0]["content"]["data"]["image/png"].startswith("iVBOR")

        await channels.execute("x = 41")
        loop = await channels.execute("while True: pass")
        await channels.until(lambda m: m["parent_header"].get("msg_id") == loop
                             and m["msg_type"] == "execute_input")
        start = time.monotonic()
        interrupted = await front.call("POST", f"/api/kernels/{kernel_id}/interrupt",
                                       token=JUPYTER_TOKEN)
        assert interrupted.code == 204, interrupted.body
        reply = await channels.reply_to(loop, timeout=10)
        took["interrupt"] = time.monotonic() - start
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        kept = await channels.execute("print(x + 1)")
        await channels.reply_to(kept)
        assert [m["content"]["text"] for m in channels.outputs(kept)] == ["42\n"]

        start = time.monotonic()
        seen = len(channels.received)
        restarted = await front.call("POST", f"/api/kernels/{kernel_id}/restart",
                                     token=JUPYTER_TOKEN)
        assert restarted.code == 200, restarted.body
        assert body(restarted)["id"] == kernel_id
        fresh = await channels.execute("print('x' in globals())")
        await channels.reply_to(fresh, timeout=30)
        took["restart+run"] = time.monotonic() - start
        assert [m["content"]["text"] for m in channels.outputs(fresh)] == ["False\n"]
        # Jupyter Server sends "restarting" only when its autorestarter revives a dead kernel;
        # JupyterLab answers one with "The kernel ... appears to have died" (autorestarting).
        told = [m["content"]["execution_state"] for m in channels.received[seen:]
                if m["msg_type"] == "status" and not m["parent_header"]]
        assert "restarting" not in told, "a requested restart was announced as a crash"
    finally:
        channels.close()

    deleted = await front.call("DELETE", f"/api/kernels/{kernel_id}", token=JUPYTER_TOKEN)
    assert deleted.code == 204, deleted.body
    assert kernel_id not in [k["id"] for k in body(await back.call("GET", "/api/kernels"))]
    print("figures (s):", {step: round(seconds, 2) for step, seconds in took.items()})


async def test_jupyter_servers_gateway_client_reads_our_error_messages(ours):
    """Its gateway_request takes the top-level "message" and "reason" of an error body (its
    own REST handlers then drop the text: they send the unformatted template)."""
    from jupyter_server.gateway.gateway_client import GatewayClient, gateway_request

    GatewayClient.clear_instance()
    gateway = GatewayClient.instance()
    gateway.url, gateway.auth_token = ours, TOKEN
    try:
        with pytest.raises(tornado.web.HTTPError) as refused:
            await gateway_request(f"{ours}/api/kernels", method="POST",
                                  body=json.dumps({"name": "cobol"}))
    finally:
        GatewayClient.clear_instance()
    assert refused.value.status_code == 400
    said = refused.value.log_message % refused.value.args
    assert "no kernel named 'cobol' (known: bash, python, sql)" in said


async def test_the_v1_subprotocol_is_refused_and_json_frames_work(ours):
    """JupyterLab asks for v1.kernel.websocket.jupyter.org first; we answer without a
    subprotocol (as Jupyter Server in gateway mode does), which means JSON frames."""
    back = client(ours)
    kernel = await back.start("python")
    request = tornado.httpclient.HTTPRequest(back.ws_url(kernel["id"], "?session_id=s1"),
                                             headers={"Authorization": f"token {TOKEN}"})
    channels = Channels(await tornado.websocket.websocket_connect(
        request, subprotocols=["v1.kernel.websocket.jupyter.org"]))
    try:
        assert channels.conn.selected_subprotocol is None
        hello = await channels.execute("print('json')")
        await channels.reply_to(hello, timeout=30)
        assert [m["content"]["text"] for m in channels.outputs(hello)] == ["json\n"]
    finally:
        channels.close()
        await back.call("DELETE", f"/api/kernels/{kernel['id']}")


async def test_a_frame_without_a_channel_goes_to_shell_as_in_jupyter_server(ours):
    """jupyter_server's GatewayKernelClient (below) sends frames with no "channel" key;
    Jupyter Server's own channels handler assumes "shell" for those."""
    back = client(ours)
    kernel = await back.start("python")
    channels = await Channels.open(back, kernel["id"])
    try:
        msg = channels.session.msg("kernel_info_request", {})
        await channels.conn.write_message(json.dumps(msg, default=str))
        reply = await channels.until(lambda m: m["parent_header"].get("msg_id")
                                     == msg["header"]["msg_id"] and m["channel"] == "shell", timeout=5)
        assert reply["msg_type"] == "kernel_info_reply"
    finally:
        channels.close()
        await back.call("DELETE", f"/api/kernels/{kernel['id']}")


class GatewayKernels:
    """jupyter_server's GatewayKernelManager as nbclient uses it, with three gaps of that
    client closed here (jupyter_server 2.21), each unrelated to our server:
    - start_kernel asks for "python3" unless given kernel_name (it ignores its own);
    - GatewayKernelClient opens the WebSocket without the gateway's Authorization header;
    - KernelClient.wait_for_ready calls the manager's private _async_is_alive, which
      needs a local provisioner; the gateway manager only overrides is_alive."""

    def __init__(self, url: str, monkeypatch) -> None:
        from jupyter_server.gateway import managers
        from jupyter_server.gateway.gateway_client import GatewayClient

        GatewayClient.clear_instance()
        gateway = GatewayClient.instance()
        gateway.url, gateway.auth_token = url, TOKEN
        monkeypatch.setattr(managers.websocket, "create_connection", functools.partial(
            managers.websocket.create_connection, header={"Authorization": f"token {TOKEN}"}))

        class Manager(managers.GatewayKernelManager):
            async def _async_is_alive(self) -> bool:
                return await self.is_alive()

        self.manager = Manager(kernel_name="python")

    def close(self) -> None:
        from jupyter_server.gateway.gateway_client import GatewayClient
        GatewayClient.clear_instance()


def test_nbclient_runs_a_notebook_through_jupyter_servers_gateway_kernel_manager(ours, monkeypatch):
    gateway = GatewayKernels(ours, monkeypatch)
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("print(6 * 7)"),
        nbformat.v4.new_code_cell(PLOT),
    ])
    start = time.monotonic()
    try:
        NotebookClient(notebook, km=gateway.manager, timeout=60, startup_timeout=30) \
            .execute(kernel_name="python")
    finally:
        # nbclient leaves a manager it was given running; its owner shuts the kernel down
        asyncio.run(gateway.manager.shutdown_kernel())
        gateway.close()
    print(f"figures: nbclient through GatewayKernelManager {time.monotonic() - start:.2f}s")
    printed, plotted = (cell.outputs for cell in notebook.cells)
    assert [o["text"] for o in printed] == ["42\n"]
    assert [o["output_type"] for o in plotted] == ["display_data"]
    assert "image/png" in plotted[0]["data"]
    assert body_of_kernels(ours) == []


def body_of_kernels(base: str) -> list:
    response = tornado.httpclient.HTTPClient().fetch(
        base + "/api/kernels", headers={"Authorization": f"token {TOKEN}"})
    return json.loads(response.body)
