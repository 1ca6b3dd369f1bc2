"""``schedule()``: the one brain that the daemon, the simulator and the tests all drive.

Pure: it reads a SchedulingRequest (time included) and returns a SchedulingReply. No
clock, no I/O, no NVML: so every decision is reproducible and carries its reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from gpugate.core.admission import FIT_CHECKS
from gpugate.core.load import GpuLoad, build_loads, is_ramped, reserve
from gpugate.core.placement import place
from gpugate.core.policy import Policy
from gpugate.core.queue import dependency_verdict, in_queue_order
from gpugate.core.types import Drain, SchedulingReply, SchedulingRequest, Start, Verdict
from gpugate.model import Job
from gpugate.states import JobState
from gpugate.units import format_bytes

HOLDING = frozenset({JobState.STARTING, JobState.RUNNING})
Shape = tuple[int, int | None, float, bool]


def schedule(request: SchedulingRequest) -> SchedulingReply:
    """Decide which queued jobs start now and where; say why every other one waits."""
    holders = sorted((j for j in request.jobs if j.state in HOLDING), key=lambda j: j.id)
    ramped = _ramped(holders, request)
    done_ramping = {v.job_id for v in ramped}
    ramping = {j.id for j in holders if j.state is JobState.STARTING} - done_ramping
    loads = build_loads(request.gpus, holders, request.usage, request.policy, ramping)
    waiting: dict[int, str] = {}
    candidates, cancels = _eligible(request, waiting)
    ordered = in_queue_order(candidates, request.now, request.policy)
    cpu_jobs: list[Job] = []
    gpu_jobs: list[Job] = []
    for job in ordered:
        (gpu_jobs if job.spec.gpus else cpu_jobs).append(job)
    cpu_busy = sum(1 for j in holders if j.spec.gpus == 0)
    starts = _start_cpu_jobs(cpu_jobs, cpu_busy, request.policy, waiting)
    gpu_starts, drain = _start_gpu_jobs(gpu_jobs, loads, request, waiting)
    starts += gpu_starts
    return SchedulingReply(
        starts=tuple(starts),
        waiting=waiting,
        cancels=tuple(cancels),
        ramped=tuple(ramped),
        drained_for=None if drain is None else drain.job_id,
        drain=drain,
        next_decision_at=_next_decision_at(request, holders, ramping, gpu_jobs, starts),
    )


def _next_decision_at(
    request: SchedulingRequest,
    holders: Sequence[Job],
    ramping: set[int],
    queued: Sequence[Job],
    starts: Sequence[Start],
) -> float | None:
    """The earliest future time at which this pass's answer could change with no event:
    a ramp-up window ends (its reservation drops), or a waiting job reaches the backfill
    bound (its GPUs get drained). Started-now jobs open a ramp window of their own."""
    policy, now = request.policy, request.now
    times = [
        j.started_at + policy.ramp_timeout_s
        for j in holders
        if j.id in ramping and j.started_at is not None
    ]
    if starts and any(s.gpu_uuids for s in starts):
        times.append(now + policy.ramp_timeout_s)
    if policy.backfill and math.isfinite(policy.max_head_wait_s):
        started = {s.job_id for s in starts}
        waits = (j.waiting_since for j in queued if j.id not in started)
        oldest = min(waits, default=None)
        if oldest is not None:
            times.append(oldest + policy.max_head_wait_s)
    return min((t for t in times if t > now), default=None)


def _ramped(holders: Sequence[Job], request: SchedulingRequest) -> list[Verdict]:
    verdicts = []
    for job in holders:
        if job.state is not JobState.STARTING:
            continue
        usage = request.usage.get(job.id, {})
        if is_ramped(job, usage, request.now, request.policy):
            verdicts.append(Verdict(job.id, _ramp_reason(job, request)))
    return verdicts


def _ramp_reason(job: Job, request: SchedulingRequest) -> str:
    if job.spec.gpus == 0:
        return "CPU-only job: nothing to reserve"
    started = request.now if job.started_at is None else job.started_at
    if request.now - started >= request.policy.ramp_timeout_s:
        return f"ramp-up window of {request.policy.ramp_timeout_s:.0f} s passed"
    return f"seen at its expected {format_bytes(job.expected.mem_bytes)} per GPU"


def _eligible(
    request: SchedulingRequest, waiting: dict[int, str]
) -> tuple[list[Job], list[Verdict]]:
    """Queued jobs whose dependencies have all succeeded; note why the others wait."""
    states: dict[int, JobState] = {}
    if any(j.spec.after for j in request.jobs):  # built only when some job needs it
        states.update(request.dependency_states)
        states.update((j.id, j.state) for j in request.jobs)
    candidates: list[Job] = []
    cancels: list[Verdict] = []
    queued, held = JobState.QUEUED, JobState.HELD
    for job in request.jobs:
        if job.state is not queued:
            if job.state is held:
                waiting[job.id] = "held: `gpugate release` to queue it"
            continue
        if not job.spec.after:  # the common case, kept cheap for 100k-job queues
            candidates.append(job)
            continue
        can_run, why = dependency_verdict(job, states)
        if not can_run:
            cancels.append(Verdict(job.id, why or "dependency cannot succeed"))
        elif why is not None:
            waiting[job.id] = why
        else:
            candidates.append(job)
    cancels.sort(key=lambda v: v.job_id)  # the store may list jobs in any order
    return candidates, cancels


def _start_cpu_jobs(
    jobs: Sequence[Job], busy: int, policy: Policy, waiting: dict[int, str]
) -> list[Start]:
    """CPU-only jobs use their own slots: they never wait behind GPU jobs."""
    slots = policy.max_cpu_jobs
    starts: list[Start] = []
    for job in jobs:
        if slots is not None and busy >= slots:
            waiting[job.id] = f"all {slots} CPU-job slots busy"
            continue
        busy += 1
        starts.append(Start(job.id, (), "CPU-only job: a CPU-job slot is free"))
    return starts


def _start_gpu_jobs(
    jobs: Sequence[Job],
    loads: dict[str, GpuLoad],
    request: SchedulingRequest,
    waiting: dict[int, str],
) -> tuple[list[Start], Drain | None]:
    """Greedy in queue order; later jobs backfill around a blocked head within its bound."""
    policy = request.policy
    fits = FIT_CHECKS[policy.admission]
    starts: list[Start] = []
    head: Job | None = None
    drain: Drain | None = None
    refusals: dict[Shape, str] = {}  # same shape, same loads -> same answer: 100k jobs stay cheap
    for job in _drained_job_first(jobs, request.drain):
        if head is not None and not policy.backfill:
            waiting[job.id] = f"behind job {head.id} (backfill is off)"
            continue
        shape: Shape = (
            job.spec.gpus,
            job.expected.mem_bytes,
            job.expected.util_pct,
            job.spec.exclusive,
        )
        if shape in refusals:
            waiting[job.id] = refusals[shape]
            continue
        chosen, why = place(job, loads.values(), fits, policy)
        if why is not None:
            refusals[shape] = waiting[job.id] = why
            if head is None:
                head = job
                if _past_backfill_bound(job, request):
                    drain = _drain_for(job, loads, request.drain)
                    waiting[job.id] = f"{why}; backfill stopped for it (waited past bound)"
                    refusals.clear()
            continue
        starts.append(Start(job.id, tuple(g.view.uuid for g in chosen), _admit_reason(chosen, job)))
        for load in chosen:
            reserve(load, job)
        refusals.clear()
    return starts, drain


def _drained_job_first(jobs: Sequence[Job], drain: Drain | None) -> Sequence[Job]:
    """The job the last pass drained for stays the head until it starts: otherwise each new
    arrival that outranks it would get a drain of its own, and the GPUs already emptied
    for it would be handed out again."""
    if drain is None:
        return jobs
    first = [j for j in jobs if j.id == drain.job_id]
    if not first:
        return jobs
    return [*first, *(j for j in jobs if j.id != drain.job_id)]


def _past_backfill_bound(job: Job, request: SchedulingRequest) -> bool:
    policy = request.policy
    return policy.backfill and request.now - job.waiting_since >= policy.max_head_wait_s


def _drain_for(head: Job, loads: dict[str, GpuLoad], previous: Drain | None) -> Drain:
    """Keep the head's future GPUs free: those that could hold it once gpugate jobs end.
    The ones drained for it last pass first (they are emptying), then the ones with the
    fewest gpugate jobs and the least memory in use."""
    need = head.expected.mem_bytes or 0
    kept = previous.gpu_uuids if previous is not None and previous.job_id == head.id else ()
    able = [g for g in loads.values() if g.mem_cap_bytes >= need]
    able.sort(key=lambda g: (g.view.uuid not in kept, len(g.job_ids), g.mem_bytes, g.view.index))
    chosen = able[: head.spec.gpus]
    for load in chosen:
        load.drained_for = head.id
    return Drain(head.id, tuple(g.view.uuid for g in chosen))


def _admit_reason(chosen: Sequence[GpuLoad], job: Job) -> str:
    parts = []
    for load in chosen:
        mem_after = load.mem_bytes + (job.expected.mem_bytes or 0)
        parts.append(
            f"{load.label} mem {format_bytes(mem_after)} of {format_bytes(load.mem_cap_bytes)},"
            f" util {load.util_pct:.0f}% of {load.limits.util_headroom_pct:.0f}%"
        )
    return "fits: " + "; ".join(parts)
