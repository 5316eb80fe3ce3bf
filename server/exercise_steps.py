"""What one exercise run executes and how its verdict is reached: pure, on values.

A run is up to three executions in the learner's kernel: the author's hidden
setup, the learner's code (the only one whose outputs the learner sees), and
for a "tests" check the author's hidden tests. Only the learner's outputs are
streamed; setup and tests report through the verdict.
"""
from __future__ import annotations

import dataclasses
import enum

from kernels.result import RunResult, RunStatus
from server.course.grade import Verdict, grade
from server.course.model import CheckKind, Exercise


class StepKind(str, enum.Enum):
    SETUP = "setup"
    LEARNER = "learner"
    TESTS = "tests"


@dataclasses.dataclass(frozen=True)
class Step:
    kind: StepKind
    code: str

    @property
    def visible(self) -> bool:
        return self.kind is StepKind.LEARNER


def plan(exercise: Exercise, code: str) -> tuple[Step, ...]:
    steps = []
    if exercise.setup.strip():
        steps.append(Step(StepKind.SETUP, exercise.setup))
    steps.append(Step(StepKind.LEARNER, code))
    if exercise.check.kind is CheckKind.TESTS:
        steps.append(Step(StepKind.TESTS, exercise.check.code or ""))
    return tuple(steps)


def should_continue(step: Step, result: RunResult) -> bool:
    """Tests only run on code that ran to the end; a broken setup stops everything."""
    return result.status is RunStatus.OK


def judge(exercise: Exercise, results: dict[StepKind, RunResult]) -> Verdict:
    setup = results.get(StepKind.SETUP)
    if setup is not None and setup.status is not RunStatus.OK:
        detail = setup.message or (setup.error.ename if setup.error else setup.status.value)
        return Verdict(False, f"This exercise's hidden setup failed ({detail}); "
                              "please tell the course author.")
    learner = results.get(StepKind.LEARNER)
    if learner is None:
        return Verdict(False, "Your code did not run.")
    tests = results.get(StepKind.TESTS)
    if exercise.check.kind is CheckKind.TESTS and learner.status is RunStatus.OK and tests is not None:
        return grade(exercise.check, tests)
    return grade(exercise.check, learner)
