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
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from gpugate.core.admission import FIT_CHECKS
from gpugate.core.load import GpuLoad, build_loads, reserve
from gpugate.core.placement import place
from gpugate.core.policy import Policy
from gpugate.core.types import Drain, GpuView, Preemption, SchedulingRequest, Verdict
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
    pass_loads: Mapping[str, GpuLoad],
) -> tuple[tuple[Preemption, ...], Drain | None]:
    """The victims for the highest-ranked refused job that some can make room for, and
    the drain that keeps the room for it: the GPUs it will get are kept free of anything
    new until it starts (a higher-ranked job, e.g. a shorter one of lower priority, would
    otherwise take the room, and the victims would have yielded for nothing)."""
    if preemption_under_way(request.jobs):
        # keep the room for the job the victims are yielding to, until it starts
        kept = request.drain
        still_waiting = kept is not None and any(j.id == kept.job_id for j in refused)
        return (), kept if still_waiting else None
    scene = _Scene(request, holders, ramping, started_now, pass_loads)
    for waiting in refused[:MAX_WAITERS]:
        candidates = _candidates(waiting, holders, request)
        if not candidates:
            continue
        victims, gpus = _fewest_victims(waiting, candidates, scene)
        if victims:
            orders = tuple(_preemption(v, waiting, request.now) for v in victims)
            return orders, Drain(waiting.id, gpus)
    return (), None


def preemption_under_way(jobs: Sequence[Job]) -> bool:
    """One at a time: a job asked to checkpoint or to end is still on its GPUs, or one
    that yielded (suspended, or requeued) still waits for the job it yielded to to start."""
    waiting = {j.id for j in jobs if j.state is JobState.QUEUED}
    return any(j.checkpoint_requested_at is not None or j.preempted_for in waiting for j in jobs)


def victims_come_of_age(
    holders: Sequence[Job], refused: Sequence[Job], policy: Policy, now: float
) -> float | None:
    """When the first preemptible job now too young to yield (``preempt_min_run_s``)
    comes of age, if some refused job outranks it: the pass must run again then, as no
    event would wake it (a later pass could preempt it). None when there is nothing to
    wait for."""
    top = max((j.priority for j in refused), default=None)
    if top is None:
        return None
    times = [
        job.started_at + policy.preempt_min_run_s
        for job in holders
        if job.state is JobState.RUNNING
        and job.spec.preempt is not PreemptMode.NEVER
        and job.priority < top
        and job.started_at is not None
        and job.started_at + policy.preempt_min_run_s > now
        and job.preemptions < policy.max_preemptions
    ]
    return min((t for t in times if math.isfinite(t)), default=None)


def yielded_to_waiting(job: Job, queued_ids: set[int]) -> bool:
    """A requeued victim does not start while the job it made room for still waits: it
    would take the room back (it kept its place, and has aged while it ran)."""
    return job.preempted_for is not None and job.preempted_for in queued_ids


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
        and job.started_at + policy.preempt_min_run_s <= now  # as victims_come_of_age
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
        if frees_memory(job, request.policy)
    )
    return job.priority, lost, -freed, job.id


@dataclass(frozen=True, slots=True)
class _Scene:
    """What the pass knows, to rebuild the GPUs as they would be without some jobs."""

    request: SchedulingRequest
    holders: Sequence[Job]
    ramping: set[int]
    started_now: Sequence[tuple[Job, Sequence[str]]]
    pass_loads: Mapping[str, GpuLoad]  # for the drains and holds this pass made

    def placed_without(self, waiting: Job, victims: Sequence[Job]) -> tuple[str, ...]:
        """The GPUs ``waiting`` would get once ``victims`` yielded; empty if none."""
        loads = self.loads_without(victims)
        policy = self.request.policy
        chosen = place(waiting, loads.values(), FIT_CHECKS[policy.admission], policy)
        return tuple(load.view.uuid for load in chosen)

    def loads_without(self, victims: Sequence[Job]) -> dict[str, GpuLoad]:
        """The GPUs once ``victims`` yielded, with this pass's starts, drains and holds.
        A suspended victim stays on its GPUs with its memory: only its compute goes."""
        request = self.request
        freed = {v.id for v in victims if frees_memory(v, request.policy)}
        views = [_minus(view, victims, request.usage, freed) for view in request.gpus]
        kept = [job for job in self.holders if job.id not in freed]
        loads = build_loads(views, kept, request.usage, request.policy, self.ramping)
        for uuid, load in loads.items():
            before = self.pass_loads.get(uuid)
            if before is not None:
                load.drained_for = before.drained_for
                load.held_for, load.hold_slack_s = before.held_for, before.hold_slack_s
        for job, uuids in self.started_now:
            for uuid in uuids:
                if uuid in loads:
                    reserve(loads[uuid], job)
        return loads


def _fewest_victims(
    waiting: Job, candidates: Sequence[Job], scene: _Scene
) -> tuple[tuple[Job, ...], tuple[str, ...]]:
    """The fewest victims that make room, and the GPUs ``waiting`` would then get."""
    if scene.placed_without(waiting, ()):
        return (), ()  # it waits for something preemption does not change (a drain, a hold)
    for count in range(1, min(MAX_VICTIMS, len(candidates)) + 1):
        for victims in itertools.combinations(candidates, count):
            gpus = scene.placed_without(waiting, victims)
            if gpus:
                return victims, gpus
    return (), ()


def _memory_back(job: Job, held: Sequence[GpuLoad], policy: Policy) -> bool:
    """Room on each of its GPUs for the memory a transparently suspended job had (its
    peak, else what it expected; unknown: an idle GPU); reserved at once if so."""
    need = job.peak_mem_bytes or job.expected.mem_bytes
    if need is None:
        if not all(g.is_idle(policy) for g in held):
            return False
        need = max((g.mem_cap_bytes for g in held), default=0)
    if not all(g.mem_cap_bytes - g.mem_bytes >= need for g in held):
        return False
    for load in held:
        load.mem_bytes += need
    return True


def _memory_allows(waiting: Job, loads: Mapping[str, GpuLoad]) -> bool:
    """Could ``waiting`` fit by memory alone? If not, a stopped job (which keeps its
    memory) is no help to it. Exclusive and unknown-size jobs need idle GPUs: no help."""
    need = waiting.expected.mem_bytes
    if need is None or waiting.spec.exclusive:
        return False
    room = sum(1 for g in loads.values() if g.mem_cap_bytes - g.mem_bytes >= need)
    return room >= waiting.spec.gpus


def frees_memory(job: Job, policy: Policy) -> bool:
    """Checkpoint and requeue free a job's GPU memory; suspend does only through
    cuda-checkpoint (the daemon says whether it works here)."""
    if job.spec.preempt is PreemptMode.SUSPEND:
        return policy.suspend_releases_memory
    return job.spec.preempt in FREES_MEMORY


def _minus(
    view: GpuView,
    victims: Sequence[Job],
    usage: Mapping[int, Mapping[str, JobUsage]],
    freed: set[int],
) -> GpuView:
    mem, util = view.mem_used_bytes, view.util_pct
    for victim in victims:
        seen = usage.get(victim.id, {}).get(view.uuid)
        if seen is None:
            continue
        if victim.id in freed:
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
    suspended: Sequence[Job], queued: Sequence[Job], loads: dict[str, GpuLoad], policy: Policy
) -> list[Verdict]:
    """Jobs the scheduler suspended that go on: once the job they yielded to no longer
    waits, or waits although they are stopped (stopping them did not help it), and their
    compute fits again (or they are alone on their GPUs). Never ahead of a queued job of
    higher priority. Their utilization is added to ``loads`` at once, so the queued jobs
    placed after them do not take it."""
    by_id = {j.id: j for j in queued}
    verdicts = []
    for job in sorted(suspended, key=lambda j: (-j.priority, j.id)):
        if job.cancel_requested:
            continue  # it is being stopped for good: nothing to bring back
        beneficiary = by_id.get(job.preempted_for) if job.preempted_for is not None else None
        if beneficiary is not None and _memory_allows(beneficiary, loads):
            continue  # it waits for the compute this job freed (the utilization mean lags)
        others = (j for j in queued if j.spec.gpus and j is not beneficiary)
        if any(j.priority > job.priority for j in others):
            continue  # higher-priority queued work goes first
        held = [loads[u] for u in job.gpu_uuids if u in loads]
        if any(g.exclusive_job not in (None, job.id) or g.whole_job is not None for g in held):
            continue  # a job took its GPU to itself meanwhile
        add = job.peak_util_pct if job.peak_util_pct is not None else job.expected.util_pct
        alone = all(g.job_ids in ([job.id], []) for g in held)
        if not (alone or all(g.util_pct + add <= g.limits.util_headroom_pct for g in held)):
            continue
        if job.gpu_memory_released and not _memory_back(job, held, policy):
            continue  # its memory comes back on resume: it must fit again first
        for load in held:
            load.util_pct += add
        why = "no longer waits" if beneficiary is None else "was not helped by it"
        verdicts.append(Verdict(job.id, f"resumed: job {job.preempted_for} {why}"))
    return verdicts
