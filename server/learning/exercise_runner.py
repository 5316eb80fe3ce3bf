"""Run one exercise in a learner's kernel: the steps, the trace, the verdict, the progress row.

The thin shell around `exercise_steps` (pure): it talks to the kernel manager,
the trace buffer and the database, and hands the learner's outputs to the
caller as they arrive.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable


from kernels.manager import KernelManager, ManagedKernel
from kernels.session import OnOutput
from kernels.result import Output, RunResult, RunStatus
from server.learning import progress_view
from server.course.grade import Verdict
from server.course.model import Example, Exercise, Lesson
from server.metrics import Metrics
from server.learning.exercise_attempt import attempt
from server.learning.pending_progress import PendingProgress, ProgressWrite
from server.learning.exercise_steps import StepKind, run_limits
from server.learning import last_run, messages
from server.tracing.tracer import Emit, KernelEventRouter, RunTracer

log = logging.getLogger("lessonserver.runs")

OnInput = Callable[[str, bool], Awaitable[str]]
Commit = Callable[[], Awaitable[None]]


@dataclasses.dataclass(frozen=True)
class Outcome:
    run_id: str
    result: RunResult         # the learner's step (or the setup's when that failed)
    verdict: Verdict | None   # None for a runnable example of the prose: it is not checked
    passed_in_lesson: int
    total_in_lesson: int


SAVED_LATER = "Your progress will be saved when the database is back."


class ExerciseRunner:
    def __init__(self, manager: KernelManager, emit: Emit,
                 router: KernelEventRouter, metrics: Metrics | None = None, *,
                 commit: Commit, progress: PendingProgress) -> None:
        """`commit`: makes the trace so far durable; awaited before the learner sees a verdict."""
        self.manager = manager
        self.emit = emit
        self.router = router
        self.metrics = metrics or Metrics()
        self.commit = commit
        self.progress = progress

    async def run(self, *, user_id: str, kernel_id: str, lesson: Lesson, exercise: Exercise,
                  code: str, on_output: OnOutput, on_input: OnInput | None = None,
                  run_id: str | None = None, started: ManagedKernel | None = None) -> Outcome:
        """`started`: the kernel when it was assigned for this run (its start is traced)."""
        began = time.monotonic()
        tracer = self._tracer(run_id, user_id, lesson, exercise.id, code, started)
        forward, release = _forwarding(tracer, code, on_output)

        def watch(checker_id: str, attach: bool) -> None:
            """The check's own kernel reports into this run's trace too."""
            if attach:
                self.router.attach(checker_id, tracer)
            else:
                self.router.detach(checker_id)

        self.router.attach(kernel_id, tracer)
        try:
            done = await attempt(self.manager, kernel_id, lesson.kernel, exercise, code,
                                 owner=user_id, on_output=forward, on_input=on_input, watch=watch)
        finally:
            self.router.detach(kernel_id)
            tracer.release()    # also for a run cut short (a server stopping): its trace is kept
        results, verdict = done.results, done.verdict
        shown = results.get(StepKind.LEARNER) or results.get(StepKind.SETUP) \
            or RunResult(RunStatus.DIED, message="Nothing ran.")
        tracer.verdict(verdict.passed, verdict.message)
        tracer.finished(shown)
        self.metrics.observe_run(lesson.kernel, shown, time.monotonic() - began)
        release(shown)
        if StepKind.LEARNER in results:
            shown = messages.for_learner(
                shown, code, run_limits(self.manager.limits(lesson.kernel), exercise).timeout)
        try:
            await self.commit()
        except Exception:  # the spool's disk failed too: the verdict still goes out
            log.exception("trace not made durable before the verdict")
        verdict, passed_in = await self._save_progress(user_id, lesson, exercise, verdict, code,
                                                       last_run.snapshot(shown, verdict))
        return Outcome(tracer.run_id, shown, verdict, passed_in, len(lesson.exercises))

    async def run_example(self, *, user_id: str, kernel_id: str, lesson: Lesson, example: Example,
                          on_output: OnOutput, run_id: str | None = None,
                          started: ManagedKernel | None = None) -> Outcome:
        """A runnable example of the prose, as written, in the learner's kernel: traced (with no
        exercise), never checked, never counted as an attempt. It takes no input()."""
        began = time.monotonic()
        tracer = self._tracer(run_id, user_id, lesson, None, example.code, started)
        forward, release = _forwarding(tracer, example.code, on_output)
        limits = self.manager.limits(lesson.kernel)
        self.router.attach(kernel_id, tracer)
        try:
            result = await self.manager.execute(kernel_id, example.code, limits, on_output=forward)
        finally:
            self.router.detach(kernel_id)
            tracer.release()
        tracer.finished(result)
        self.metrics.observe_run(lesson.kernel, result, time.monotonic() - began)
        release(result)
        shown = messages.for_learner(result, example.code, limits.timeout)
        try:
            await self.commit()
        except Exception:  # the spool's disk failed too: the output still goes out
            log.exception("trace not made durable after an example")
        return Outcome(tracer.run_id, shown, None, 0, len(lesson.exercises))

    def _tracer(self, run_id: str | None, user_id: str, lesson: Lesson, exercise_id: str | None,
                code: str, started: ManagedKernel | None) -> RunTracer:
        """`started`: the kernel when it was assigned for this run (its start is traced)."""
        tracer = RunTracer(self.emit, run_id)
        tracer.requested_held(user_id=user_id, lesson_slug=lesson.slug,
                              exercise_id=exercise_id, kernel=lesson.kernel, code=code)
        if started is not None:
            tracer.kernel_assigned(pool_hit=started.pool_hit, container_id=started.ref,
                                   start_ms=started.start_ms)
        return tracer

    async def _save_progress(self, user_id: str, lesson: Lesson, exercise: Exercise,
                             verdict: Verdict, code: str,
                             snapshot: dict) -> tuple[Verdict, int]:
        """The verdict as the learner is told it, and how many of the lesson's exercises passed.

        With the database away the write waits in PendingProgress, the learner is told so, and
        the count is what this run alone shows.
        """
        # What the page showed rides with the progress row, for its reload (also when spooled).
        write = ProgressWrite(user_id, lesson.slug, exercise.id, verdict.passed, code,
                              last_run.dumps(snapshot))
        rows = await self.progress.record(write)
        if rows is None:
            verdict = dataclasses.replace(verdict, message="\n\n".join(
                part for part in (verdict.message, SAVED_LATER) if part))
            statuses = {(lesson.slug, exercise.id): "passed" if verdict.passed else "failed"}
        else:
            statuses = progress_view.statuses_of(rows)
        return verdict, progress_view.passed_in(lesson, statuses)


def _forwarding(tracer: RunTracer, code: str, on_output: OnOutput
                ) -> tuple[OnOutput, Callable[[RunResult], None]]:
    """(forward, release): forward traces each output in the kernel's own words and passes it on
    cleaned, except an interrupt's error, which waits: was it the server's own stop (a timeout,
    told in plain words instead) or the learner's Interrupt (release shows where it stopped)?"""
    held: list[Output] = []

    def forward(output: Output) -> None:
        if messages.server_interrupt(output):
            held.append(output)
        else:
            on_output(messages.clean_output(output, code))
        tracer.output(output, messages.learner_line(output, code))   # after the learner's copy

    def release(shown: RunResult) -> None:
        if not messages.stopped_by_server(shown):
            for output in held:
                on_output(messages.clean_output(output, code))

    return forward, release
