"""Scheduling policies: plain data the core reads. The simulator compares these."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class QueueOrder(StrEnum):
    """Which queued job is considered first."""

    PRIORITY = "priority"  # priority plus aging, shorter expected run first (core.queue)
    FIFO = "fifo"  # queue-entry order (submit, or release), priorities ignored (task-spooler)
    SHORTEST_FIRST = "shortest-first"  # expected run time; unknown last (the SJF oracle)


class Admission(StrEnum):
    """How the core decides that a job fits on a GPU."""

    HEADROOM = "headroom"  # gpugate: utilization + memory headroom, with reservations
    MEMORY_ONLY = "memory-only"  # free memory now, no reservation (gpusched-like)
    WHOLE_GPU = "whole-gpu"  # one job per GPU, load ignored (task-spooler-like queues)


@dataclass(frozen=True, slots=True)
class GpuLimits:
    """Headroom lines of one GPU: admission keeps it under both."""

    util_headroom_pct: float = 90.0
    mem_headroom_pct: float = 90.0
    # Joining a GPU that already runs work: summed utilization stays under this (interference).
    share_util_pct: float = 50.0


@dataclass(frozen=True, slots=True)
class Policy:
    """Every knob of ``schedule()``; defaults are what ``gpugate serve`` uses.

    Backfill bound: a job may start ahead of the first blocked job (the head) only while
    the head has waited less than ``max_head_wait_s``. After that the head's GPUs are
    drained for it: nothing new starts there, so the head waits at most
    ``max_head_wait_s`` plus the remaining run time of the gpugate jobs already on those
    GPUs (outside load, which gpugate does not control, can still delay it).

    Off (infinite) by default: on the Alibaba trace the simulator shows a 30-minute bound
    multiplying the average JCT 6-7x (drains idle GPUs for hours behind day-long jobs;
    docs/simulator.md). Preemption is the better tool for big jobs.

    Queue order (``QueueOrder.PRIORITY``): highest ``priority + aging_per_hour x hours
    waited + run_time_weight x log2(1 h / expected run time)`` first. A job expected to
    run 15 min gains 2 points over one expected to run 1 h; a job with no history gains
    nothing, so without history the order is priority with aging, first come first
    served. ``run_time_weight = 0`` turns the run-time term off.
    """

    admission: Admission = Admission.HEADROOM
    order: QueueOrder = QueueOrder.PRIORITY
    limits: GpuLimits = GpuLimits()
    per_gpu_limits: Mapping[str, GpuLimits] = field(default_factory=dict)  # by uuid or index
    aging_per_hour: float = 0.05  # priority points a waiting job gains per hour (1 per 20 h)
    run_time_weight: float = 1.0  # priority points per halving of the expected run time
    backfill: bool = True
    hold_for_head: bool = False  # EASY backfill: the head's GPUs take only jobs ending in time
    max_head_wait_s: float = math.inf  # off; e.g. 1800 bounds the head's wait
    ramp_timeout_s: float = 60.0  # a started job's reservation lasts at most this long...
    ramp_level: float = 0.9  # ...or until its memory is seen at this fraction of expected
    idle_mem_pct: float = 10.0  # a GPU counts as idle (for exclusive/unknown-size jobs)
    max_cpu_jobs: int | None = None  # CPU-only jobs running at once; None: no limit
    # Preemption, of jobs that allowed it at submit (--preempt), for strictly higher ones:
    preemption: bool = True  # off: nothing is ever preempted (the FIFO peers)
    preempt_min_run_s: float = 300.0  # never a job that has run less than this
    max_preemptions: int = 3  # never a job already preempted this often
    # set by the daemon when cuda-checkpoint works: suspending then frees memory as well
    suspend_releases_memory: bool = False
    # Quotas: the most GPUs one user's jobs may hold at once (None: no limit), and a
    # user's own line by uid (None there: no limit for that user, e.g. an admin)
    max_gpus_per_user: int | None = None
    user_max_gpus: Mapping[int, int | None] = field(default_factory=dict)
    # Fair share (core.fairshare): points a user's queued jobs gain for having used little
    # of the machine lately (at most this many between two users), and each user's share
    # of the machine by uid (1 when absent)
    fair_share_weight: float = 2.0
    shares: Mapping[int, float] = field(default_factory=dict)

    def limits_for(self, uuid: str, index: int) -> GpuLimits:
        return self.per_gpu_limits.get(uuid) or self.per_gpu_limits.get(str(index)) or self.limits
