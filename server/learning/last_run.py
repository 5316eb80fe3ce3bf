"""What an exercise's last run looked like, kept so a reloaded page can show it again.

Pure: `snapshot` turns the learner's result and verdict into a JSON-ready dict
of bounded size (a run may print 64 KB and draw plots; the progress row keeps
at most MAX_BYTES of it); `parse` reads one back, tolerating rows written by
older versions or cut by hand.
"""
from __future__ import annotations

import json
from typing import Any

from kernels.result import Output, RunResult
from server.course.grade import Verdict

MAX_BYTES = 32 * 1024       # per exercise: the outputs a page shows first, not a full log


def snapshot(result: RunResult, verdict: Verdict, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """The learner-facing result (see messages.for_learner) and verdict, outputs cut to size."""
    outputs, cut = _fit(result.outputs, max_bytes)
    return {"status": result.status.value, "limit": result.limit.value if result.limit else None,
            "message": result.message,
            "verdict": {"passed": verdict.passed, "message": verdict.message},
            "outputs": outputs, "cut": cut}


def _fit(outputs: tuple[Output, ...], room: int) -> tuple[list[dict[str, Any]], bool]:
    """Outputs in order while they fit; a text that crosses the line is cut, anything else after it
    is left out."""
    kept: list[dict[str, Any]] = []
    for output in outputs:
        item = output.to_json()
        size = len(json.dumps(item).encode())
        if size <= room:
            kept.append(item)
            room -= size
            continue
        if output.output_type == "stream" and room > 200:
            text = (output.text or "").encode()[:room - 200].decode(errors="ignore")
            kept.append({**item, "text": text})
        return kept, True
    return kept, False


def dumps(snap: dict[str, Any]) -> str:
    return json.dumps(snap, separators=(",", ":"))


def parse(text: str | None) -> dict[str, Any] | None:
    """A stored snapshot, or None when there is none or it cannot be read."""
    if not text:
        return None
    try:
        snap = json.loads(text)
    except ValueError:
        return None
    if not isinstance(snap, dict) or not isinstance(snap.get("verdict"), dict) \
            or not isinstance(snap.get("outputs"), list):
        return None
    return snap
