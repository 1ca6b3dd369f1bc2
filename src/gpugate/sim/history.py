"""What the daemon's store would know of each command's successful runs, as a simulation
goes: the run times ``core.runtime.expected_run_s`` turns into a job's expected run time.

A simulation starts with the runs that ended before its first job was submitted (the
trace's earlier weeks: the daemon would have seen them) and records each job it completes,
with the time it really took (interference included), as the daemon would.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable

from gpugate.core.runtime import RECENT_RUNS, expected_run_s

PriorRun = tuple[str, float]  # (command, seconds it ran), in the order the runs ended


class RunHistory:
    def __init__(self, prior: Iterable[PriorRun] = ()) -> None:
        self._runs: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=RECENT_RUNS))
        for command, run_s in prior:
            self.record(command, run_s)

    def record(self, command: str, run_s: float) -> None:
        """A run of ``command`` succeeded after ``run_s`` seconds."""
        self._runs[command].append(run_s)

    def expected_run_s(self, command: str) -> float | None:
        runs = self._runs.get(command)
        return None if runs is None else expected_run_s(list(runs))
