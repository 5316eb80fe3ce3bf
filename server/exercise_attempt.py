"""One attempt at an exercise: the steps in the learner's kernel, then the check in a fresh one.

The shell around `exercise_steps` (pure) that both the lesson page's runner
and `lessons check --run` use, so an author's rehearsal is judged exactly as
a learner's run. The learner's answers to input() are recorded and given
again when the check replays the code.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from kernels.manager import KernelManager
from kernels.pool import CapacityError
from kernels.quotas import Tier
from kernels.result import Output, RunResult
from kernels.sandbox import SandboxError
from server import exercise_steps
from server.course.grade import Verdict
from server.course.model import Exercise
from server.exercise_steps import Step, StepKind

OnOutput = Callable[[Output], Awaitable[None]]
OnInput = Callable[[str, bool], Awaitable[str]]
Watch = Callable[[str, bool], None]      # (kernel id, True on attach / False on detach)


@dataclasses.dataclass(frozen=True)
class Attempt:
    results: dict[StepKind, RunResult]   # in the learner's kernel
    checked: dict[StepKind, RunResult]   # in the fresh kernel of a tests check
    verdict: Verdict


async def attempt(manager: KernelManager, kernel_id: str, plugin: str, exercise: Exercise,
                  code: str, *, owner: str, on_output: OnOutput | None = None,
                  on_input: OnInput | None = None, watch: Watch | None = None) -> Attempt:
    answers: list[str] = []

    async def answer(prompt: str, password: bool) -> str:
        value = await on_input(prompt, password) if on_input is not None else ""
        answers.append(value)
        return value

    results = await _steps(manager, kernel_id, exercise_steps.plan(exercise, code),
                           on_output, answer if on_input is not None else None)
    checked: dict[StepKind, RunResult] = {}
    steps = exercise_steps.check_plan(exercise, code, results)
    if steps:
        checked = await _check(manager, plugin, steps, owner, answers, watch)
    return Attempt(results, checked, exercise_steps.judge(exercise, results, checked))


async def _steps(manager: KernelManager, kernel_id: str, steps: tuple[Step, ...],
                 on_output: OnOutput | None, on_input: OnInput | None) -> dict[StepKind, RunResult]:
    results: dict[StepKind, RunResult] = {}
    for step in steps:
        # Hidden steps stay out of the kernel's history (In, _ih, history_request).
        results[step.kind] = result = await manager.execute(
            kernel_id, step.code, on_output=on_output if step.visible else None,
            on_input=on_input if step.kind in (StepKind.LEARNER, StepKind.REPLAY) else None,
            store_history=step.visible)
        if not exercise_steps.should_continue(step, result):
            break
    return results


async def _check(manager: KernelManager, plugin: str, steps: tuple[Step, ...], owner: str,
                 answers: list[str], watch: Watch | None) -> dict[StepKind, RunResult]:
    """The check's steps in a kernel of its own, removed afterwards; {} when none can be had."""
    try:
        kernel = await manager.start(f"check:{owner}", plugin, Tier.EXEMPT)
    except (CapacityError, SandboxError):
        return {}
    replayed = iter(answers)

    async def again(prompt: str, password: bool) -> str:
        return next(replayed, "")

    if watch is not None:
        watch(kernel.id, True)
    try:
        return await _steps(manager, kernel.id, steps, None, again)
    finally:
        if watch is not None:
            watch(kernel.id, False)
        await manager.shutdown(kernel.id, "check finished")
