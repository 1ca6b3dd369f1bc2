"""Expected run time: what a command's recent successful runs took.

The queue order (``core.queue``) reads it so that, within the same effective priority,
short work goes first: the largest lever on average completion time the simulator found
(docs/simulator.md). Only the command's own history counts; nothing is guessed for a
command never seen succeed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

RECENT_RUNS = 20  # how many of a command's latest successful runs the estimate looks at


def expected_run_s(recent_runs_s: Sequence[float]) -> float | None:
    """The median of the last ``RECENT_RUNS`` run times (oldest first), or None if none.

    The median, not the mean: one run killed early or stuck on a slow disk should not
    move the estimate much; the most recent runs only, so a command whose input grew is
    followed within a few runs.
    """
    recent = [run_s for run_s in recent_runs_s[-RECENT_RUNS:] if run_s >= 0]
    return statistics.median(recent) if recent else None
