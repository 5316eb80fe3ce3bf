"""What one exercise run executes and how its verdict is reached: pure, on values.

A run executes in the learner's kernel the author's hidden setup and then the
learner's code (the only step whose outputs the learner sees). A "tests"
check is not run there: code the learner ran earlier in that kernel could have
installed hooks that read or defeat hidden tests. The check runs in a fresh
kernel instead: the setup, the learner's code again (outputs discarded, the
same answers to input()), then the hidden tests. So each exercise must stand
on its own, which `lessons check --run` proves for every bundled exercise.
"""
from __future__ import annotations

import dataclasses
import enum
import re

from kernels.result import RunLimits, RunResult, RunStatus
from server.course.grade import Verdict, grade
from server.course.model import CheckKind, Exercise


class StepKind(str, enum.Enum):
    SETUP = "setup"
    LEARNER = "learner"
    REPLAY = "replay"        # the learner's code again, in the fresh kernel of the check
    TESTS = "tests"


@dataclasses.dataclass(frozen=True)
class Step:
    kind: StepKind
    code: str

    @property
    def visible(self) -> bool:
        return self.kind is StepKind.LEARNER


def run_limits(host: RunLimits, exercise: Exercise) -> RunLimits:
    """The host's limits for the lesson's kernel, with the exercise's own timeout and memory where
    it sets them (the parser has kept them within the host's bounds; a plugin's stricter limit
    still wins)."""
    own = exercise.settings
    return dataclasses.replace(
        host, timeout=min(host.timeout, own.timeout) if own.timeout else host.timeout,
        memory_mb=min(host.memory_mb, own.memory_mb) if own.memory_mb else host.memory_mb)


def plan(exercise: Exercise, code: str) -> tuple[Step, ...]:
    """The steps in the learner's own kernel."""
    steps = []
    if exercise.setup.strip():
        steps.append(Step(StepKind.SETUP, exercise.setup))
    steps.append(Step(StepKind.LEARNER, code))
    return tuple(steps)


def check_plan(exercise: Exercise, code: str,
               results: dict[StepKind, RunResult]) -> tuple[Step, ...]:
    """The steps of the check in a fresh kernel; none when there is nothing to check there."""
    learner = results.get(StepKind.LEARNER)
    if exercise.check.kind is not CheckKind.TESTS or learner is None \
            or learner.status is not RunStatus.OK:
        return ()
    steps = []
    if exercise.setup.strip():
        steps.append(Step(StepKind.SETUP, exercise.setup))
    steps.append(Step(StepKind.REPLAY, code))
    steps.append(Step(StepKind.TESTS, exercise.check.code or ""))
    return tuple(steps)


def should_continue(step: Step, result: RunResult) -> bool:
    """Tests only run on code that ran to the end; a broken setup stops everything."""
    return result.status is RunStatus.OK


def judge(exercise: Exercise, results: dict[StepKind, RunResult],
          checked: dict[StepKind, RunResult] | None = None) -> Verdict:
    """`results` from the learner's kernel, `checked` from the fresh kernel of a tests check."""
    checked = checked or {}
    for setup in (results.get(StepKind.SETUP), checked.get(StepKind.SETUP)):
        if setup is not None and setup.status is not RunStatus.OK:
            detail = setup.message or (setup.error.ename if setup.error else setup.status.value)
            return Verdict(False, f"This exercise's hidden setup failed ({detail}); "
                                  "please tell the course author.")
    learner = results.get(StepKind.LEARNER)
    if learner is None:
        return Verdict(False, "Your code did not run.")
    if learner.status is not RunStatus.OK or exercise.check.kind is not CheckKind.TESTS:
        return grade(exercise.check, learner)
    replay = checked.get(StepKind.REPLAY)
    if replay is not None and replay.status is not RunStatus.OK:
        error = replay.error
        detail = replay.message or (f"{error.ename}: {error.evalue}" if error else "it failed")
        return Verdict(False, f"Your code failed when it was checked from a fresh start ({detail}). "
                              "Each exercise is checked on its own: define everything it uses "
                              "in its own code.")
    tests = checked.get(StepKind.TESTS)
    if tests is None:
        return Verdict(False, "Your code could not be checked this time; please run it again.")
    verdict = grade(exercise.check, tests)
    if not verdict.passed and _missing_from_learner(tests, exercise.check.code or ""):
        return Verdict(False, f"{verdict.message} (the check runs your code from a fresh start: "
                              "define everything it uses in its own code)")
    return verdict


def _missing_from_learner(tests: RunResult, test_code: str) -> bool:
    """A NameError for a name the tests do not mention: something the learner's code used
    from an earlier run (a name the tests themselves misspell is the author's mistake)."""
    error = tests.error
    if error is None or error.ename != "NameError":
        return False
    match = re.search(r"name '([^']+)'", error.evalue or "")
    return bool(match) and re.search(rf"\b{re.escape(match.group(1))}\b", test_code) is None
