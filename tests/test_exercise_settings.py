"""Per-exercise settings: the parser reads timeout, memory and reveal from the fence or the front
matter within the host's bounds (or refuses the lesson at the line); a real Docker run is cut
at the exercise's own time limit with the plain message, and real Docker and local kernels are
held to an exercise's own memory limit and given the host's back for the next exercise."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest

from kernels.local_sandbox import AS_HEADROOM_MB
from kernels.manager import KernelManager, memory_change
from kernels.plugins import discover
from kernels.quotas import Tier
from kernels.result import LimitHit, RunLimits, RunStatus
from kernels.sandbox import create_sandbox
from server.course.model import Bounds, ExerciseSettings
from server.course.notebook import read_notebook
from server.course.parse import read_lesson
from server.learning.exercise_attempt import attempt
from server.learning.exercise_steps import StepKind, run_limits
from server.learning import messages
from tests import services

KERNELS = frozenset({"python"})
BOUNDS = Bounds(timeout=10, memory_mb=256)


def lesson(fence: str = "", header: str = "", solution: bool = True) -> str:
    return (f"---\ntitle: T\nkernel: python\n{header}---\n"
            f"```python exercise id=loop {fence}\n"
            "x = 1\n"
            "# --- expected output ---\n"
            "1\n"
            + ("# --- solution ---\nprint(1)\n" if solution else "")
            + "```\n")


def settings(text: str) -> ExerciseSettings:
    parsed = read_lesson(text, "c/t.md", KERNELS, bounds=BOUNDS)
    assert parsed.errors == (), parsed.errors
    return parsed.lesson.exercises[0].settings


def errors(text: str) -> list[str]:
    return [str(error) for error in read_lesson(text, "c/t.md", KERNELS, bounds=BOUNDS).errors]


@pytest.mark.parametrize("fence, expected", [
    ("", ExerciseSettings()),
    ("timeout=3", ExerciseSettings(timeout=3.0)),
    ("timeout=2.5s memory=128M reveal=2", ExerciseSettings(2.5, 128, 2)),
    ("memory=64MiB", ExerciseSettings(memory_mb=64)),
    ("timeout=10 memory=256", ExerciseSettings(10.0, 256)),     # the bounds themselves
])
def test_the_fence_gives_an_exercise_its_own_settings(fence, expected):
    assert settings(lesson(fence)) == expected


def test_the_front_matter_gives_every_exercise_defaults_and_the_fence_wins():
    header = "timeout: 4\nmemory: 100\nreveal: 5\n"
    assert settings(lesson("", header)) == ExerciseSettings(4.0, 100, 5)
    assert settings(lesson("timeout=2 reveal=1", header)) == ExerciseSettings(2.0, 100, 1)
    # a lesson-wide reveal concerns only the exercises that have a solution to show
    assert settings(lesson("", header, solution=False)) == ExerciseSettings(4.0, 100, None)


@pytest.mark.parametrize("text, expected", [
    (lesson("timeout=30"), "c/t.md:5: timeout 30 s is beyond this server's limit of 10 s "
                           "(LS_RUN_TIMEOUT) (exercise 'loop')"),
    (lesson("memory=4096"), "c/t.md:5: memory 4096 MiB is beyond this server's limit of 256 MiB "
                            "(LS_MEMORY_MB) (exercise 'loop')"),
    (lesson("timeout=soon"), "c/t.md:5: bad timeout 'soon': write seconds, like timeout=5 or 2.5s "
                             "(exercise 'loop')"),
    (lesson("memory=8"), "c/t.md:5: bad memory '8': write MiB, 32 or more, like memory=128 or 128M "
                         "(exercise 'loop')"),
    (lesson("reveal=0"), "c/t.md:5: bad reveal '0': write the number of attempts after which the "
                         "solution may be shown, like reveal=3 (exercise 'loop')"),
    (lesson("reveal=2", solution=False), "c/t.md:5: reveal=2 shows the solution, but there is none "
                                         "(exercise 'loop') (add a `# --- solution ---` section)"),
    (lesson("", "order: 1\ntimeout: 11\n"), "c/t.md:5: timeout 11 s is beyond this server's limit "
                                             "of 10 s (LS_RUN_TIMEOUT)"),
    (lesson("timout=3"), "c/t.md:5: bad exercise field 'timout=3': use id=<id>, title=\"...\", "
                         "starter=passes, timeout=<seconds>, memory=<MiB> or reveal=<attempts> "
                         "(did you mean `timeout`?)"),
])
def test_settings_beyond_the_host_or_malformed_refuse_the_lesson_at_their_line(text, expected):
    assert errors(text) == [expected]


def test_the_run_limits_are_the_hosts_with_the_exercises_own():
    parsed = read_lesson(lesson("timeout=3 memory=64"), "c/t.md", KERNELS, bounds=BOUNDS)
    exercise = parsed.lesson.exercises[0]
    host = RunLimits(timeout=10, memory_mb=256, output_bytes=1000)
    assert run_limits(host, exercise) == RunLimits(timeout=3, memory_mb=64, output_bytes=1000)
    # a plugin's stricter limit still wins over the exercise's
    assert run_limits(RunLimits(timeout=2, memory_mb=48), exercise).timeout == 2
    plain = read_lesson(lesson(), "c/t.md", KERNELS).lesson.exercises[0]
    assert run_limits(host, plain) == host


@pytest.mark.docker
async def test_a_docker_run_is_cut_at_the_exercises_own_time_limit(make_settings):
    services.ensure_docker()
    endless = read_lesson(lesson("timeout=2"), "c/t.md", KERNELS, bounds=BOUNDS).lesson.exercises[0]
    settings = make_settings(LS_SANDBOX="docker", LS_RUN_TIMEOUT="10")
    sandbox = create_sandbox(settings)
    manager = KernelManager(settings, sandbox, discover())
    await manager.startup()
    try:
        kernel = await manager.start("limits-test", "python", Tier.EXEMPT)
        code = "while True:\n    pass\n"
        started = time.monotonic()
        done = await attempt(manager, kernel.id, "python", endless, code, owner="limits-test")
        took = time.monotonic() - started
        result = done.results[StepKind.LEARNER]
        assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.TIMEOUT)
        assert 2 <= took < 8, took          # the host's 10 s never came into it
        shown = messages.for_learner(result, code, run_limits(manager.limits("python"), endless).timeout)
        assert shown.message.startswith("Your code ran longer than 2 s, so it was stopped. "
                                        "Is there an endless loop?"), shown.message
        assert not any("KeyboardInterrupt" in str(o.to_json()) for o in shown.outputs)
        assert not done.verdict.passed
    finally:
        await manager.close()
        await sandbox.close()


def test_the_solution_opens_after_the_attempts_reveal_asks_for():
    from server.learning.reveal import refusal
    exercise = read_lesson(lesson("reveal=2"), "c/t.md", KERNELS).lesson.exercises[0]
    assert refusal(exercise, 0) == "The solution opens after 2 attempts: 2 more to go."
    assert refusal(exercise, 1) == "The solution opens after 2 attempts: 1 more to go."
    assert refusal(exercise, 2) is None and refusal(exercise, 5) is None
    never = read_lesson(lesson(), "c/t.md", KERNELS).lesson.exercises[0]
    assert refusal(never, 99) == "This exercise does not show its solution."


# --- memory: the exercise's own limit is set on the running kernel --------------------------

@pytest.mark.parametrize("started, current, wanted, change", [
    (512, None, 512, None),          # a fresh kernel already has the host's limit
    (512, None, 64, 64),             # an exercise's own: lowered
    (512, 64, 64, None),             # the same exercise again: nothing to do
    (512, 64, 512, 512),             # the next exercise has none: back to the host's
    (512, 64, 128, 128),
    (256, None, 512, None),          # never above the limit of the kernel's start
    (256, 64, 512, 256),
])
def test_a_kernel_is_given_the_runs_memory_limit_only_when_it_differs(started, current, wanted,
                                                                      change):
    assert memory_change(started, current, wanted) == change


MEMORY_BOUNDS = Bounds(timeout=10, memory_mb=512)


def two_exercises() -> tuple:
    """One with memory=64 and one without, each with hidden tests that allocate `size` bytes
    (so the check's fresh kernel is held to the exercise's limit too)."""
    tests = "# --- tests ---\nassert len(ALLOC) == size\n"
    text = ("---\ntitle: T\nkernel: python\n---\n"
            f"```python exercise id=small memory=64\nsize = 0\n{tests}```\n\n"
            f"```python exercise id=plain\nsize = 0\n{tests}```\n")
    parsed = read_lesson(text, "c/t.md", KERNELS, bounds=MEMORY_BOUNDS)
    assert parsed.errors == (), parsed.errors
    return parsed.lesson.exercises


async def exercise_memory_is_enforced(settings, alloc: str, size_mb: int) -> None:
    """`alloc` makes `size` bytes that count against the sandbox's limit."""
    small, plain = (dataclasses.replace(ex, check=dataclasses.replace(
        ex.check, code=ex.check.code.replace("ALLOC", alloc))) for ex in two_exercises())
    big = f"size = {size_mb} * 2**20\n"
    uses = f"{big}print(len({alloc}))\n"     # freed at once: the check's replay allocates it too
    sandbox = create_sandbox(settings)
    manager = KernelManager(settings, sandbox, discover())
    await manager.startup()
    try:
        kernel = (await manager.start("memory-test", "python", Tier.EXEMPT)).id

        async def run(exercise, code):
            return await attempt(manager, kernel, "python", exercise, code, owner="memory-test")

        assert (await run(small, "size = 1000\n")).verdict.passed       # lowered, and fits
        assert (await run(plain, big)).verdict.passed                   # raised back: fits
        checked = (await run(small, big)).checked[StepKind.TESTS]       # the check's own kernel
        assert (checked.status, checked.limit) == (RunStatus.LIMIT, LimitHit.MEMORY), checked
        assert "more than 64 MiB of memory" in checked.message, checked.message
        done = await run(small, uses)             # the learner's kernel
        result = done.results[StepKind.LEARNER]
        assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.MEMORY), result
        shown = messages.for_learner(result, "", 10)
        assert shown.message.startswith("Your program used more than 64 MiB of memory"), shown.message
        assert not done.verdict.passed
        again = await run(plain, uses)            # the same kernel id
        assert again.results[StepKind.LEARNER].status is RunStatus.OK, again.results
        assert again.verdict.passed, again.verdict
    finally:
        await manager.close()
        await sandbox.close()


@pytest.mark.docker
async def test_a_docker_run_is_stopped_at_the_exercises_own_memory_limit(make_settings):
    services.ensure_docker()
    settings = make_settings(LS_SANDBOX="docker", LS_MEMORY_MB="512", LS_RUN_TIMEOUT="20")
    # every byte written, so the container's memory use is real (cgroup limit: 64 vs 512 MiB)
    await exercise_memory_is_enforced(settings, '"x" * size', 150)


async def test_a_local_run_is_stopped_at_the_exercises_own_memory_limit(make_settings):
    # The local sandbox caps address space at memory + AS_HEADROOM_MB: bytes() reserves
    # it without writing it, so the size is beyond 64 + headroom and within 512 + headroom.
    settings = make_settings(LS_SANDBOX="local", LS_MEMORY_MB="512", LS_RUN_TIMEOUT="20")
    await exercise_memory_is_enforced(settings, "bytes(size)", 64 + AS_HEADROOM_MB + 16)


# --- notebooks: the same keys in a cell's metadata, the cell's winning over the notebook's ----

def notebook(cell: dict, **lesson) -> str:
    """A notebook as plain JSON: one exercise cell with `cell` as its lessonserver metadata."""
    return json.dumps({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"},
                     "lessonserver": {"title": "T", **lesson}},
        "cells": [{"cell_type": "code", "id": "c1", "execution_count": None, "outputs": [],
                   "metadata": {"lessonserver": {"exercise": "loop", "expected": "1\n",
                                                 "solution": "print(1)\n", **cell}},
                   "source": "x = 1\n"}]})


def notebook_settings(text: str) -> ExerciseSettings:
    parsed = read_notebook(text, "c/t.ipynb", KERNELS, bounds=BOUNDS)
    assert parsed.errors == (), parsed.errors
    return parsed.lesson.exercises[0].settings


@pytest.mark.parametrize("cell, lesson_wide, expected", [
    ({}, {}, ExerciseSettings()),
    ({"timeout": 3, "memory": 64, "reveal": 2}, {}, ExerciseSettings(3.0, 64, 2)),
    ({"timeout": "2.5s", "memory": "128M"}, {}, ExerciseSettings(2.5, 128)),
    ({}, {"timeout": 4, "memory": 100, "reveal": 5}, ExerciseSettings(4.0, 100, 5)),
    ({"timeout": 2, "reveal": 1}, {"timeout": 4, "memory": 100, "reveal": 5},
     ExerciseSettings(2.0, 100, 1)),
])
def test_a_notebook_cell_gives_its_exercise_its_own_settings_over_the_notebooks(
        cell, lesson_wide, expected):
    assert notebook_settings(notebook(cell, **lesson_wide)) == expected


@pytest.mark.parametrize("cell, expected", [
    ({"timeout": 30}, "c/t.ipynb: cell 1: timeout 30 s is beyond this server's limit of 10 s "
                      "(LS_RUN_TIMEOUT)"),
    ({"memory": 4096}, "c/t.ipynb: cell 1: memory 4096 MiB is beyond this server's limit of "
                       "256 MiB (LS_MEMORY_MB)"),
    ({"memory": 8}, "c/t.ipynb: cell 1: bad memory 8: write MiB, 32 or more, like memory=128 "
                    "or 128M"),
    ({"timeout": "soon"}, "c/t.ipynb: cell 1: bad timeout 'soon': write seconds, like timeout=5 "
                          "or 2.5s"),
    ({"reveal": 0}, "c/t.ipynb: cell 1: bad reveal 0: write the number of attempts after which "
                    "the solution may be shown, like reveal=3"),
    ({"reveal": 2, "solution": None}, "c/t.ipynb: cell 1: reveal=2 shows the solution, but there "
                                      "is none (add \"solution\" to the cell's lessonserver "
                                      "metadata)"),
    ({"timout": 3}, "c/t.ipynb: cell 1: unknown exercise key 'timout' (did you mean `timeout`?)"),
])
def test_a_notebook_cells_settings_beyond_the_host_or_malformed_name_the_file_and_cell(
        cell, expected):
    parsed = read_notebook(notebook(cell), "c/t.ipynb", KERNELS, bounds=BOUNDS)
    assert [str(error) for error in parsed.errors] == [expected]


@pytest.mark.docker
async def test_a_kernel_holding_more_than_an_exercises_memory_is_restarted_for_it(make_settings):
    # The engine refuses a limit below what the container holds (cgroup v1: runc's "unable to
    # set memory limit"), so the exercise gets a fresh kernel, and the learner is told why.
    services.ensure_docker()
    settings = make_settings(LS_SANDBOX="docker", LS_MEMORY_MB="512", LS_RUN_TIMEOUT="20")
    small, plain = two_exercises()
    sandbox = create_sandbox(settings)
    manager = KernelManager(settings, sandbox, discover())
    await manager.startup()
    try:
        kernel = (await manager.start("memory-test", "python", Tier.EXEMPT)).id
        held = await manager.execute(kernel, 'data = "x" * (150 * 2**20)\nsize = 0\n',
                                     run_limits(manager.limits("python"), plain))
        assert held.status is RunStatus.OK, held
        result = await manager.execute(kernel, "print(size)\n",
                                       run_limits(manager.limits("python"), small))
        assert result.status is RunStatus.ERROR and result.error.ename == "NameError", result
        assert result.message.startswith("The kernel was restarted to give this exercise its "
                                          "memory limit of 64 MiB; earlier variables are gone"), \
            result.message
    finally:
        await manager.close()
        await sandbox.close()
