"""The verdict on one run: passed or not, and a message in plain words. Pure.

For an output check the run is the learner's; for a tests check it is the run
of the hidden tests (after the learner's code ran to the end). A run that did
not end OK fails with what stopped it.
"""
from __future__ import annotations

import dataclasses

from kernels.result import RunResult, RunStatus
from server.course.model import Check, CheckKind

PASSED_OUTPUT = "Correct: the output matches."
PASSED_TESTS = "All checks passed."


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    message: str


def normalize_output(text: str) -> str:
    """Trailing spaces on each line and trailing blank lines do not count."""
    return "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def grade(check: Check, result: RunResult) -> Verdict:
    if result.status is not RunStatus.OK:
        return Verdict(False, _stopped(check, result))
    if check.kind is CheckKind.TESTS:
        return Verdict(True, PASSED_TESTS)
    return _compare(normalize_output(check.expected or ""), normalize_output(result.stdout))


def _compare(expected: str, got: str) -> Verdict:
    if expected == got:
        return Verdict(True, PASSED_OUTPUT)
    if not got:
        return Verdict(False, f"Your code printed nothing. Expected:\n{expected}")
    want_lines, got_lines = expected.split("\n"), got.split("\n") if got else []
    for number in range(max(len(want_lines), len(got_lines))):
        want = want_lines[number] if number < len(want_lines) else None
        have = got_lines[number] if number < len(got_lines) else None
        if want != have:
            return Verdict(False, f"Line {number + 1} of the output differs.\n"
                                  f"  expected: {_show(want)}\n  got:      {_show(have)}")
    raise AssertionError("unreachable: the outputs differ, so some line does")


def _show(line: str | None) -> str:
    return "(no more lines)" if line is None else repr(line)


def _stopped(check: Check, result: RunResult) -> str:
    if result.message:  # a limit or a dead kernel, already in plain words
        return result.message
    error = result.error
    if error is None:
        return f"The run ended with status {result.status.value}."
    if error.ename == "AssertionError" and check.kind is CheckKind.TESTS:
        return error.evalue or "A check failed (the test gave no message)."
    if error.ename:
        return f"{error.ename}: {error.evalue}" if error.evalue else error.ename
    # Kernels without exceptions (bash) say little in the error; what the code printed
    # last says more (bash_kernel merges stderr into stdout).
    printed = [line for o in result.outputs if o.output_type == "stream"
               for line in (o.text or "").splitlines() if line.strip()]
    return printed[-1] if printed else f"The code failed ({error.evalue or 'no detail'})."
