"""Showing an exercise's solution once the learner has made the attempts its `reveal=N` asks for:
the rule (pure) and the shell that checks the progress row and records the reveal in it."""
from __future__ import annotations

import dataclasses

from sqlalchemy.ext.asyncio import AsyncEngine

from server.course.model import Exercise
from server.store import progress


@dataclasses.dataclass(frozen=True)
class Reveal:
    solution: str | None      # the solution when it may be shown
    message: str | None       # why not, in plain words


def refusal(exercise: Exercise, attempts: int) -> str | None:
    """Why the solution may not be shown after `attempts` runs, or None when it may."""
    needed = exercise.settings.reveal_after
    if exercise.solution is None or needed is None:
        return "This exercise does not show its solution."
    if attempts < needed:
        left = needed - attempts
        return (f"The solution opens after {needed} attempt{'s' if needed != 1 else ''}: "
                f"{left} more to go.")
    return None


async def reveal(engine: AsyncEngine, user_id: str, lesson_slug: str, exercise: Exercise) -> Reveal:
    """Counted from the learner's own progress row (the page's count is not trusted)."""
    rows = progress.by_exercise(await progress.get_for_user(engine, user_id))
    row = rows.get((lesson_slug, exercise.id))
    why = refusal(exercise, row.attempts if row else 0)
    if why is not None:
        return Reveal(None, why)
    await progress.mark_solution_shown(engine, user_id, lesson_slug, exercise.id)
    return Reveal(exercise.solution, None)
