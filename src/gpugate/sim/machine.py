"""The simulated machine: GPUs with memory, the jobs on them, and how fast each job runs.

A started job first loads (``ramp_s`` seconds: no memory, no utilization, full speed),
then allocates its peak memory in one step. If that allocation does not fit in what is
left of a GPU's memory, the job dies of out-of-memory, as a real CUDA job would. Once
allocated, its utilization demand counts on its GPUs, and co-located jobs slow each
other down by the interference model. A multi-GPU job runs at the speed of its slowest
GPU (data-parallel training waits for the slowest rank).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gpugate.core.types import GpuView
from gpugate.model import JobUsage
from gpugate.sim.job import SimJob


class Interference(Protocol):
    def speeds(self, demands: Sequence[float]) -> list[float]:
        """Speed (in (0, 1], relative to alone) of each job sharing one GPU, given their
        utilization demands in [0, 1]."""
        ...


@dataclass(slots=True)
class Placed:
    """A job on the machine. ``work_left_s`` is solo seconds of work still to do."""

    job: SimJob
    gpus: tuple[int, ...]
    started_at: float
    work_left_s: float
    updated_at: float
    speed: float = 1.0
    allocated: bool = False
    # unique across the whole run, renewed whenever its predicted end moves: an event
    # carrying an older version (or a crashed run's) is stale and skipped
    version: int = 0
    run: int = 0  # this run's first version: names the run for its allocation event

    def advance_to(self, now: float) -> None:
        self.work_left_s = max(0.0, self.work_left_s - (now - self.updated_at) * self.speed)
        self.updated_at = now

    @property
    def ends_at(self) -> float:
        return self.updated_at + self.work_left_s / self.speed


@dataclass(slots=True)
class SimGpu:
    index: int
    uuid: str
    mem_total_bytes: int
    jobs: dict[int, Placed] = field(default_factory=dict)
    mem_used_bytes: int = 0  # of allocated jobs
    util_pct: float = 0.0  # observed: allocated jobs' demand, capped at 100

    def recount(self) -> None:
        allocated = [p.job for p in self.jobs.values() if p.allocated]
        self.mem_used_bytes = sum(j.mem_bytes for j in allocated)
        self.util_pct = min(100.0, sum(j.util_pct for j in allocated))


class SimMachine:
    """N identical GPUs. Every method takes ``now`` and keeps each job's progress exact."""

    def __init__(self, n_gpus: int, gpu_mem_bytes: int, interference: Interference) -> None:
        self.gpus = [SimGpu(i, f"SIM-GPU-{i}", gpu_mem_bytes) for i in range(n_gpus)]
        self.by_uuid = {g.uuid: g for g in self.gpus}
        self.placed: dict[int, Placed] = {}
        self.interference = interference
        self._versions = itertools.count(1)
        # what the core sees, kept from one pass to the next until a job starts or ends or
        # allocates: most passes (an arrival, a wake-up) find the machine as it was
        self._views: tuple[GpuView, ...] | None = None
        self._usage: Mapping[int, Mapping[str, JobUsage]] | None = None

    # ------------------------------------------------------------------ what the core sees
    def views(self) -> tuple[GpuView, ...]:
        if self._views is None:
            self._views = tuple(
                GpuView(g.uuid, g.index, g.mem_total_bytes, g.mem_used_bytes, g.util_pct)
                for g in self.gpus
            )
        return self._views

    def usage(self) -> Mapping[int, Mapping[str, JobUsage]]:
        """What a monitor would attribute to each job on each of its GPUs."""
        if self._usage is None:
            seen: dict[int, dict[str, JobUsage]] = {}
            for placed in self.placed.values():
                if placed.allocated and placed.gpus:
                    use = JobUsage(placed.job.mem_bytes, placed.job.util_pct)
                    seen[placed.job.id] = {self.gpus[i].uuid: use for i in placed.gpus}
            self._usage = seen
        return self._usage

    def _forget_views(self) -> None:
        """What the core sees is about to change: build it again when next asked."""
        self._views = None
        self._usage = None

    # ------------------------------------------------------------------------- changes
    def start(
        self, job: SimJob, uuids: Sequence[str], now: float, work_s: float | None = None
    ) -> Placed:
        """``work_s``: solo seconds to do (a resumed job's remainder); default its run."""
        gpus = tuple(self.by_uuid[u].index for u in uuids)
        version = next(self._versions)
        work = job.run_s if work_s is None else work_s
        placed = Placed(job, gpus, now, work, now, version=version, run=version)
        self._forget_views()
        self.placed[job.id] = placed
        for i in gpus:
            self.gpus[i].jobs[job.id] = placed
        return placed

    def allocate(self, job_id: int, now: float) -> tuple[bool, list[Placed]]:
        """The job allocates its memory. Returns (fitted, jobs whose speed changed); a job
        that does not fit is removed (out-of-memory) and the list is empty."""
        placed = self.placed[job_id]
        if any(self._would_overflow(self.gpus[i], placed.job) for i in placed.gpus):
            self.remove(job_id, now)
            return False, []
        self._forget_views()
        placed.allocated = True
        return True, self._respeed(placed.gpus, now)

    def remove(self, job_id: int, now: float) -> list[Placed]:
        """The job ended (or crashed); returns the jobs whose speed changed."""
        self._forget_views()
        placed = self.placed.pop(job_id)
        for i in placed.gpus:
            del self.gpus[i].jobs[job_id]
        return self._respeed(placed.gpus, now)

    @staticmethod
    def _would_overflow(gpu: SimGpu, job: SimJob) -> bool:
        return gpu.mem_used_bytes + job.mem_bytes > gpu.mem_total_bytes

    def _respeed(self, gpus: Sequence[int], now: float) -> list[Placed]:
        """Recompute the speed of every job touching these GPUs (and their other GPUs)."""
        for i in gpus:
            self.gpus[i].recount()
        touched = {p.job.id: p for i in gpus for p in self.gpus[i].jobs.values()}
        speeds: dict[int, dict[int, float]] = {}  # GPU -> job -> speed there, each GPU once
        changed = []
        for placed in touched.values():
            speed = min(
                (self._speeds_on(i, speeds).get(placed.job.id, 1.0) for i in placed.gpus),
                default=1.0,
            )
            if speed != placed.speed:
                placed.advance_to(now)
                placed.speed = speed
                placed.version = next(self._versions)
                changed.append(placed)
        return changed

    def _speeds_on(self, index: int, known: dict[int, dict[int, float]]) -> dict[int, float]:
        """Speed of each allocated job on GPU ``index``. A job still loading is absent: it
        runs at full speed and slows no one (its demand is not there yet)."""
        if index not in known:
            allocated = [p.job for p in self.gpus[index].jobs.values() if p.allocated]
            speeds = (
                self.interference.speeds([j.util_pct / 100 for j in allocated])
                if len(allocated) > 1
                else [1.0] * len(allocated)
            )
            known[index] = {j.id: s for j, s in zip(allocated, speeds, strict=True)}
        return known[index]
