"""Fold a run's kernel messages into a result: a pure function on values.

`fold(state, msg)` takes one message (iopub, or the shell's execute_reply) as
the plain dict jupyter_client hands out and returns the new state plus the
outputs to forward right now. The output cap is enforced here, so the session
only has to react to `state.limit`. `finish` turns the final state, plus what
the shell saw (timeout, death), into a RunResult with a message in plain words.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from kernels.result import LimitHit, Output, RunLimits, RunResult, RunStatus

OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")
# How a failing fork looks in Python (BlockingIOError) and in shells ("fork: retry").
PIDS_SIGNS = ("Resource temporarily unavailable", "BlockingIOError", "fork: retry")
DISK_SIGNS = ("No space left on device", "[Errno 28]")


@dataclasses.dataclass(frozen=True)
class RunState:
    limits: RunLimits
    parent_id: str | None = None          # only messages answering this request count
    outputs: tuple[Output, ...] = ()      # what was kept, in order
    bytes_out: int = 0                    # everything the kernel produced
    bytes_kept: int = 0
    messages_kept: int = 0
    bytes_dropped: int = 0
    messages_dropped: int = 0
    capped: bool = False                  # the output cap was reached: forward nothing more
    limit: LimitHit | None = None         # first limit that showed as an error (memory, pids, disk)
    execution_count: int | None = None
    reply_status: str | None = None       # ok | error | aborted, from execute_reply
    idle: bool = False
    pending_clear: bool = False           # clear_output(wait=True) waits for the next output
    error_name: str | None = None         # last error, even when it was dropped
    malformed: int = 0                    # messages of a broken shape, skipped

    @property
    def done(self) -> bool:
        """The kernel went idle and answered: nothing more will come for this run."""
        return self.idle and self.reply_status is not None


def _with(state: RunState, **changes: Any) -> RunState:
    """`dataclasses.replace` for RunState at a fraction of its cost: the reader folds every
    message of a run, and replace() calls __init__ through every field (RunState has no
    __post_init__ to skip)."""
    new = object.__new__(RunState)
    new.__dict__.update(state.__dict__, **changes)
    return new


def start(limits: RunLimits, parent_id: str | None = None) -> RunState:
    return RunState(limits=limits, parent_id=parent_id)


def fold(state: RunState, msg: Mapping[str, Any]) -> tuple[RunState, tuple[Output, ...]]:
    parent = (msg.get("parent_header") or {}).get("msg_id")
    if state.parent_id is not None and parent != state.parent_id:
        return state, ()
    kind = msg.get("msg_type") or (msg.get("header") or {}).get("msg_type")
    content = msg.get("content")
    if not isinstance(content, Mapping):
        return _malformed(state), ()
    if kind == "status":
        return (_with(state, idle=True) if content.get("execution_state") == "idle"
                else state), ()
    if kind == "execute_input":
        count = content.get("execution_count")
        return _with(state, execution_count=count if _is_int(count) else None), ()
    if kind == "execute_reply":
        status, count = content.get("status", "ok"), content.get("execution_count")
        return _with(state, reply_status=status if isinstance(status, str) else "error",
                     execution_count=count if _is_int(count) else state.execution_count), ()
    if kind == "clear_output":
        if content.get("wait"):
            return _with(state, pending_clear=True), ()
        return _with(state, outputs=(), pending_clear=False), (Output("clear_output"),)
    if kind not in OUTPUT_TYPES and kind != "update_display_data":
        return state, ()
    try:
        output = _to_output(kind, content)
    except MalformedOutput:
        return _malformed(state), ()
    return _admit(_note_signs(state, output), output)


class MalformedOutput(ValueError):
    """Kernel output of a shape no notebook could show: skipped and counted, never fatal."""


def _malformed(state: RunState) -> RunState:
    return _with(state, malformed=state.malformed + 1)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise MalformedOutput(f"expected text, got {type(value).__name__}")
    return value


def _to_output(kind: str, content: Mapping[str, Any]) -> Output:
    transient = content.get("transient")
    display_id = transient.get("display_id") if isinstance(transient, Mapping) else None
    display_id = display_id if isinstance(display_id, str) else None
    if kind == "stream":
        name = _text(content.get("name"), "stdout")
        return Output("stream", name=name if name in ("stdout", "stderr") else "stdout",
                      text=_text(content.get("text")))
    if kind in ("display_data", "execute_result", "update_display_data"):
        data = content.get("data")
        if data is None:
            data = {}
        if not isinstance(data, Mapping) or not all(isinstance(k, str) for k in data):
            raise MalformedOutput("data must be an object keyed by MIME type")
        return Output(kind, data=dict(data), display_id=display_id)
    traceback = content.get("traceback") or ()
    if not isinstance(traceback, (list, tuple)) or not all(isinstance(t, str) for t in traceback):
        raise MalformedOutput("traceback must be a list of strings")
    return Output("error", ename=_text(content.get("ename")), evalue=_text(content.get("evalue")),
                  traceback=tuple(traceback))


def _size(output: Output) -> int:
    if output.output_type == "stream":
        return len((output.text or "").encode())
    if output.output_type == "error":
        return len("\n".join((output.ename or "", output.evalue or "", *output.traceback)).encode())
    return sum(len(v.encode()) if isinstance(v, str) else len(json.dumps(v))
               for v in (output.data or {}).values())


def _note_signs(state: RunState, output: Output) -> RunState:
    """Spot limits that surface as ordinary errors inside the kernel."""
    if output.output_type == "error":
        state = _with(state, error_name=output.ename)
        text = f"{output.ename}: {output.evalue}"
    elif output.output_type == "stream" and output.name == "stderr":
        text = output.text or ""
    else:
        return state
    if state.limit is not None:
        return state
    if output.ename == "MemoryError":
        return _with(state, limit=LimitHit.MEMORY)
    if any(sign in text for sign in PIDS_SIGNS):
        return _with(state, limit=LimitHit.PIDS)
    if any(sign in text for sign in DISK_SIGNS):
        return _with(state, limit=LimitHit.DISK)
    return state


def _admit(state: RunState, output: Output) -> tuple[RunState, tuple[Output, ...]]:
    """Keep and forward the output if it fits under the cap; cut the one that crosses it."""
    # One replace of the state per output (each costs ~10 us: this is every output's path).
    size = _size(output)
    bytes_out = state.bytes_out + size
    room = state.limits.output_bytes - state.bytes_kept
    if state.capped or state.messages_kept >= state.limits.output_messages or room <= 0:
        return _drop(state, size, bytes_out=bytes_out), ()
    cut: dict[str, Any] = {}
    if size > room:
        if output.output_type != "stream":  # an image or table cannot be cut in half
            return _drop(state, size, bytes_out=bytes_out), ()
        text = (output.text or "").encode()[:room].decode(errors="ignore")
        kept = len(text.encode())
        output = dataclasses.replace(output, text=text)
        cut = {"bytes_dropped": state.bytes_dropped + size - kept, "capped": True}
        size = kept
    counts = {"bytes_out": bytes_out, "bytes_kept": state.bytes_kept + size,
              "messages_kept": state.messages_kept + 1, **cut}
    if output.output_type == "update_display_data":
        return _with(state, outputs=tuple(
            dataclasses.replace(o, data=output.data)
            if o.display_id and o.display_id == output.display_id else o
            for o in state.outputs), **counts), (output,)
    if state.pending_clear:
        return _with(state, outputs=(output,), pending_clear=False, **counts), \
            (Output("clear_output"), output)
    return _with(state, outputs=(*state.outputs, output), **counts), (output,)


def drop_unread(state: RunState, size: int) -> RunState:
    """A message discarded without reading it (a big stream once the cap was reached)."""
    return _drop(state, size)


def _drop(state: RunState, size: int, **also: Any) -> RunState:
    return _with(state, bytes_dropped=state.bytes_dropped + size,
                 messages_dropped=state.messages_dropped + 1, capped=True, **also)


# --- the final result ------------------------------------------------------

def finish(state: RunState, *, timed_out: bool = False, died: bool = False,
           exit_code: int | None = None, oom_killed: bool = False) -> RunResult:
    """The result of the run; `died` when the kernel's process or container ended."""
    limit = _final_limit(state, timed_out=timed_out, died=died, oom_killed=oom_killed)
    if limit is not None:
        status, message = RunStatus.LIMIT, limit_message(limit, state)
    elif died:
        status, message = RunStatus.DIED, f"The kernel died ({_exit_words(exit_code)})"
    elif state.reply_status in ("error", "aborted") or state.error_name:
        status, message = RunStatus.ERROR, _error_words(state.error_name)
    else:
        status, message = RunStatus.OK, None
    return RunResult(status=status, outputs=merge_streams(state.outputs), limit=limit,
                     message=message, execution_count=state.execution_count,
                     bytes_out=state.bytes_out, bytes_dropped=state.bytes_dropped,
                     messages_dropped=state.messages_dropped)


def _final_limit(state: RunState, *, timed_out: bool, died: bool,
                 oom_killed: bool) -> LimitHit | None:
    # Our own stop (interrupt, kill) follows from pids and output limits: report the cause.
    if oom_killed:
        return LimitHit.MEMORY
    if state.limit is LimitHit.PIDS:
        return LimitHit.PIDS
    if state.capped:
        return LimitHit.OUTPUT
    if timed_out:
        return LimitHit.TIMEOUT
    if died:
        return None
    return state.limit


def limit_message(limit: LimitHit, state: RunState) -> str:
    limits = state.limits
    if limit is LimitHit.TIMEOUT:
        return f"Stopped after {limits.timeout:g} s"
    if limit is LimitHit.OUTPUT:
        if state.messages_kept < limits.output_messages:
            return (f"Output cut at {human_bytes(limits.output_bytes)} "
                    f"({human_bytes(state.bytes_dropped)} more was discarded)")
        return (f"Output cut after {limits.output_messages} messages "
                f"({state.messages_dropped} more were discarded)")
    if limit is LimitHit.MEMORY:
        return f"Your program used more than {limits.memory_mb} MiB of memory and was stopped"
    if limit is LimitHit.PIDS:
        return f"Too many processes (limit {limits.pids_limit})"
    return f"The disk space for files is full (limit {limits.tmp_mb} MB)"


def _exit_words(exit_code: int | None) -> str:
    if exit_code is None:
        return "no exit status"
    # Docker and shells report death by signal N as 128+N; Popen reports -N.
    number = -exit_code if exit_code < 0 else exit_code - 128 if exit_code > 128 else None
    if number is None:
        return f"exit code {exit_code}"
    return f"killed by signal {number}"


def _error_words(ename: str | None) -> str | None:
    if ename == "SystemExit":
        return "Your program called sys.exit(); the kernel keeps running and your variables are kept"
    if ename == "KeyboardInterrupt":
        return "Interrupted"
    return None


def note_restart(result: RunResult) -> RunResult:
    """Tell the learner that a fresh kernel replaced the one this run lost."""
    if result.status is RunStatus.DIED:
        return dataclasses.replace(result, message=f"{result.message}; a fresh one has been started")
    base = result.message or "The kernel stopped"
    return dataclasses.replace(
        result, message=f"{base}. A fresh kernel has been started, so earlier variables are gone")


def merge_streams(outputs: tuple[Output, ...]) -> tuple[Output, ...]:
    """Consecutive chunks of the same stream read as one output, as notebooks show them."""
    merged: list[Output] = []
    for output in outputs:
        last = merged[-1] if merged else None
        if (last is not None and output.output_type == "stream" and last.output_type == "stream"
                and last.name == output.name):
            merged[-1] = dataclasses.replace(last, text=(last.text or "") + (output.text or ""))
        else:
            merged.append(output)
    return tuple(merged)


def human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    for unit in ("KB", "MB", "GB"):
        count /= 1024
        if count < 1024 or unit == "GB":
            return f"{count:.1f}".removesuffix(".0") + f" {unit}"
    raise AssertionError("unreachable")
