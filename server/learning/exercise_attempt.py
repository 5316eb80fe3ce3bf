"""One attempt at an exercise: the steps in the learner's kernel, then the check in a fresh one.

The shell around `exercise_steps` (pure) that both the lesson page's runner
and `lessons check --run` use, so an author's rehearsal is judged exactly as
a learner's run. The learner's answers to input() are recorded and given
again when the check replays the code.
"""
from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from kernels.manager import KernelManager
from kernels.session import OnOutput
from kernels.pool import CapacityError
from kernels.quotas import Tier
from kernels.result import RunLimits, RunResult
from kernels.sandbox import SandboxError
from server.learning import exercise_steps
from server.course.grade import Verdict
from server.course.model import CheckKind, Exercise
from server.learning.exercise_steps import Step, StepKind

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

    # The check's kernel is had while the learner's code runs, so the two waits overlap.
    checker = asyncio.create_task(_checker(manager, plugin, owner)) \
        if exercise.check.kind is CheckKind.TESTS else None
    limits = exercise_steps.run_limits(manager.limits(plugin), exercise)
    try:
        results = await _steps(manager, kernel_id, exercise_steps.plan(exercise, code), limits,
                               on_output, answer if on_input is not None else None)
    except BaseException:
        _discard(manager, checker)
        raise
    checked: dict[StepKind, RunResult] = {}
    steps = exercise_steps.check_plan(exercise, code, results)
    if steps and checker is not None:
        checked = await _check(manager, await checker, steps, limits, answers, watch)
    else:
        _discard(manager, checker)
    return Attempt(results, checked, exercise_steps.judge(exercise, results, checked))


async def _steps(manager: KernelManager, kernel_id: str, steps: tuple[Step, ...], limits: RunLimits,
                 on_output: OnOutput | None, on_input: OnInput | None) -> dict[StepKind, RunResult]:
    results: dict[StepKind, RunResult] = {}
    for step in steps:
        # Hidden steps stay out of the kernel's history (In, _ih, history_request).
        results[step.kind] = result = await manager.execute(
            kernel_id, step.code, limits, on_output=on_output if step.visible else None,
            on_input=on_input if step.kind in (StepKind.LEARNER, StepKind.REPLAY) else None,
            store_history=step.visible)
        if not exercise_steps.should_continue(step, result):
            break
    return results


async def _checker(manager: KernelManager, plugin: str, owner: str) -> str | None:
    """A fresh kernel for one check, or None when none can be had now."""
    try:
        return (await manager.start(f"check:{owner}", plugin, Tier.EXEMPT)).id
    except (CapacityError, SandboxError):
        return None


def _discard(manager: KernelManager, checker: asyncio.Task | None) -> None:
    """Remove an unused check kernel in the background (also once its start finishes)."""
    if checker is None:
        return

    def done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is None and task.result() is not None:
            manager.release(task.result(), "check not needed")

    checker.add_done_callback(done)


async def _check(manager: KernelManager, kernel_id: str | None, steps: tuple[Step, ...],
                 limits: RunLimits, answers: list[str], watch: Watch | None) -> dict[StepKind, RunResult]:
    """The check's steps in a kernel of its own, removed afterwards; {} when none was had."""
    if kernel_id is None:
        return {}
    replayed = iter(answers)

    async def again(prompt: str, password: bool) -> str:
        return next(replayed, "")

    if watch is not None:
        watch(kernel_id, True)
    try:
        return await _steps(manager, kernel_id, steps, limits, None, again)
    finally:
        if watch is not None:
            watch(kernel_id, False)
        manager.release(kernel_id, "check finished")   # the verdict need not wait for removal
