"""Kernel results in the learner's words: pure functions on values.

What the kernel reports is written for someone who knows IPython: tracebacks
name `Cell In[11]` (a counter shared by every exercise of the lesson) or an
ipykernel temp file (`/tmp/ipykernel_42/123.py`), and a run the server
stopped at its time limit ends with a `KeyboardInterrupt` for a key nobody
pressed. These functions turn a run's outputs and result into what the lesson
page shows; the trace keeps the kernel's own words.
"""
from __future__ import annotations

import dataclasses
import re

from kernels.result import LimitHit, Output, RunResult, RunStatus

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# "Cell In[11], line 3" or "Cell In[11], line 3, in f(n)" (IPython 8)
CELL_FRAME = re.compile(r"^(?P<indent>\s*)Cell In\[\d+\], line (?P<line>\d+)(?P<rest>.*)$")
# "File /tmp/ipykernel_42/123.py:3, in f(n)" (IPython 8) and the plain Python form
# 'File "/tmp/ipykernel_42/123.py", line 3, in f' (traceback.print_exc, older kernels).
TEMP_FRAME = re.compile(r'^(?P<indent>\s*)File "?(?:/tmp|/var/tmp)/ipykernel_\d+/\d+\.py"?'
                        r'(?::|, line )(?P<line>\d+)(?P<rest>.*)$')
# The frame IPython itself adds around exec() in some tracebacks: never the learner's business.
IPYTHON_FRAME = re.compile(r"^\s*File .*IPython/core/interactiveshell\.py")
ARROW = re.compile(r"^\s*-*>\s*(?P<line>\d+) ?(?P<text>.*)$")
RULE = re.compile(r"^-{20,}$")
# "(2018427939.py, line 1)" at the end of a SyntaxError's message
TEMP_IN_MESSAGE = re.compile(r"\((?:[\w/.]*/)?\d+\.py, line (?P<line>\d+)\)")

YOURS = "\x1b[36m{where}\x1b[39m"          # kept in colour, as the kernel's frame headers are


def plain(text: str) -> str:
    return ANSI.sub("", text)


def timeout_words(seconds: float) -> str:
    return (f"Your code ran longer than {seconds:g} s, so it was stopped. "
            "Is there an endless loop? Check that every while loop has a condition "
            "that becomes false.")


def _where(line: int, code_lines: list[str], arrow_text: str | None) -> str:
    """'line 3 of your code' when the frame is the learner's code; else code that ran before."""
    mine = 1 <= line <= len(code_lines) and (
        arrow_text is None or code_lines[line - 1].strip() == arrow_text.strip())
    return f"line {line} of your code" if mine else f"line {line} of code that ran before yours"


def _frame_header(text: str, code_lines: list[str], arrow_text: str | None) -> str | None:
    """The learner's words for a frame header line, or None when it is not one of ours."""
    match = CELL_FRAME.match(text) or TEMP_FRAME.match(text)
    if match is None:
        return None
    rest = match["rest"]
    rest = re.sub(r"^, in <module>$", "", rest)     # the top level needs no name
    where = _where(int(match["line"]), code_lines, arrow_text)
    return f"{match['indent']}{YOURS.format(where=where.capitalize())}{rest}"


def _arrow_text(lines: list[str], start: int) -> str | None:
    """The code on the frame's '---->' line, after the header at `start`."""
    for raw in lines[start + 1:]:
        text = plain(raw)
        if CELL_FRAME.match(text) or TEMP_FRAME.match(text) or text.startswith("File "):
            return None
        match = ARROW.match(text)
        if match and ">" in text:
            return match["text"]
    return None


def clean_traceback(traceback: tuple[str, ...], code: str) -> tuple[str, ...]:
    """The traceback with the learner's frames named by line of their code, no temp files."""
    code_lines = code.split("\n")
    cleaned: list[str] = []
    skip_frame = False
    for part in traceback:
        lines = part.split("\n")
        kept: list[str] = []
        for index, raw in enumerate(lines):
            text = plain(raw)
            if IPYTHON_FRAME.match(text):
                skip_frame = True                # drop up to the next frame header
                continue
            header = _frame_header(text, code_lines, _arrow_text(lines, index))
            if header is not None:
                skip_frame = False
                kept.append(header)
            elif skip_frame and text.strip() and not text.startswith(" "):
                skip_frame = False               # the error line that ends the traceback
                kept.append(clean_message(raw, code))
            elif skip_frame or RULE.match(text.strip()):
                continue
            else:
                kept.append(clean_message(raw, code) if index == len(lines) - 1 else raw)
        if any(plain(line).strip() for line in kept) or part == "":
            cleaned.append("\n".join(kept))
    return tuple(cleaned)


def learner_line(output: Output, code: str) -> int | None:
    """The line of the learner's code an error points at: its deepest frame in their code, or
    the line a SyntaxError names; None for other outputs and errors outside their code. Kept in
    the trace, so course authors can group an exercise's failures by line."""
    if output.output_type != "error":
        return None
    code_lines = code.split("\n")
    deepest = None
    for part in output.traceback:
        lines = part.split("\n")
        for index, raw in enumerate(lines):
            match = CELL_FRAME.match(plain(raw)) or TEMP_FRAME.match(plain(raw))
            if match is None:
                continue
            line = int(match["line"])
            if _where(line, code_lines, _arrow_text(lines, index)).endswith("of your code"):
                deepest = line
    if deepest is None:
        named = TEMP_IN_MESSAGE.search(output.evalue or "")
        deepest = int(named["line"]) if named else None
    return deepest


def clean_message(text: str, code: str) -> str:
    """A SyntaxError's '(123.py, line 2)' becomes '(line 2 of your code)'."""
    return TEMP_IN_MESSAGE.sub(lambda m: f"(line {m['line']} of your code)", text)


def clean_output(output: Output, code: str) -> Output:
    """One output as the learner sees it; only errors and stderr change."""
    if output.output_type == "error":
        return dataclasses.replace(output, evalue=clean_message(output.evalue or "", code),
                                   traceback=clean_traceback(output.traceback, code))
    if output.output_type == "stream" and output.name == "stderr" and output.text:
        # Printed tracebacks (traceback.print_exc()): only their frame headers change.
        code_lines = code.split("\n")
        return dataclasses.replace(output, text="\n".join(
            _frame_header(plain(line), code_lines, None) or line
            for line in output.text.split("\n")))
    return output


def server_interrupt(output: Output) -> bool:
    """The KeyboardInterrupt a stop by the server leaves (shown only if the learner pressed it)."""
    return output.output_type == "error" and output.ename == "KeyboardInterrupt"


def stopped_by_server(result: RunResult) -> bool:
    """The server interrupted the run itself: its time or output limit was reached."""
    return result.status is RunStatus.LIMIT and result.limit in (LimitHit.TIMEOUT, LimitHit.OUTPUT)


def for_learner(result: RunResult, code: str, timeout: float) -> RunResult:
    """The result the lesson page shows: clean outputs, plain words for a timeout."""
    stopped = stopped_by_server(result)
    outputs = tuple(clean_output(o, code) for o in result.outputs
                    if not (stopped and server_interrupt(o)))
    message = result.message
    if result.status is RunStatus.LIMIT and result.limit is LimitHit.TIMEOUT:
        message = _timeout_message(message or "", timeout)
    return dataclasses.replace(result, outputs=outputs, message=message)


# kernels.fold's words for a timeout, maybe followed by what happened to the kernel
FOLD_TIMEOUT = re.compile(r"^Stopped after (?P<seconds>[\d.]+) s[.;]?\s*(?P<tail>.*)$", re.S)


def _timeout_message(message: str, timeout: float) -> str:
    """Plain words for the time limit, keeping the note that a fresh kernel was started."""
    match = FOLD_TIMEOUT.match(message)
    if match is None:
        return timeout_words(timeout)
    tail = match["tail"].strip()
    if tail:
        tail = " " + tail[0].upper() + tail[1:] + ("" if tail.endswith(".") else ".")
    return timeout_words(float(match["seconds"])) + tail
