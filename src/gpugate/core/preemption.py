"""Deciding to preempt, and to resume: pure, like the rest of the core.

A waiting job may make running jobs yield only if (all of these):

- it has strictly higher priority than each of them (never for an equal or lower one);
- it cannot be admitted now, and would be once they yielded;
- they allowed it at submit (``--preempt checkpoint|suspend|requeue``), have run at least
  ``policy.preempt_min_run_s``, and were preempted fewer than ``policy.max_preemptions``
  times;
- no preemption is already under way (a job asked to checkpoint or to end is still on its
  GPUs): one at a time, so one urgent job never costs more victims than it needs.

Victims are the fewest that make room; among as few, the best by score: lowest priority
first, then least work lost (a checkpointing or suspended job loses nothing it saved; a
requeued one loses its whole run), then most memory freed, then the lowest id. What each
rung frees: checkpoint and requeue free memory and compute; suspend frees compute only (its
memory stays allocated), so it only helps a job that waits for compute.

A job the scheduler suspended resumes once the job it yielded to is no longer waiting and
its compute fits under its GPUs' lines again, before any queued job is placed.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace

from gpugate.core.admission import FIT_CHECKS
from gpugate.core.load import GpuLoad, build_loads, reserve
from gpugate.core.placement import place
from gpugate.core.types import GpuView, Preemption, SchedulingRequest, Verdict
from gpugate.model import Job, JobUsage, PreemptMode
from gpugate.states import JobState

MAX_VICTIMS = 4  # fewest first; more than this many for one job is not worth the churn
MAX_CANDIDATES = 12  # the best-scored running jobs considered (combinations stay cheap)
MAX_WAITERS = 8  # the highest-ranked waiting jobs considered in one pass
FREES_MEMORY = frozenset({PreemptMode.CHECKPOINT, PreemptMode.REQUEUE})


def choose_preemptions(
    request: SchedulingRequest,
    holders: Sequence[Job],
    ramping: set[int],
    refused: Sequence[Job],
    started_now: Sequence[tuple[Job, Sequence[str]]],
) -> tuple[Preemption, ...]:
    """The victims for the highest-ranked refused job that some can make room for."""
    if any(job.checkpoint_requested_at is not None for job in holders):
        return ()  # a job asked to checkpoint or to end is still on its GPUs: wait for it
    for waiting in refused[:MAX_WAITERS]:
        candidates = _candidates(waiting, holders, request)
        victims = _fewest_victims(waiting, candidates, request, holders, ramping, started_now)
        if victims:
            return tuple(_preemption(v, waiting, request.now) for v in victims)
    return ()


def _candidates(waiting: Job, holders: Sequence[Job], request: SchedulingRequest) -> list[Job]:
    policy, now = request.policy, request.now
    able = [
        job
        for job in holders
        if job.state is JobState.RUNNING
        and job.spec.preempt is not PreemptMode.NEVER
        and job.priority < waiting.priority
        and not job.cancel_requested
        and job.started_at is not None
        and now - job.started_at >= policy.preempt_min_run_s
        and job.preemptions < policy.max_preemptions
    ]
    able.sort(key=lambda job: _score(job, request))
    return able[:MAX_CANDIDATES]


def _score(job: Job, request: SchedulingRequest) -> tuple[int, float, int, int]:
    """Lowest priority, least work lost, most memory freed, lowest id: the best victim."""
    started = job.started_at if job.started_at is not None else request.now
    lost = request.now - started if job.spec.preempt is PreemptMode.REQUEUE else 0.0
    freed = sum(
        seen.mem_bytes
        for seen in request.usage.get(job.id, {}).values()
        if job.spec.preempt in FREES_MEMORY
    )
    return job.priority, lost, -freed, job.id


def _fewest_victims(
    waiting: Job,
    candidates: Sequence[Job],
    request: SchedulingRequest,
    holders: Sequence[Job],
    ramping: set[int],
    started_now: Sequence[tuple[Job, Sequence[str]]],
) -> tuple[Job, ...]:
    for count in range(1, min(MAX_VICTIMS, len(candidates)) + 1):
        for victims in itertools.combinations(candidates, count):
            loads = _loads_without(victims, request, holders, ramping, started_now)
            if place(waiting, loads.values(), FIT_CHECKS[request.policy.admission], request.policy):
                return victims
    return ()


def _loads_without(
    victims: Sequence[Job],
    request: SchedulingRequest,
    holders: Sequence[Job],
    ramping: set[int],
    started_now: Sequence[tuple[Job, Sequence[str]]],
) -> dict[str, GpuLoad]:
    """The GPUs as they would be once ``victims`` yielded (and this pass's starts ran)."""
    gone = {v.id for v in victims}
    views = [_minus(view, victims, request.usage) for view in request.gpus]
    kept = [job for job in holders if job.id not in gone]
    loads = build_loads(views, kept, request.usage, request.policy, ramping)
    for job, uuids in started_now:
        for uuid in uuids:
            if uuid in loads:
                reserve(loads[uuid], job)
    return loads


def _minus(
    view: GpuView, victims: Sequence[Job], usage: Mapping[int, Mapping[str, JobUsage]]
) -> GpuView:
    mem, util = view.mem_used_bytes, view.util_pct
    for victim in victims:
        seen = usage.get(victim.id, {}).get(view.uuid)
        if seen is None:
            continue
        if victim.spec.preempt in FREES_MEMORY:
            mem -= seen.mem_bytes
        if util is not None and seen.util_pct is not None:
            util -= seen.util_pct
    return replace(
        view, mem_used_bytes=max(0, mem), util_pct=None if util is None else max(0.0, util)
    )


def _preemption(victim: Job, waiting: Job, now: float) -> Preemption:
    how = victim.spec.preempt
    what = {
        PreemptMode.CHECKPOINT: "asked to checkpoint and requeue",
        PreemptMode.SUSPEND: "suspended (its GPU memory stays held)",
        PreemptMode.REQUEUE: "stopped and requeued from the start",
    }[how]
    return Preemption(
        victim.id,
        how,
        waiting.id,
        f"{what} to make room for job {waiting.id} (priority {waiting.priority} >"
        f" {victim.priority})",
    )


def resumable(
    suspended: Sequence[Job], still_waiting: set[int], loads: dict[str, GpuLoad]
) -> list[Verdict]:
    """Jobs the scheduler suspended whose beneficiary no longer waits and whose compute fits
    under their GPUs' lines again; their utilization is added to ``loads`` at once, so the
    queued jobs placed after them do not take it."""
    verdicts = []
    for job in sorted(suspended, key=lambda j: (-j.priority, j.id)):
        if job.preempted_for is None or job.preempted_for in still_waiting:
            continue
        add = job.peak_util_pct if job.peak_util_pct is not None else job.expected.util_pct
        held = [loads[u] for u in job.gpu_uuids if u in loads]
        if all(g.util_pct + add <= g.limits.util_headroom_pct for g in held):
            for load in held:
                load.util_pct += add
            verdicts.append(Verdict(job.id, f"resumed: job {job.preempted_for} no longer waits"))
    return verdicts
