"""Each GPU's recent load, and each running job's, for charts (the dashboard,
``GET /v1/gpus/history``, ``GET /v1/jobs/{id}/usage``).

Every monitor sample for the last hour, and one point per minute (the minute's mean) for
the last day: about 150 KB per GPU at one sample a second. A job's samples are kept
while it is active and its last hour for a while after (``JOB_POINTS``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gpugate.model import MachineSnapshot

FINE_POINTS = 3600  # samples: an hour at the default 1 s monitor interval
COARSE_POINTS = 24 * 60  # minutes: a day
MINUTE_S = 60.0
MAX_JOBS_KEPT = 256  # jobs whose use is kept (by id: the newest)

Point = tuple[float, float | None, int]  # time, utilization %, memory used (bytes)


@dataclass(slots=True)
class _Minute:
    start: float
    util_sum: float = 0.0
    util_n: int = 0
    mem_sum: int = 0
    n: int = 0

    def point(self) -> Point:
        util = self.util_sum / self.util_n if self.util_n else None
        return (self.start, util, self.mem_sum // max(self.n, 1))


@dataclass(slots=True)
class GpuTimeline:
    fine: dict[str, deque[Point]] = field(default_factory=dict)
    coarse: dict[str, deque[Point]] = field(default_factory=dict)
    _minute: dict[str, _Minute] = field(default_factory=dict)
    jobs: dict[int, deque[Point]] = field(default_factory=dict)  # job -> its use, summed

    def add_jobs(self, at: float, usage: dict[int, tuple[float | None, int]]) -> None:
        """Each job seen on the GPUs at ``at``: its utilization and memory over its GPUs."""
        for job_id, (util, mem) in usage.items():
            self.jobs.setdefault(job_id, deque(maxlen=FINE_POINTS)).append((at, util, mem))
        if len(self.jobs) > MAX_JOBS_KEPT:  # the oldest (ended long ago) go first
            for job_id in sorted(self.jobs)[: len(self.jobs) - MAX_JOBS_KEPT]:
                del self.jobs[job_id]

    def add(self, snap: MachineSnapshot) -> None:
        for gpu in snap.gpus:
            point = (snap.taken_at, gpu.util_pct, gpu.mem_used_bytes)
            self.fine.setdefault(gpu.uuid, deque(maxlen=FINE_POINTS)).append(point)
            self._into_minute(gpu.uuid, point)

    def series(self, uuid: str, seconds: float, now: float) -> list[Point]:
        """The points of the last ``seconds``: every sample within the hour, else per
        minute (the minute in progress as it stands)."""
        since = now - seconds
        if seconds <= FINE_POINTS and self._fine_covers(uuid, since):
            return [p for p in self.fine.get(uuid, ()) if p[0] >= since]
        minutes = [p for p in self.coarse.get(uuid, ()) if p[0] >= since - MINUTE_S]
        current = self._minute.get(uuid)
        return minutes + ([current.point()] if current is not None else [])

    def _fine_covers(self, uuid: str, since: float) -> bool:
        fine = self.fine.get(uuid)
        return not fine or len(fine) < (fine.maxlen or 0) or fine[0][0] <= since

    def _into_minute(self, uuid: str, point: Point) -> None:
        at, util, mem = point
        minute = self._minute.get(uuid)
        if minute is None or at >= minute.start + MINUTE_S:
            if minute is not None:
                self.coarse.setdefault(uuid, deque(maxlen=COARSE_POINTS)).append(minute.point())
            minute = self._minute[uuid] = _Minute(at - at % MINUTE_S)
        if util is not None:
            minute.util_sum += util
            minute.util_n += 1
        minute.mem_sum += mem
        minute.n += 1
