"""Small builders for core tests: GPUs, jobs and requests with sizes in GiB.

Defaults are the boring case (a queued one-GPU job submitted at t=0, an empty 24 GiB GPU),
so each test spells out only what its story is about.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from gpugate.core.policy import Policy
from gpugate.core.types import Drain, GpuView, SchedulingRequest
from gpugate.model import (
    WHOLE_GPU,
    Expectation,
    ExpectationSource,
    Job,
    JobSpec,
    JobUsage,
)
from gpugate.states import JobState
from gpugate.units import GiB


def gpu(
    index: int, total_gib: float = 24, used_gib: float = 0, util_pct: float | None = 0.0
) -> GpuView:
    """A GPU named ``GPU-<index>`` with ``used_gib`` in use by anyone (gpugate or not)."""
    return GpuView(
        uuid=f"GPU-{index}",
        index=index,
        mem_total_bytes=int(total_gib * GiB),
        mem_used_bytes=int(used_gib * GiB),
        util_pct=util_pct,
    )


def job(
    job_id: int,
    *,
    mem_gib: float | None = 8,
    util_pct: float = 0.0,
    gpus: int = 1,
    priority: int = 0,
    submitted_at: float = 0.0,
    state: JobState = JobState.QUEUED,
    exclusive: bool = False,
    after: tuple[int, ...] = (),
    on: tuple[str, ...] = (),
    started_at: float | None = None,
    expected: Expectation | None = None,
    run_s: float | None = None,
    owner: int = 0,
) -> Job:
    """A job expecting ``mem_gib`` per GPU (``None``: unknown size, the whole GPU), or
    exactly ``expected`` when given.

    ``on``: the GPU uuids a started job holds. ``run_s``: its expected run time.
    """
    if expected is not None:
        util_pct = expected.util_pct
    elif gpus == 0:
        expected = Expectation(0, 0.0, ExpectationSource.DECLARED)
    elif mem_gib is None:
        expected = WHOLE_GPU
    else:
        expected = Expectation(int(mem_gib * GiB), util_pct, ExpectationSource.DECLARED)
    expected = dataclasses.replace(expected, run_s=run_s) if run_s is not None else expected
    spec = JobSpec(
        command=f"train {job_id}",
        cwd="/tmp",
        gpus=gpus,
        mem_bytes=expected.mem_bytes,
        util_pct=util_pct,
        exclusive=exclusive,
        after=after,
        owner_uid=owner,
    )
    return Job(
        id=job_id,
        spec=spec,
        state=state,
        priority=priority,
        submitted_at=submitted_at,
        expected=expected,
        gpu_uuids=on,
        started_at=started_at,
    )


def running(job_id: int, *on: str, started_at: float = 0.0, **kwargs: Any) -> Job:
    """A job that ramped up and holds ``on`` (default ``GPU-0``; none for CPU-only)."""
    return job(
        job_id,
        state=JobState.RUNNING,
        on=_held(on, kwargs),
        started_at=started_at,
        **kwargs,
    )


def starting(job_id: int, *on: str, started_at: float = 0.0, **kwargs: Any) -> Job:
    """A job just launched on ``on`` (default ``GPU-0``) and not yet seen at its level."""
    return job(
        job_id,
        state=JobState.STARTING,
        on=_held(on, kwargs),
        started_at=started_at,
        **kwargs,
    )


def _held(on: tuple[str, ...], kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    if on or kwargs.get("gpus", 1) == 0:
        return on
    return ("GPU-0",)


def seen(mem_gib: float, util_pct: float | None = None) -> JobUsage:
    """What the monitor saw a job use on one GPU."""
    return JobUsage(mem_bytes=int(mem_gib * GiB), util_pct=util_pct)


def request(
    gpus: Sequence[GpuView],
    jobs: Sequence[Job],
    *,
    now: float = 10.0,
    policy: Policy | None = None,
    usage: Mapping[int, Mapping[str, JobUsage]] | None = None,
    dependency_states: Mapping[int, JobState] | None = None,
    drain: Drain | None = None,
    user_usage: Mapping[int, float] | None = None,
    last_start_by_user: Mapping[int, float] | None = None,
) -> SchedulingRequest:
    return SchedulingRequest(
        now=now,
        gpus=tuple(gpus),
        jobs=tuple(jobs),
        policy=policy or Policy(),
        usage=usage or {},
        dependency_states=dependency_states or {},
        drain=drain,
        user_usage=user_usage or {},
        last_start_by_user=last_start_by_user or {},
    )
