"""The pure part of an exercise run: which steps run, and how the verdict is reached."""
from __future__ import annotations

from kernels.result import Output, RunResult, RunStatus
from server.course.model import Check, CheckKind, Exercise
from server.learning.exercise_steps import StepKind, check_plan, judge, plan, should_continue

OUTPUT = Exercise(id="hello", title="Hello", language="python", starter="",
                  check=Check(CheckKind.OUTPUT, expected="hello\n"))
TESTS = Exercise(id="add", title="Add", language="python", starter="", setup="import math",
                 check=Check(CheckKind.TESTS, code="assert add(2, 3) == 5, 'add(2, 3) should be 5'"))


def ok(stdout: str = "") -> RunResult:
    return RunResult(RunStatus.OK, outputs=(Output("stream", name="stdout", text=stdout),))


def failed(ename: str, evalue: str) -> RunResult:
    return RunResult(RunStatus.ERROR, outputs=(Output("error", ename=ename, evalue=evalue),))


def test_output_check_is_one_visible_step():
    steps = plan(OUTPUT, "print('hello')")
    assert [(s.kind, s.code, s.visible) for s in steps] == [(StepKind.LEARNER, "print('hello')", True)]


def test_tests_never_run_in_the_learners_kernel_but_in_a_fresh_one():
    code = "def add(a, b): return a + b"
    steps = plan(TESTS, code)
    assert [(s.kind, s.visible) for s in steps] == [(StepKind.SETUP, False), (StepKind.LEARNER, True)]
    check = check_plan(TESTS, code, {StepKind.SETUP: ok(), StepKind.LEARNER: ok()})
    assert [(s.kind, s.code, s.visible) for s in check] == [
        (StepKind.SETUP, "import math", False), (StepKind.REPLAY, code, False),
        (StepKind.TESTS, TESTS.check.code, False)]
    assert check_plan(TESTS, code, {StepKind.LEARNER: failed("NameError", "x")}) == ()
    assert check_plan(OUTPUT, "print('hello')", {StepKind.LEARNER: ok("hello\n")}) == ()


def test_a_failed_step_stops_the_rest():
    assert should_continue(plan(TESTS, "")[0], ok())
    assert not should_continue(plan(TESTS, "")[1], failed("NameError", "x"))


def test_verdict_comes_from_the_hidden_tests_in_the_fresh_kernel():
    mine = {StepKind.SETUP: ok(), StepKind.LEARNER: ok()}
    passed = judge(TESTS, mine, {StepKind.SETUP: ok(), StepKind.REPLAY: ok(), StepKind.TESTS: ok()})
    assert passed.passed
    wrong = judge(TESTS, mine, {StepKind.SETUP: ok(), StepKind.REPLAY: ok(),
                                StepKind.TESTS: failed("AssertionError", "add(2, 3) should be 5")})
    assert not wrong.passed and "add(2, 3) should be 5" in wrong.message
    unchecked = judge(TESTS, mine, {})
    assert not unchecked.passed and "could not be checked" in unchecked.message


def test_code_that_needs_an_earlier_run_fails_from_a_fresh_start_and_says_why():
    verdict = judge(TESTS, {StepKind.LEARNER: ok()},
                    {StepKind.REPLAY: failed("NameError", "name 'helper' is not defined")})
    assert not verdict.passed and "fresh start" in verdict.message and "helper" in verdict.message
    in_tests = judge(TESTS, {StepKind.LEARNER: ok()},
                     {StepKind.REPLAY: ok(), StepKind.TESTS: failed("NameError", "name 'helper'")})
    assert not in_tests.passed and "fresh start" in in_tests.message and "helper" in in_tests.message


def test_a_learner_error_fails_without_tests():
    verdict = judge(TESTS, {StepKind.SETUP: ok(), StepKind.LEARNER: failed("SyntaxError", "bad")})
    assert not verdict.passed


def test_a_broken_setup_blames_the_author_not_the_learner():
    verdict = judge(TESTS, {StepKind.SETUP: failed("ImportError", "no module")})
    assert not verdict.passed and "course author" in verdict.message
    fresh = judge(TESTS, {StepKind.LEARNER: ok()}, {StepKind.SETUP: failed("ImportError", "x")})
    assert not fresh.passed and "course author" in fresh.message


def test_output_check_compares_stdout():
    assert judge(OUTPUT, {StepKind.LEARNER: ok("hello\n")}).passed
    assert not judge(OUTPUT, {StepKind.LEARNER: ok("bye\n")}).passed
