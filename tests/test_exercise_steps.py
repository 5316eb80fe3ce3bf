"""The pure part of an exercise run: which steps run, and how the verdict is reached."""
from __future__ import annotations

from kernels.result import Output, RunResult, RunStatus
from server.course.model import Check, CheckKind, Exercise
from server.exercise_steps import StepKind, judge, plan, should_continue

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


def test_tests_check_runs_hidden_setup_then_learner_then_hidden_tests():
    steps = plan(TESTS, "def add(a, b): return a + b")
    assert [s.kind for s in steps] == [StepKind.SETUP, StepKind.LEARNER, StepKind.TESTS]
    assert [s.visible for s in steps] == [False, True, False]
    assert steps[2].code == TESTS.check.code


def test_a_failed_step_stops_the_rest():
    assert should_continue(plan(TESTS, "")[0], ok())
    assert not should_continue(plan(TESTS, "")[1], failed("NameError", "x"))


def test_verdict_comes_from_the_hidden_tests_when_the_learner_code_ran():
    passed = judge(TESTS, {StepKind.SETUP: ok(), StepKind.LEARNER: ok(), StepKind.TESTS: ok()})
    assert passed.passed
    wrong = judge(TESTS, {StepKind.SETUP: ok(), StepKind.LEARNER: ok(),
                          StepKind.TESTS: failed("AssertionError", "add(2, 3) should be 5")})
    assert not wrong.passed and "add(2, 3) should be 5" in wrong.message


def test_a_learner_error_fails_without_tests():
    verdict = judge(TESTS, {StepKind.SETUP: ok(), StepKind.LEARNER: failed("SyntaxError", "bad")})
    assert not verdict.passed


def test_a_broken_setup_blames_the_author_not_the_learner():
    verdict = judge(TESTS, {StepKind.SETUP: failed("ImportError", "no module")})
    assert not verdict.passed and "course author" in verdict.message


def test_output_check_compares_stdout():
    assert judge(OUTPUT, {StepKind.LEARNER: ok("hello\n")}).passed
    assert not judge(OUTPUT, {StepKind.LEARNER: ok("bye\n")}).passed
