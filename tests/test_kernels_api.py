"""The Jupyter-compatible REST API over real HTTP, with real kernels in the local sandbox."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import time

import pytest

from kernels.result import RunLimits, RunStatus
from server import auth
from server.handlers.kernels_api import iso_time, requested_name, ApiError
from tests.kernel_api_support import TOKEN, api, api_for  # noqa: F401 - fixtures


def body(response) -> dict | list:
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    return json.loads(response.body)


# --- pure parts -----------------------------------------------------------------

def test_auth_decisions():
    assert auth.header_token("token abc") == "abc"
    assert auth.header_token("Bearer abc") == "abc"
    assert auth.header_token("Basic abc") is None and auth.header_token("token ") is None
    assert auth.decide("abc", "abc", None).owner == auth.API_OWNER
    assert auth.decide("abd", "abc", "user1").status == 403       # a wrong token is never a cookie
    assert auth.decide(None, "abc", "user1").owner == "user1"
    assert auth.decide(None, "abc", None).status == 401
    assert auth.decide("abc", None, None).status == 403            # no token configured: none fits
    assert auth.may_see("u1", "u1") and not auth.may_see("u1", "u2")


def test_request_bodies_and_times():
    assert requested_name(b"", ["python"]) == "python"
    assert requested_name(b'{"name": "bash"}', ["bash", "python"]) == "bash"
    for raw, words in ((b"{", "JSON"), (b"[]", "object"), (b'{"name": 3}', "string"),
                       (b'{"name": "cobol"}', "'cobol'")):
        with pytest.raises(ApiError) as caught:
            requested_name(raw, ["python"])
        assert caught.value.status_code == 400 and words in caught.value.log_message
    assert iso_time(0) == "1970-01-01T00:00:00.000000Z"


# --- over HTTP ------------------------------------------------------------------

async def test_kernelspecs_have_the_jupyter_server_shape(api):
    response = await api.call("GET", "/api/kernelspecs")
    assert response.code == 200
    specs = body(response)
    assert specs["default"] == "python"
    assert set(specs["kernelspecs"]) >= {"python", "bash", "sql"}
    python = specs["kernelspecs"]["python"]
    assert python["name"] == "python" and python["resources"] == {}
    assert set(python["spec"]) >= {"argv", "display_name", "language", "metadata"}
    # the launcher's console script: no path of the server is shown to callers
    assert python["spec"]["argv"] == ["lessonserver-launch", "--plugin", "python", "-f",
                                      "{connection_file}"]
    one = await api.call("GET", "/api/kernelspecs/bash")
    assert body(one)["spec"]["language"] == specs["kernelspecs"]["bash"]["spec"]["language"]
    assert (await api.call("GET", "/api/kernelspecs/cobol")).code == 404


async def test_kernel_lifecycle(api):
    before = time.time()
    created = await api.start("python")
    assert set(created) == {"id", "name", "last_activity", "execution_state", "connections"}
    assert created["name"] == "python" and created["connections"] == 0
    assert created["execution_state"] == "idle"
    assert created["last_activity"].endswith("Z")
    stamp = dt.datetime.fromisoformat(created["last_activity"].replace("Z", "+00:00"))
    assert stamp.timestamp() >= before - 1
    kernel_id = created["id"]

    listed = body(await api.call("GET", "/api/kernels"))
    assert [k["id"] for k in listed] == [kernel_id]
    assert body(await api.call("GET", f"/api/kernels/{kernel_id}"))["id"] == kernel_id

    result = await api.manager.execute(kernel_id, "print(6 * 7)")
    assert result.stdout == "42\n"

    deleted = await api.call("DELETE", f"/api/kernels/{kernel_id}")
    assert deleted.code == 204 and deleted.body == b""
    assert api.manager.get(kernel_id) is None
    assert (await api.call("GET", f"/api/kernels/{kernel_id}")).code == 404
    assert (await api.call("DELETE", f"/api/kernels/{kernel_id}")).code == 404
    assert body(await api.call("GET", "/api/kernels")) == []


async def test_credentials_are_required_and_checked(api):
    missing = await api.call("GET", "/api/kernels", token=None)
    assert missing.code == 401 and "token" in missing.headers["WWW-Authenticate"]
    assert body(missing)["error"]["status"] == 401
    assert (await api.call("POST", "/api/kernels", {"name": "python"}, token=None)).code == 401
    wrong = await api.call("GET", "/api/kernelspecs", token="nope")
    assert wrong.code == 403
    bearer = await api.call("GET", "/api/kernels", token=None,
                            headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.code == 200
    assert api.manager.list() == []     # nothing was started by the refused calls


async def test_owners_see_only_their_kernels(api):
    ada, ada_headers = await api.learner()
    bob, bob_headers = await api.learner()
    mine = await api.start("python", token=None, headers=ada_headers)
    assert api.manager.get(mine["id"]).owner == ada
    theirs = await api.start("python")
    assert api.manager.get(theirs["id"]).owner == auth.API_OWNER

    ada_list = body(await api.call("GET", "/api/kernels", token=None, headers=ada_headers))
    assert [k["id"] for k in ada_list] == [mine["id"]]
    assert body(await api.call("GET", "/api/kernels", token=None, headers=bob_headers)) == []
    for path in (f"/api/kernels/{mine['id']}", f"/api/kernels/{mine['id']}/interrupt"):
        for headers, token in ((bob_headers, None), ({}, TOKEN)):
            method = "POST" if path.endswith("interrupt") else "GET"
            response = await api.call(method, path, token=token, headers=headers)
            assert response.code == 404, (path, response.code)
    assert (await api.call("DELETE", f"/api/kernels/{theirs['id']}", token=None,
                           headers=ada_headers)).code == 404
    assert api.manager.get(theirs["id"]) is not None and api.manager.get(mine["id"]) is not None


async def test_cookie_calls_need_the_xsrf_token(api):
    _, headers = await api.learner()
    forged = {"Cookie": headers["Cookie"]}             # what a cross-site form would send
    response = await api.call("POST", "/api/kernels", {"name": "python"}, token=None, headers=forged)
    assert response.code == 403 and "_xsrf" in response.body.decode()
    assert api.manager.list() == []
    ok = await api.call("GET", "/api/kernels", token=None, headers=forged)   # reads need none
    assert ok.code == 200


async def test_bad_requests_say_what_is_wrong(api):
    for payload, words in (("{not json", "JSON"), ({"name": "cobol"}, "'cobol'"),
                           ([1, 2], "object")):
        response = await api.call("POST", "/api/kernels", payload)
        assert response.code == 400
        assert words in body(response)["error"]["message"]
    assert api.manager.list() == []


async def test_a_full_host_answers_429_with_retry_after(api_for):
    api = await api_for(LS_MAX_KERNELS="1")
    await api.start("python")
    response = await api.call("POST", "/api/kernels", {"name": "python"})
    assert response.code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert "in use" in body(response)["error"]["message"]


async def test_one_anonymous_cookie_cannot_take_every_kernel(api_for):
    """Issue 9, item 2: the repro minted one cookie and took all 10 kernels in 6.6 s."""
    api = await api_for(LS_MAX_KERNELS="10")
    _, mallory = await api.learner()
    first = await api.call("POST", "/api/kernels", {"name": "python"}, token=None, headers=mallory)
    assert first.code == 201
    refused = [await api.call("POST", "/api/kernels", {"name": "python"}, token=None,
                              headers=mallory) for _ in range(5)]
    assert {r.code for r in refused} == {429}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in refused)
    assert "already have 1 kernel" in body(refused[0])["error"]["message"]
    _, ada = await api.learner()                     # another learner is not starved
    assert (await api.call("POST", "/api/kernels", {"name": "python"}, token=None,
                           headers=ada)).code == 201
    assert len(api.manager.list()) == 2
    exposition = api.metrics.exposition().decode()
    assert 'lessonserver_admission_rejected_total{what="owner_kernels"} 5.0' in exposition
    assert "lessonserver_kernels 2.0" in exposition


async def test_interrupt_stops_a_busy_loop(api):
    kernel_id = (await api.start("python"))["id"]
    run = asyncio.create_task(api.manager.execute(kernel_id, "while True: pass",
                                                  RunLimits(timeout=30)))
    await asyncio.sleep(1.0)
    assert body(await api.call("GET", f"/api/kernels/{kernel_id}"))["execution_state"] == "busy"
    began = time.monotonic()
    response = await api.call("POST", f"/api/kernels/{kernel_id}/interrupt")
    assert response.code == 204
    result = await asyncio.wait_for(run, 10)
    assert time.monotonic() - began < 5
    assert result.status is RunStatus.ERROR and result.error.ename == "KeyboardInterrupt"
    assert (await api.manager.execute(kernel_id, "print('alive')")).stdout == "alive\n"


async def test_restart_gives_a_fresh_kernel_under_the_same_id(api):
    kernel_id = (await api.start("python"))["id"]
    await api.manager.execute(kernel_id, "x = 1")
    response = await api.call("POST", f"/api/kernels/{kernel_id}/restart")
    assert response.code == 200
    assert body(response)["id"] == kernel_id and body(response)["execution_state"] == "idle"
    result = await api.manager.execute(kernel_id, "print(x)")
    assert result.status is RunStatus.ERROR and result.error.ename == "NameError"


def test_errors_have_jupyter_servers_top_level_message_and_reason():
    from server.handlers.kernels_api import error_body
    assert error_body(400, "Bad Request", "no kernel named 'x'", "r1") == {
        "message": "no kernel named 'x'", "reason": "Bad Request",
        "error": {"status": 400, "reason": "Bad Request", "message": "no kernel named 'x'",
                  "request_id": "r1"}}
    assert error_body(500, "Internal Server Error", None, "r2")["message"] == "Internal Server Error"
