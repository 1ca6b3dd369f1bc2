"""Per-GPU load as admission sees it: observed use plus what started jobs still reserve."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gpugate.core.policy import GpuLimits, Policy
from gpugate.core.types import GpuView
from gpugate.model import Job, JobUsage


@dataclass(slots=True)
class GpuLoad:
    """Mutable within one pass: starts decided earlier in the pass add to it."""

    view: GpuView
    limits: GpuLimits
    mem_bytes: int  # observed used + reservations
    reserved_bytes: int  # the reservations alone: declared by gpugate jobs, not yet allocated
    util_pct: float  # smoothed observed + reservations
    job_ids: list[int]
    exclusive_job: int | None = None  # a job that asked for this GPU to itself
    whole_job: int | None = None  # an unknown-size job still ramping up: it may take it all
    drained_for: int | None = None  # kept free for a long-blocked head job
    started_now_bytes: int = 0  # declared by jobs this pass decided to start here
    held_for: int | None = None  # the blocked head expected to start here (backfill hold)
    hold_slack_s: float = math.inf  # ...in this many seconds: shorter jobs may use it first

    @property
    def label(self) -> str:
        return f"GPU{self.view.index}"

    @property
    def mem_cap_bytes(self) -> int:
        return int(self.view.mem_total_bytes * self.limits.mem_headroom_pct / 100)

    def snapshot(self) -> GpuLoad:
        """This load as it is now, for reasons written after the pass changed it."""
        return GpuLoad(
            self.view,
            self.limits,
            self.mem_bytes,
            self.reserved_bytes,
            self.util_pct,
            list(self.job_ids),
            self.exclusive_job,
            self.whole_job,
            self.drained_for,
            self.started_now_bytes,
            self.held_for,
            self.hold_slack_s,
        )

    def is_idle(self, policy: Policy) -> bool:
        """No gpugate job here and almost no memory in use by anyone else."""
        idle_bytes = self.view.mem_total_bytes * policy.idle_mem_pct / 100
        return not self.job_ids and self.view.mem_used_bytes <= idle_bytes


def is_ramped(job: Job, usage: Mapping[str, JobUsage], now: float, policy: Policy) -> bool:
    """Has a started job been seen at its expected level, or had its ramp-up window?"""
    if job.spec.gpus == 0 or job.started_at is None:
        return True
    if now - job.started_at >= policy.ramp_timeout_s:
        return True
    expected = job.expected.mem_bytes
    if expected is None or not job.gpu_uuids:
        return False
    return all(
        (seen := usage.get(uuid)) is not None and seen.mem_bytes >= policy.ramp_level * expected
        for uuid in job.gpu_uuids
    )


def build_loads(
    gpus: Sequence[GpuView],
    holders: Sequence[Job],
    usage: Mapping[int, Mapping[str, JobUsage]],
    policy: Policy,
    ramping: set[int],
) -> dict[str, GpuLoad]:
    """Observed use of every GPU plus the reservations of the jobs that hold it.

    ``ramping``: ids of started jobs not yet seen at their level; they reserve their full
    expected utilization (and the whole GPU when their size is unknown).
    """
    loads = {
        g.uuid: GpuLoad(
            view=g,
            limits=policy.limits_for(g.uuid, g.index),
            mem_bytes=g.mem_used_bytes,
            reserved_bytes=0,
            util_pct=g.util_pct or 0.0,
            job_ids=[],
        )
        for g in gpus
    }
    for job in holders:
        if job.gpu_memory_released:
            continue  # suspended with its GPU memory moved to host: nothing of it is there
        for uuid in job.gpu_uuids:
            load = loads.get(uuid)
            if load is not None:
                seen = usage.get(job.id, {}).get(uuid)
                _add_holder(load, job, seen, ramping=job.id in ramping)
    return loads


def _add_holder(load: GpuLoad, job: Job, seen: JobUsage | None, ramping: bool) -> None:
    load.job_ids.append(job.id)
    if job.spec.exclusive:
        load.exclusive_job = job.id
    if job.expected.whole_gpu:
        if ramping:
            load.whole_job = job.id
        return  # once ramped, an unknown-size job is what the monitor sees
    seen_mem = seen.mem_bytes if seen else 0
    # reserve what it said it would use and has not allocated yet, for as long as it runs:
    # a job that declared 10 GiB and holds 2 GiB will most likely grow
    reservation = max(0, (job.expected.mem_bytes or 0) - seen_mem)
    load.mem_bytes += reservation
    load.reserved_bytes += reservation
    if ramping:
        seen_util = seen.util_pct if seen and seen.util_pct is not None else 0.0
        load.util_pct += max(0.0, job.expected.util_pct - seen_util)


def reserve(load: GpuLoad, job: Job) -> None:
    """Account in this pass for a job just decided to start on this GPU."""
    _add_holder(load, job, None, ramping=True)
    load.started_now_bytes += job.expected.mem_bytes or load.view.mem_total_bytes
