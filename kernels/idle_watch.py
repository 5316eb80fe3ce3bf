"""Is an idle kernel burning CPU? Decided from samples of its sandbox's CPU time.

Between runs nothing of the learner's should execute, so a kernel whose sandbox
keeps using CPU while idle runs something that escaped its run (a daemon that
`kill_strays` could not reach, or a thread of the kernel itself). The caller
samples `Sandbox.cpu_seconds` every second or so while the kernel is idle,
starts afresh when a run begins, and asks `burning` after each sample.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

WINDOW = 3.0          # seconds of idle time judged at once
SHARE = 0.5           # of one core: above this for a whole window is burning


@dataclasses.dataclass(frozen=True)
class CpuSample:
    at: float         # time.monotonic() of the reading
    cpu: float        # the sandbox's CPU seconds so far (Sandbox.cpu_seconds)


def burning(samples: Sequence[CpuSample], window: float = WINDOW, share: float = SHARE) -> bool:
    """True when, over the last `window` seconds or more, the sandbox used more than `share`
    of a core. Samples are in time order; fewer than `window` seconds of them prove nothing."""
    if len(samples) < 2:
        return False
    newest = samples[-1]
    start = next((s for s in reversed(samples[:-1]) if newest.at - s.at >= window), None)
    if start is None:
        return False
    used = max(0.0, newest.cpu - start.cpu)   # a counter that went back (restart) is no load
    return used / (newest.at - start.at) > share


def keep(samples: Sequence[CpuSample], sample: CpuSample,
         window: float = WINDOW) -> tuple[CpuSample, ...]:
    """`samples` with `sample` added and those no longer needed for one window dropped."""
    kept = (*samples, sample)
    # The newest sample at least `window` older than `sample` is the oldest still needed.
    for index in range(len(kept) - 2, -1, -1):
        if sample.at - kept[index].at >= window:
            return kept[index:]
    return kept
