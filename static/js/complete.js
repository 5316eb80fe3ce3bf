// When a lesson is complete, and what the lesson-complete note says (pure, no DOM writes).

export function isComplete({passed, total}) {
  return Number(total) > 0 && Number(passed) >= Number(total);
}

// The lesson-complete moment: what was done, and what comes next (the next lesson, else the courses).
export function completeNote(total, next) {
  const done = `You passed all ${total} exercise${Number(total) === 1 ? "" : "s"} of this lesson.`;
  return next ? {done, link: next.textContent.trim(), href: next.getAttribute("href")}
    : {done: `${done} That was the last lesson of this course.`, link: "Choose what to learn next →", href: "/"};
}
