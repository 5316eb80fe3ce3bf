"""The lesson page's WebSocket end to end: real server, real kernels (local sandbox), real DB."""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import textwrap

import pytest
import tornado.httpclient
import tornado.websocket

from tests.test_pages import start

TOKEN = "t" * 40
COURSE = "course.yaml"
LESSON = '''\
---
title: Practice
slug: practice
kernel: python
---
# Practice

```python exercise id=hello title="Say hello"
print("...")
# --- expected output ---
hello
```

```python exercise id=add title="Add"
def add(a, b):
    return 0
# --- setup ---
HIDDEN = 5
# --- tests ---
assert add(2, 3) == HIDDEN, "add(2, 3) should be 5"
```

```python exercise id=ask title="Ask"
name = input("name? ")
# --- expected output ---
hi Ada
```
'''
PAID = '''\
---
title: Paid
slug: paid
kernel: python
access: paid
---
```python exercise id=x
print(1)
# --- expected output ---
1
```
'''


@contextlib.asynccontextmanager
async def serve_course(tmp_path, make_settings, **env):
    course = tmp_path / "lessons" / "practice"
    course.mkdir(parents=True)
    (course / COURSE).write_text("title: Practice\ndescription: drills\n")
    (course / "practice.md").write_text(LESSON)
    (course / "paid.md").write_text(PAID)
    settings = make_settings(**{"LS_LESSONS_DIR": str(tmp_path / "lessons"), "LS_SANDBOX": "local",
                                "LS_RUN_TIMEOUT": "2", "LS_API_TOKEN": TOKEN,
                                "LS_TRACE_FLUSH": "0.05", **env})
    server, stop, task = await start(settings)
    try:
        yield server
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.fixture
async def site(tmp_path, make_settings):
    async with serve_course(tmp_path, make_settings) as server:
        yield server


def handshake_cookie(socket) -> str:
    """The identity a new visitor gets with the lesson socket's handshake (the page sets none)."""
    return "; ".join(c.split(";", 1)[0] for c in socket.headers.get_list("Set-Cookie"))


class Page:
    """A learner with a cookie and the lesson's socket."""

    def __init__(self, site, socket, cookie: str) -> None:
        self.site, self.socket, self.cookie = site, socket, cookie

    @classmethod
    async def open(cls, site, slug: str = "practice", cookie: str | None = None) -> "Page":
        page = await site.get(f"/lessons/{slug}", headers={"Cookie": cookie} if cookie else None)
        assert page.code == 200
        request = tornado.httpclient.HTTPRequest(
            site.base.replace("http", "ws") + f"/lessons/{slug}/ws",
            headers={"Cookie": cookie} if cookie else None)
        socket = await tornado.websocket.websocket_connect(request)
        return cls(site, socket, cookie or handshake_cookie(socket))

    async def reconnect(self) -> "Page":
        """The same learner's page, after its socket dropped."""
        self.socket.close()
        return await Page.open(self.site, cookie=self.cookie)

    async def send(self, **frame) -> None:
        await self.socket.write_message(json.dumps(frame))

    async def until(self, kind: str, timeout: float = 30) -> tuple[dict, list[dict]]:
        """Frames up to and including the first of `kind`."""
        seen = []
        while True:
            raw = await asyncio.wait_for(self.socket.read_message(), timeout)
            assert raw is not None, f"socket closed while waiting for {kind}; got {seen}"
            frame = json.loads(raw)
            seen.append(frame)
            if frame["type"] == kind:
                return frame, seen

    async def run(self, exercise: str, code: str, run: str = "r1") -> tuple[dict, list[dict]]:
        await self.send(type="run", run=run, exercise=exercise, code=textwrap.dedent(code))
        return await self.until("result")


async def test_output_check_passes_and_outputs_stream_first(site):
    page = await Page.open(site)
    result, frames = await page.run("hello", "print('hello')")
    outputs = [f["output"] for f in frames if f["type"] == "output"]
    assert outputs == [{"output_type": "stream", "name": "stdout", "text": "hello\n"}]
    assert [f["type"] for f in frames].index("output") < [f["type"] for f in frames].index("result")
    assert result["status"] == "ok" and result["verdict"]["passed"] is True
    assert result["progress"] == {"passed": 1, "total": 3}
    again = await site.get("/lessons/practice", headers={"Cookie": page.cookie})
    assert "1 of 3 exercises passed" in again.body.decode()


async def test_a_run_that_lasts_says_it_started_and_each_run_names_the_kernel(site):
    """A silent run gets a "started" frame once it lasts (a fast run's first output is its
    start); either way the page learns its kernel's tag, for its hello after a reconnect."""
    page = await Page.open(site)
    _, frames = await page.run("hello", "import time\ntime.sleep(0.5)\nprint('hello')")
    types = [f["type"] for f in frames]
    assert types.index("started") < types.index("output")
    started = frames[types.index("started")]
    idle = [f for f in frames if f["type"] == "kernel" and f["state"] == "idle"][-1]
    assert len(started["session"]) == 16 and idle["session"] == started["session"]


async def test_hidden_tests_judge_and_never_show_their_code(site):
    page = await Page.open(site)
    result, frames = await page.run("add", "def add(a, b):\n    return a - b\nprint('defined')")
    assert result["verdict"]["passed"] is False
    assert "add(2, 3) should be 5" in result["verdict"]["message"]
    assert "HIDDEN" not in json.dumps(frames)
    result, _ = await page.run("add", "def add(a, b):\n    return a + b", run="r2")
    assert result["verdict"]["passed"] is True and result["progress"]["passed"] == 1


async def test_hidden_tests_cannot_be_read_or_defeated_from_the_learners_kernel(site):
    """Issue 9, item 5: history and IPython hooks of the learner's kernel reach no check."""
    page = await Page.open(site)
    await page.run("add", "def add(a, b):\n    return a + b")                 # tests ran once
    result, frames = await page.run("hello", "print(sum(('HIDD' + 'EN =') in h for h in _ih))",
                                    run="r2")       # the setup's line, spelled so as not to match
    assert [f["output"]["text"] for f in frames if f["type"] == "output"] == ["0\n"]
    await page.run("hello", "ip = get_ipython()\n"
                            "ip.input_transformers_cleanup.append(\n"
                            "    lambda l: ['pass\\n'] if any('assert' in x for x in l) else l)\n"
                            "ip.events.register('pre_run_cell', lambda info: print(info.raw_cell))",
                   run="r3")
    result, frames = await page.run("add", "def add(a, b):\n    return 0", run="r4")
    assert result["verdict"]["passed"] is False, result
    assert "add(2, 3) should be 5" in result["verdict"]["message"]
    assert "HIDDEN" not in json.dumps(frames)


async def test_code_that_relies_on_an_earlier_run_is_told_so(site):
    page = await Page.open(site)
    await page.run("hello", "def helper(a, b):\n    return a + b")
    result, _ = await page.run("add", "def add(a, b):\n    return helper(a, b)", run="r2")
    assert result["verdict"]["passed"] is False
    assert "fresh start" in result["verdict"]["message"] and "helper" in result["verdict"]["message"]


async def test_timeout_is_reported_in_plain_words_and_the_kernel_answers_again(site):
    page = await Page.open(site)
    result, frames = await page.run("hello", "while True:\n    pass")
    assert result["status"] == "limit" and result["limit"] == "timeout"
    assert "ran longer than 2 s" in result["message"] and not result["verdict"]["passed"]
    assert "endless loop" in result["message"]
    # The server interrupted it: the learner gets no KeyboardInterrupt for a key never pressed,
    # while the run's trace keeps it.
    assert [f for f in frames if f["type"] == "output"] == []
    headers = {"Authorization": f"token {TOKEN}"}
    for _ in range(100):
        response = await site.get(f"/api/admin/runs/{result['trace']}", headers=headers)
        if response.code == 200 and "KeyboardInterrupt" in response.body.decode():
            break
        await asyncio.sleep(0.1)
    events = json.loads(response.body)["events"]
    assert any(e["kind"] == "output" and "KeyboardInterrupt" in json.dumps(e) for e in events), events
    result, _ = await page.run("hello", "print('hello')", run="r2")
    assert result["verdict"]["passed"] is True


async def test_runs_and_limit_hits_move_their_metrics(site):
    page = await Page.open(site)
    await page.run("hello", "print('hello')")
    await page.run("hello", "while True:\n    pass", run="r2")
    metrics = (await site.get("/metrics")).body.decode()
    assert 'lessonserver_runs_total{kernel="python",status="ok"} 1.0' in metrics
    assert 'lessonserver_runs_total{kernel="python",status="limit"} 1.0' in metrics
    assert 'lessonserver_run_seconds_count{kernel="python"} 2.0' in metrics
    assert 'lessonserver_limit_hits_total{kernel="python",limit="timeout"} 1.0' in metrics
    assert "lessonserver_kernels 1.0" in metrics


async def test_input_is_asked_and_answered(site):
    page = await Page.open(site)
    await page.send(type="run", run="r1", exercise="ask", code="name = input('name? ')\nprint('hi', name)")
    request, _ = await page.until("input_request")
    assert request["prompt"] == "name? " and request["password"] is False
    await page.send(type="input", run="r1", value="Ada")
    result, _ = await page.until("result")
    assert result["verdict"]["passed"] is True


async def test_bad_frames_get_an_error_and_the_socket_stays_usable(site):
    page = await Page.open(site)
    await page.socket.write_message("not json")
    error, _ = await page.until("error")
    assert "JSON" in error["message"]
    await page.send(type="run", run="r1", exercise="nope", code="1")
    error, _ = await page.until("error")
    assert "nope" in error["message"]
    result, _ = await page.run("hello", "print('hello')", run="r2")
    assert result["verdict"]["passed"] is True


async def test_locked_lessons_refuse_the_socket(site):
    page = await site.get("/lessons/paid")
    assert page.code == 402
    cookie = "; ".join(c.split(";", 1)[0] for c in page.headers.get_list("Set-Cookie"))
    request = tornado.httpclient.HTTPRequest(site.base.replace("http", "ws") + "/lessons/paid/ws",
                                             headers={"Cookie": cookie})
    with pytest.raises(tornado.httpclient.HTTPClientError) as refused:
        await tornado.websocket.websocket_connect(request)
    assert refused.value.code == 403


async def test_every_run_is_traced(site):
    page = await Page.open(site)
    result, _ = await page.run("hello", "print('hello')")
    headers = {"Authorization": f"token {TOKEN}"}
    deadline = asyncio.get_running_loop().time() + 10
    while True:        # the run's row comes with its first batch; its `finished` event may come later
        response = await site.get(f"/api/admin/runs/{result['trace']}", headers=headers)
        run = json.loads(response.body) if response.code == 200 else {"events": []}
        if run["events"] and run["events"][-1]["kind"] == "finished":
            break
        assert asyncio.get_running_loop().time() < deadline, (response.code, response.body)
        await asyncio.sleep(0.1)
    assert run["lesson_slug"] == "practice" and run["exercise_id"] == "hello"
    kinds = [event["kind"] for event in run["events"]]
    assert kinds[0] == "requested" and kinds[-1] == "finished" and "verdict" in kinds


async def test_the_served_app_has_the_jupyter_kernel_api(site):
    headers = {"Authorization": f"token {TOKEN}"}
    specs = json.loads((await site.get("/api/kernelspecs", headers=headers)).body)
    assert set(specs["kernelspecs"]) >= {"python", "bash", "sql"}
    assert (await site.get("/api/kernels")).code == 401


async def test_admins_see_the_run_timeline_after_signing_in_with_the_token(site):
    page = await Page.open(site)
    result, _ = await page.run("hello", "print('hello')")
    assert (await site.get("/admin/runs")).headers["Location"].startswith("/admin/login")
    login = await site.get("/admin/login")
    xsrf = next(c.split(";", 1)[0] for c in login.headers.get_list("Set-Cookie")
                if c.startswith("_xsrf="))
    async def sign_in(token: str):
        return await site.get("/admin/login?next=/admin/runs", method="POST",
                              headers={"Cookie": xsrf},
                              body=f"token={token}&_xsrf={xsrf.split('=', 1)[1]}")
    refused = await sign_in("wrong")
    assert refused.code == 403 and "not the admin token" in refused.body.decode()
    signed = await sign_in(TOKEN)
    assert signed.code == 302 and signed.headers["Location"] == "/admin/runs"
    session = next(c.split(";", 1)[0] for c in signed.headers.get_list("Set-Cookie")
                   if c.startswith("ls_admin="))
    for _ in range(100):   # the trace arrives through the buffer
        listing = await site.get("/admin/runs?exercise=hello", headers={"Cookie": session})
        if result["trace"] in listing.body.decode():
            break
        await asyncio.sleep(0.1)
    assert listing.code == 200 and f'href="/admin/runs/{result["trace"]}"' in listing.body.decode()
    timeline = (await site.get(f"/admin/runs/{result['trace']}", headers={"Cookie": session})).body.decode()
    assert "print(&#x27;hello&#x27;)" in timeline        # the code, escaped
    kinds = re.findall(r"<strong>(\w+)</strong>", timeline.split("Timeline", 1)[1])
    assert kinds[0] == "requested" and kinds[-1] == "finished" and "verdict" in kinds
    assert (await site.get("/admin/runs?status=bogus", headers={"Cookie": session})).code == 400


async def test_a_dropped_socket_gets_the_finished_run_and_the_same_kernel_back(site):
    page = await Page.open(site)
    await page.send(type="run", run="r1", exercise="hello",
                    code="import time\ngreeting = 'hello'\ntime.sleep(0.5)\nprint(greeting)")
    await page.until("started")
    page = await page.reconnect()                          # drops mid-run
    result, frames = await page.until("result")           # replayed or live, in order
    assert result["run"] == "r1" and result["verdict"]["passed"] is True
    assert {"output_type": "stream", "name": "stdout", "text": "hello\n"} in [
        f["output"] for f in frames if f["type"] == "output"]
    result, _ = await page.run("hello", "print(greeting)", run="r2")   # variables survived
    assert result["verdict"]["passed"] is True


async def test_a_page_gone_longer_than_the_grace_period_loses_its_kernel(tmp_path, make_settings):
    async with serve_course(tmp_path, make_settings, LS_RECONNECT_GRACE="1") as site:
        page = await Page.open(site)
        await page.run("hello", "greeting = 'hello'\nprint(greeting)")
        page.socket.close()
        await asyncio.sleep(2.5)
        page = await Page.open(site, cookie=page.cookie)
        result, _ = await page.run("hello", "print(greeting)", run="r2")
        assert result["status"] == "error" and not result["verdict"]["passed"]   # a fresh kernel


async def test_the_newest_tab_owns_the_lesson_and_the_old_one_is_told(site):
    first = await Page.open(site)
    second = await Page.open(site, cookie=first.cookie)
    told, _ = await first.until("error")
    assert "another tab" in told["message"]
    await first.send(type="run", run="r1", exercise="hello", code="print('hello')")
    refused, _ = await first.until("error")
    assert "another tab" in refused["message"]
    result, _ = await second.run("hello", "print('hello')", run="r2")
    assert result["verdict"]["passed"] is True


async def test_a_question_asked_while_the_page_was_away_is_asked_again(site):
    page = await Page.open(site)
    await page.send(type="run", run="r1", exercise="ask", code="name = input('name? ')\nprint('hi', name)")
    await page.until("input_request")
    page = await page.reconnect()
    asked, _ = await page.until("input_request")
    assert asked["run"] == "r1" and asked["prompt"] == "name? "
    await page.send(type="input", run="r1", value="Ada")
    result, _ = await page.until("result")
    assert result["verdict"]["passed"] is True


async def test_a_jupyter_clients_run_is_cut_and_listed_with_the_lesson_runs(site):
    """Issue 8: a run over the kernel API has the run timeout and lands in /api/admin/runs."""
    headers = {"Authorization": f"token {TOKEN}"}
    client = tornado.httpclient.AsyncHTTPClient()
    model = json.loads((await client.fetch(f"{site.base}/api/kernels", method="POST",
                                           headers=headers, body="{}")).body)
    socket = await tornado.websocket.websocket_connect(tornado.httpclient.HTTPRequest(
        site.base.replace("http", "ws") + f"/api/kernels/{model['id']}/channels", headers=headers))
    msg_id = "api-run-1"
    await socket.write_message(json.dumps({
        "channel": "shell", "header": {"msg_id": msg_id, "msg_type": "execute_request",
                                       "session": "s", "username": "u", "version": "5.3"},
        "parent_header": {}, "metadata": {},
        "content": {"code": "import time; time.sleep(13)", "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False}}))
    notes = []
    while True:
        msg = json.loads(await asyncio.wait_for(socket.read_message(), 15))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            notes.append(msg["content"]["text"])
        if msg["msg_type"] == "execute_reply":
            break
    socket.close()
    assert any("Stopped after 2 s" in note for note in notes)
    for _ in range(100):
        runs = json.loads((await site.get("/api/admin/runs?status=limit", headers=headers)).body)
        api_runs = [r for r in runs["runs"] if r.get("client") == "api"]
        if api_runs:
            break
        await asyncio.sleep(0.1)
    assert api_runs and api_runs[0]["user_id"] == "api:token" and api_runs[0]["limit_hit"] == "timeout"
    run = json.loads((await site.get(f"/api/admin/runs/{api_runs[0]['id']}", headers=headers)).body)
    assert [e["kind"] for e in run["events"]][0] == "requested" and "limit" in [
        e["kind"] for e in run["events"]]



async def test_a_reloaded_page_gets_each_exercises_last_run_in_learner_words(site):
    page = await Page.open(site)
    await page.run("hello", "print('hello')")
    result, _ = await page.run("hello", "print('looping', flush=True)\nwhile True:\n    pass",
                               run="r2")
    assert result["limit"] == "timeout"
    again = await page.reconnect()
    restore, _ = await again.until("restore")
    last = restore["exercises"]["hello"]
    assert last["status"] == "limit" and last["verdict"]["passed"] is False
    assert "ran longer than 2 s" in last["message"]
    assert last["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "looping\n"}]
    assert set(restore["exercises"]) == {"hello"}          # only exercises that ran
    stranger = await Page.open(site)
    await stranger.send(type="interrupt")
    frames = []
    with contextlib.suppress(asyncio.TimeoutError):
        frames.append(await stranger.until("restore", timeout=1))
    assert frames == []                                      # nobody else's runs


async def test_a_full_host_queues_the_run_and_shows_its_position(tmp_path, make_settings):
    """Issue 11: past capacity a learner waits in a fair queue, told its place, not an error."""
    async with serve_course(tmp_path, make_settings, LS_MAX_KERNELS="1",
                            LS_RECONNECT_GRACE="0.5") as site:
        holder = await Page.open(site)
        await holder.run("hello", "print('hello')")          # holds the host's only kernel
        waiting = await Page.open(site)
        await waiting.send(type="run", run="w1", exercise="hello", code="print('hello')")
        queued, _ = await waiting.until("queued")
        assert queued["position"] == 1
        holder.socket.close()                                  # its kernel goes after the grace
        result, frames = await waiting.until("result")
        assert result["verdict"]["passed"] is True
        assert not [f for f in frames if f["type"] == "error"]
