"""Verdicts on runs: output comparison, hidden tests, and runs that did not finish."""
from __future__ import annotations

import pytest

from kernels.result import LimitHit, Output, RunResult, RunStatus
from server.course.grade import Verdict, grade, normalize_output
from server.course.model import Check, CheckKind

OUTPUT = Check(CheckKind.OUTPUT, expected="1\n2\n3\n")
TESTS = Check(CheckKind.TESTS, code="assert total([1]) == 1")


def printed(*texts: str, name: str = "stdout") -> RunResult:
    return RunResult(RunStatus.OK, tuple(Output("stream", name=name, text=t) for t in texts))


def failed(ename: str, evalue: str, *outputs: Output) -> RunResult:
    return RunResult(RunStatus.ERROR, (*outputs, Output("error", ename=ename, evalue=evalue)))


def test_output_matches_ignoring_trailing_whitespace():
    assert grade(OUTPUT, printed("1  \n2", "\n3\n\n\n")) == Verdict(True, "Correct: the output matches.")
    assert normalize_output("a \t\n b\n\n") == "a\n b"


def test_output_mismatch_names_the_first_differing_line():
    verdict = grade(OUTPUT, printed("1\n5\n3\n"))
    assert not verdict.passed
    assert verdict.message == "Line 2 of the output differs.\n  expected: '2'\n  got:      '5'"


def test_leading_whitespace_and_stderr_count_as_they_should():
    assert not grade(OUTPUT, printed(" 1\n2\n3\n")).passed
    # Only stdout is compared: warnings on stderr do not spoil a right answer.
    assert grade(OUTPUT, RunResult(RunStatus.OK, (Output("stream", name="stdout", text="1\n2\n3\n"),
                                                  Output("stream", name="stderr", text="warn\n")))).passed


def test_missing_and_extra_lines():
    assert grade(OUTPUT, printed("1\n2\n")).message.endswith("expected: '3'\n  got:      (no more lines)")
    assert grade(OUTPUT, printed("1\n2\n3\n4\n")).message.endswith("expected: (no more lines)\n  got:      '4'")
    assert grade(OUTPUT, printed(" \n\n")) == Verdict(False, "Your code printed nothing. Expected:\n1\n2\n3")


def test_tests_pass_when_the_test_run_raised_nothing():
    assert grade(TESTS, printed("anything")) == Verdict(True, "All checks passed.")


def test_a_failed_assertion_message_is_the_feedback():
    assert grade(TESTS, failed("AssertionError", "total([1]) should be 1")) == \
        Verdict(False, "total([1]) should be 1")
    assert grade(TESTS, failed("AssertionError", "")).message == "A check failed (the test gave no message)."


@pytest.mark.parametrize("check", [OUTPUT, TESTS])
def test_errors_and_limits_fail_with_the_runs_message(check):
    assert grade(check, failed("NameError", "name 'total' is not defined")) == \
        Verdict(False, "NameError: name 'total' is not defined")
    limit = RunResult(RunStatus.LIMIT, (Output("stream", name="stdout", text="1\n2\n3\n"),),
                      limit=LimitHit.TIMEOUT, message="Your code ran longer than 10 seconds and was stopped.")
    assert grade(check, limit) == Verdict(False, "Your code ran longer than 10 seconds and was stopped.")
    assert grade(check, RunResult(RunStatus.DIED)) == Verdict(False, "The run ended with status died.")


def test_an_assertion_in_an_output_exercise_is_an_error_by_name():
    assert grade(OUTPUT, failed("AssertionError", "mine")).message == "AssertionError: mine"


def test_a_kernel_without_exception_names_falls_back_to_the_last_printed_line():
    # bash_kernel reports a failing command as an error with no name and the exit code as value.
    result = failed("", "1", Output("stream", name="stdout", text="GREETING should be 'hello', it is ''\n"))
    assert grade(TESTS, result).message == "GREETING should be 'hello', it is ''"
    assert grade(TESTS, failed("", "2")).message == "The code failed (2)."
