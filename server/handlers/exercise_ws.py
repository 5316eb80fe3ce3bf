"""The lesson page's WebSocket: run exercises, stream outputs, answer input(), report verdicts.

One socket per open lesson page, attached to the learner's session for that
lesson (server/learning/lesson_sessions.py): the kernel is started on the first run
(from the warm pool) and outlives a dropped socket for a grace period, so a
reconnecting page keeps its variables and gets the frames it missed. The
protocol is JSON frames; see static/js/notebook.js for the other side.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

import tornado.web
import tornado.websocket

from kernels.manager import KernelManager, ManagedKernel, UnknownKernel
from kernels.pool import CapacityError
from kernels.result import Output
from kernels.sandbox import SandboxError
from server import eager_task, safe_json
from server.accounts.connections import PerIpCap
from server.learning.exercise_runner import ExerciseRunner
from server.handlers import ws_send
from server.handlers.base import CappedSocket, Common, HeaderError, owner_tier
from server.handlers.pages import LearnerPage
from server.learning import last_run, reveal
from server.learning.lesson_sessions import LessonSession, LessonSessions
from server.admin.flags import RUNS_PAUSED, FeatureFlags
from server.library import Shelf
from server.store import progress

log = logging.getLogger("lessonserver.ws")
# One encoder for every frame: json.dumps with an option builds a new one per call.
_ENCODE = json.JSONEncoder(default=str).encode
RUNS_PAUSED_MESSAGE = ("Running code is paused for a short while for maintenance. Your code is "
                       "kept on this page; try again in a few minutes.")

RUN_FAILED = ("Your run could not go ahead: something on our side failed (the server may be "
              "very busy). Your code is kept; please press Run again in a few seconds.")
RUN_FAILED_RETRY = 5.0        # seconds the page suggests waiting before running again
MAX_FRAME = 256 * 1024        # a learner's code cell, with room to spare
INPUT_TIMEOUT = 300.0         # seconds a run may wait for the learner to answer input()
STARTED_AFTER = 0.05          # a run silent this long is said to have started (sooner: unseen)
KERNEL_RESTARTED = ("Your kernel was restarted while you were away (the server that ran it "
                    "went away or it was closed), so the variables from earlier runs are gone; "
                    "run the earlier exercises again if this one needs them.")


def kernel_tag(kernel_id: str) -> str:
    """What the page keeps of its kernel, to say in its hello which one it had (not the id)."""
    return hashlib.sha256(kernel_id.encode()).hexdigest()[:16]


# The frames that run code: an exercise (checked), or a runnable example of the prose (not).
RUNS = {"run": ("run", "exercise", "code"), "example": ("run", "example")}
RUN_NAMES = {"run": "a run frame", "example": "an example frame"}


class ProtocolError(ValueError):
    """A frame the client should not have sent; told to the client, the socket stays open."""


def parse_frame(raw: str | bytes) -> dict[str, Any]:
    try:
        frame = safe_json.loads(raw, max_bytes=MAX_FRAME)
    except safe_json.BadJson as exc:
        raise ProtocolError(f"frames must be JSON objects: {exc}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ProtocolError("frames must be JSON objects with a string 'type'")
    if frame["type"] in RUNS:
        for key in RUNS[frame["type"]]:
            if not isinstance(frame.get(key), str):
                raise ProtocolError(f"{RUN_NAMES[frame['type']]} needs a string {key!r}")
    elif frame["type"] == "input":
        if not isinstance(frame.get("value"), str):
            raise ProtocolError("an input frame needs a string 'value'")
    elif frame["type"] == "hello":
        if not isinstance(frame.get("session"), str):
            raise ProtocolError("a hello frame needs a string 'session'")
    elif frame["type"] == "solution":
        if not isinstance(frame.get("exercise"), str):
            raise ProtocolError("a solution frame needs a string 'exercise'")
    elif frame["type"] not in ("interrupt", "restart"):
        raise ProtocolError(f"unknown frame type {frame['type']!r}")
    return frame


class ExerciseSocket(CappedSocket, tornado.websocket.WebSocketHandler, LearnerPage):
    route = "lesson_ws"

    def initialize(self, common: Common, library: Shelf, manager: KernelManager,
                   runner: ExerciseRunner, sessions: LessonSessions, ws_cap: PerIpCap,
                   flags: FeatureFlags | None = None) -> None:
        LearnerPage.initialize(self, common, library)
        self.flags = flags
        self.ws_cap = ws_cap
        self.manager = manager
        self.runner = runner
        self.sessions = sessions
        self.lesson = None
        self.session: LessonSession | None = None
        self.closed = False
        self.kernel_lost = False     # the page's hello named a kernel this process does not hold

    def get_compression_options(self) -> dict[str, Any]:
        return {}

    async def get(self, slug: str) -> None:
        """Check who is asking and whether the lesson is open to them before upgrading."""
        lesson = self.library.catalog.lesson(slug)
        if lesson is None:
            raise tornado.web.HTTPError(404, f"There is no lesson called {slug!r}.")
        # A new visitor gets its identity here: the cookie rides on the handshake's answer
        # (a row only comes with its first run), so the lesson page stays one cached page.
        await self.ensure_user()
        if not (await self.lesson_state(lesson)).access.open:
            raise tornado.web.HTTPError(403, "This lesson is locked for you.")
        self.lesson = lesson
        await self.upgrade_within(self.ws_cap, slug)

    @property
    def max_message_size(self) -> int:
        return MAX_FRAME

    async def open(self, slug: str) -> None:
        self.set_nodelay(True)   # small interactive frames: Nagle + delayed ACK cost ~40 ms each
        self.send({"type": "kernel", "state": "none", "message": None})
        self.session = self.sessions.attach(self.user.id, self.lesson.slug, self.send)
        if self.session.kernel_id is not None:
            self.send({"type": "kernel", "state": "busy" if self.session.busy else "idle",
                       "message": None, "session": kernel_tag(self.session.kernel_id)})
        await self._restore()

    async def _restore(self) -> None:
        """Each exercise's last run as the page showed it, for a page that was reloaded.
        After the frames above: the page shows it only where nothing newer ran."""
        try:
            stored = await progress.last_runs(self.common.engine, self.user.id, self.lesson.slug)
        except Exception:      # the page works without it; the learner can run again
            log.exception("could not load the last runs", extra={"fields": {"lesson": self.lesson.slug}})
            return
        runs = {exercise_id: snap for exercise_id, text in stored.items()
                if (snap := last_run.parse(text)) is not None}
        if runs:
            self.send({"type": "restore", "exercises": runs})

    def send(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            try:
                ws_send.send_text(self, _ENCODE(frame).encode())
                return
            except tornado.websocket.WebSocketClosedError:
                self.closed = True
        # Closed before on_close detached us: keep the frame for the page's return.
        if self.session is not None and self.session.sink == self.send:
            self.session.missed.append(frame)

    def on_message(self, raw: str | bytes) -> None:
        session = self.session
        try:
            frame = parse_frame(raw)
        except ProtocolError as exc:
            self.send({"type": "error", "run": None, "message": str(exc)})
            return
        if frame["type"] == "hello":
            self._hello(session, frame["session"])
            return
        if session.sink != self.send:
            self.send({"type": "error", "run": frame.get("run"),
                       "message": "This lesson is open in another tab; reload to work here."})
            return
        kind = frame["type"]
        if kind in RUNS:
            if session.refusing is not None:       # the server is stopping
                self.send({"type": "error", "run": frame["run"], "message": session.refusing})
                return
            if self.flags is not None and self.flags.on(RUNS_PAUSED):   # an admin paused runs
                self.send({"type": "error", "run": frame["run"], "message": RUNS_PAUSED_MESSAGE})
                return
            if session.busy:
                self.send({"type": "error", "run": frame["run"],
                           "message": "A run is already in progress; interrupt it first."})
                return
            # Started now: its code is with the kernel before the loop turns (server/eager_task.py).
            session.running = eager_task.start(self._run_or_say_why(session, frame))
        elif kind == "input":
            if session.answer is not None and not session.answer.done():
                session.answer.set_result(frame["value"])
        elif kind == "interrupt":
            asyncio.create_task(self._control(session, self.manager.interrupt, "interrupt"))
        elif kind == "restart":
            asyncio.create_task(self._control(session, self._restart, "restart"))
        elif kind == "solution":
            asyncio.create_task(self._solution(frame["exercise"]))

    async def _solution(self, exercise_id: str) -> None:
        """The solution of an exercise with `reveal=N`, once the learner's row counts N attempts."""
        exercise = self.library.catalog.exercise(self.lesson.slug, exercise_id)
        shown = reveal.Reveal(None, f"This lesson has no exercise {exercise_id!r}.")
        if exercise is not None:
            shown = await reveal.reveal(self.common.engine, self.user.id, self.lesson.slug, exercise)
        self.send({"type": "solution", "exercise": exercise_id, "solution": shown.solution,
                   "message": shown.message})

    def _hello(self, session: LessonSession, had: str) -> None:
        """The page had a kernel: if this process does not hold it (the page's process went
        away behind the balancer, or it was closed), say so now and with the next run."""
        held = session.kernel_id is not None and self.manager.holds(session.kernel_id)
        if held and kernel_tag(session.kernel_id) == had:
            return
        self.kernel_lost = True
        self.send({"type": "kernel", "state": "idle" if held else "none",
                   "message": KERNEL_RESTARTED, "restarted": True})

    async def _restart(self, kernel_id: str) -> None:
        self.send({"type": "kernel", "state": "restarting", "message": None})
        await self.manager.restart(kernel_id)
        self.send({"type": "kernel", "state": "idle", "message": "The kernel was restarted."})

    async def _control(self, session: LessonSession, action, name: str) -> None:
        if session.kernel_id is None:
            return
        try:
            await action(session.kernel_id)
        except UnknownKernel:
            session.kernel_id = None
        except Exception:
            log.exception("%s failed", name)
            self.send({"type": "error", "run": None, "message": f"Could not {name} the kernel."})

    async def _kernel(self, session: LessonSession) -> tuple[str, ManagedKernel | None]:
        """The session's kernel id, and the kernel when it was started for this run."""
        if session.kernel_id is None or not self.manager.holds(session.kernel_id):
            session.send({"type": "kernel", "state": "starting", "message": None})
            kernel = await self.manager.start(
                session.user_id, self.lesson.kernel, owner_tier(self.user),
                on_queued=lambda position: session.send({"type": "queued", "position": position}))
            session.kernel_id = kernel.id
            return kernel.id, kernel
        return session.kernel_id, None

    async def _run_or_say_why(self, session: LessonSession, frame: dict[str, Any]) -> None:
        """A run that fails on our side (the database away or out of connections) tells the
        learner so, instead of leaving the page waiting on a run that is not coming."""
        try:
            await self._run(session, frame)
        except Exception:
            log.exception("run failed", extra={"fields": {"lesson": self.lesson.slug}})
            session.send({"type": "error", "run": frame["run"], "retry_after": RUN_FAILED_RETRY,
                          "message": RUN_FAILED})
        finally:
            session.settle(frame["run"])

    async def _run(self, session: LessonSession, frame: dict[str, Any]) -> None:
        """The run belongs to the session: it goes on, and is reported, if this socket drops."""
        send = session.send
        run_id = frame["run"]
        example = None
        if frame["type"] == "example":
            lesson = self.library.catalog.lesson(self.lesson.slug)
            example = exercise = lesson.example(frame["example"]) if lesson else None
        else:
            exercise = self.library.catalog.exercise(self.lesson.slug, frame["exercise"])
        if exercise is None:
            what = "example" if frame["type"] == "example" else "exercise"
            send({"type": "error", "run": run_id, "message": f"This lesson has no {what} {frame[what]!r}."})
            return
        try:   # the first run is worth keeping: the visitor gets its row now
            await self.persist_user()
        except HeaderError as exc:
            send({"type": "error", "run": run_id, "retry_after": float(exc.headers["Retry-After"]),
                  "message": exc.log_message})
            return
        # Only a subscription can end (progress is never taken back): free lessons skip the
        # database on the way to the first output.
        if self.lesson.paid and not (await self.lesson_state(self.lesson)).access.open:
            send({"type": "error", "run": run_id, "message": "This lesson is locked for you now."})
            return
        refusal = self.manager.admit_run(session.user_id)
        if refusal is not None:
            send({"type": "error", "run": run_id, "retry_after": refusal.retry_after,
                  "message": refusal.message})
            return
        try:
            kernel_id, started = await self._kernel(session)
        except CapacityError as exc:
            message = str(exc) if exc.reason.startswith("owner") else \
                f"All kernels are busy right now; try again in {exc.retry_after:.0f} s."
            send({"type": "error", "run": run_id, "retry_after": exc.retry_after,
                  "message": message})
            return
        except SandboxError:
            log.exception("kernel start failed", extra={"fields": {"lesson": self.lesson.slug}})
            message = "The kernel could not be started; please try again shortly."
            send({"type": "kernel", "state": "dead", "message": message})
            send({"type": "error", "run": run_id, "message": message})
            return
        # One frame says both that the run started and that the kernel is busy, and only for
        # a run that lasts: each frame woke the page as the kernel took the code up, and the
        # kernel's first output came 0.2 ms later for each.
        tag = kernel_tag(kernel_id)     # the page's name for its kernel, with its frames
        session.announce({"type": "started", "run": run_id, "exercise": exercise.id,
                          "session": tag}, STARTED_AFTER)
        if self.kernel_lost:
            self.kernel_lost = False
            send({"type": "output", "run": run_id, "output": {
                "output_type": "stream", "name": "stderr", "text": f"[{KERNEL_RESTARTED}]\n"}})

        def on_output(output: Output) -> None:
            send({"type": "output", "run": run_id, "output": output.to_json()})

        async def on_input(prompt: str, password: bool) -> str:
            session.answer = asyncio.get_running_loop().create_future()
            session.asking = {"type": "input_request", "run": run_id, "prompt": prompt,
                              "password": password}
            send(session.asking)
            try:
                return await asyncio.wait_for(session.answer, INPUT_TIMEOUT)
            except asyncio.TimeoutError:   # nobody answered: the program gets an empty line
                send({"type": "output", "run": run_id, "output": {
                    "output_type": "stream", "name": "stderr",
                    "text": f"(no answer within {INPUT_TIMEOUT:.0f} s; input() got an empty line)\n"}})
                return ""
            finally:
                session.asking = None

        try:
            if example is not None:
                outcome = await self.runner.run_example(
                    user_id=session.user_id, kernel_id=kernel_id, lesson=self.lesson,
                    example=example, on_output=on_output, started=started)
            else:
                outcome = await self.runner.run(
                    user_id=session.user_id, kernel_id=kernel_id, lesson=self.lesson,
                    exercise=exercise, code=frame["code"], on_output=on_output, on_input=on_input,
                    started=started)
        except UnknownKernel:
            session.kernel_id = None
            send({"type": "error", "run": run_id, "message": "The kernel was shut down; run again."})
            return
        except Exception:
            log.exception("run failed", extra={"fields": {"lesson": self.lesson.slug,
                                                          "exercise": exercise.id}})
            send({"type": "error", "run": run_id, "message": "The server could not finish this run."})
            return
        result = outcome.result
        send({"type": "kernel", "state": "idle", "message": None, "session": tag})
        if outcome.verdict is None:        # an example: its output, no verdict, no progress
            send({"type": "result", "run": run_id, "trace": outcome.run_id, "example": example.id,
                  "status": result.status.value,
                  "limit": result.limit.value if result.limit else None, "message": result.message})
            return
        send({"type": "result", "run": run_id, "trace": outcome.run_id, "exercise": exercise.id,
              "status": result.status.value, "limit": result.limit.value if result.limit else None,
              "message": result.message,
              "verdict": {"passed": outcome.verdict.passed, "message": outcome.verdict.message},
              "progress": {"passed": outcome.passed_in_lesson, "total": outcome.total_in_lesson}})

    def on_close(self) -> None:
        self.closed = True
        self.release_slot()
        if self.session is not None:
            self.sessions.detach(self.session, self.send)
