"""``schedule()``: the one brain that the daemon, the simulator and the tests all drive.

Pure: it reads a SchedulingRequest (time included) and returns a SchedulingReply. No
clock, no I/O, no NVML: so every decision is reproducible and carries its reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter

from gpugate.core.admission import (
    FIT_CHECKS,
    SCREENS,
    idle_util_added,
    screen_refuses,
    util_line,
)
from gpugate.core.load import GpuLoad, build_loads, is_ramped, reserve
from gpugate.core.placement import RefusalWriter, place
from gpugate.core.policy import Policy
from gpugate.core.preemption import (
    choose_preemptions,
    resumable,
    victims_come_of_age,
    yielded_to_waiting,
)
from gpugate.core.queue import dependency_verdict, in_queue_order
from gpugate.core.quota import GpuQuota
from gpugate.core.types import (
    Drain,
    Preemption,
    ReasonWriter,
    SchedulingReply,
    SchedulingRequest,
    Start,
    Verdict,
    WaitingReasons,
)
from gpugate.model import Job, PreemptMode
from gpugate.states import JobState
from gpugate.units import format_bytes

HOLDING = frozenset({JobState.STARTING, JobState.RUNNING, JobState.SUSPENDED})  # on the GPUs
_waiting_since = attrgetter("waiting_since")
_job_id = attrgetter("id")


def schedule(request: SchedulingRequest) -> SchedulingReply:
    """Decide which queued jobs start now and where; say why every other one waits."""
    waiting = WaitingReasons()
    jobs = _sort_out(request, waiting)
    holders = jobs.holders
    ramped = _ramped(holders, request)
    done_ramping = {v.job_id for v in ramped}
    ramping = {j.id for j in holders if j.state is JobState.STARTING} - done_ramping
    loads = build_loads(request.gpus, holders, request.usage, request.policy, ramping)
    queued = _not_yielded(jobs.queued, waiting)
    ordered = in_queue_order(
        queued, request.now, request.policy, request.user_usage, request.last_start_by_user
    )
    cpu_jobs: list[Job] = []
    gpu_jobs = ordered
    if jobs.cpu_queued:  # split only when there is something to split: it costs a sweep
        cpu_jobs = [j for j in ordered if not j.spec.gpus]
        gpu_jobs = [j for j in ordered if j.spec.gpus]
    cpu_busy = sum(1 for j in holders if j.spec.gpus == 0)
    starts = _start_cpu_jobs(cpu_jobs, cpu_busy, request.policy, waiting)
    resumes = _resumes(holders, jobs.queued, loads, request.policy)
    free_at = _expected_free_at(holders, request.now)
    gpu_starts, drain, over_quota = _start_gpu_jobs(gpu_jobs, loads, free_at, request, waiting)
    starts += gpu_starts
    may_preempt_for = [j for j in gpu_jobs if j.id not in over_quota] if over_quota else gpu_jobs
    preemptions, kept_for = _preemptions(
        request, holders, ramping, may_preempt_for, gpu_starts, loads
    )
    drain = kept_for or drain
    return SchedulingReply(
        starts=tuple(starts),
        waiting=waiting,
        cancels=tuple(jobs.cancels),
        ramped=tuple(ramped),
        drained_for=None if drain is None else drain.job_id,
        drain=drain,
        next_decision_at=_next_decision_at(request, holders, ramping, gpu_jobs, starts),
        preemptions=preemptions,
        resumes=tuple(resumes),
    )


def _not_yielded(queued: list[Job], waiting: WaitingReasons) -> list[Job]:
    """Leave out requeued victims whose beneficiary still waits (they would take its room)."""
    if not any(j.preempted_for is not None for j in queued):
        return queued
    ids = {j.id for j in queued}
    kept = []
    for job in queued:
        if yielded_to_waiting(job, ids):
            waiting.note(job, f"made room for job {job.preempted_for}: waits until it starts")
        else:
            kept.append(job)
    return kept


def _resumes(
    holders: Sequence[Job], queued: Sequence[Job], loads: dict[str, GpuLoad], policy: Policy
) -> list[Verdict]:
    suspended = [
        j for j in holders if j.state is JobState.SUSPENDED and j.preempted_for is not None
    ]
    if not suspended:
        return []
    return resumable(suspended, queued, loads, policy)


def _preemptions(
    request: SchedulingRequest,
    holders: Sequence[Job],
    ramping: set[int],
    gpu_jobs: Sequence[Job],
    gpu_starts: Sequence[Start],
    loads: dict[str, GpuLoad],
) -> tuple[tuple[Preemption, ...], Drain | None]:
    """Only when some running job allowed preemption and some GPU job still waits."""
    if not request.policy.preemption:
        return (), None
    if not _any_preemptible(holders):
        return (), None
    started = {s.job_id: s.gpu_uuids for s in gpu_starts}
    refused = [j for j in gpu_jobs if j.id not in started]
    if not refused:
        return (), None
    started_now = [(j, started[j.id]) for j in gpu_jobs if j.id in started]
    return choose_preemptions(request, holders, ramping, refused, started_now, loads)


@dataclass(frozen=True, slots=True)
class _SortedOut:
    """The request's jobs by what the pass does with them."""

    holders: list[Job]  # starting or running, by id
    queued: list[Job]  # eligible to start now, not yet in queue order
    cpu_queued: bool  # whether some of them may be CPU-only
    cancels: list[Verdict]  # dependencies that can never be met, by job id


def _sort_out(request: SchedulingRequest, waiting: WaitingReasons) -> _SortedOut:
    """Holders, the queued jobs eligible to start, and why the other queued jobs wait.

    Comprehensions, as this runs over the whole queue in every pass; the job-by-job sweep
    of ``_eligible`` only when some job is held or waits for dependencies."""
    jobs = request.jobs
    is_queued = JobState.QUEUED  # looked up once: a class attribute of an enum is slow
    queued = [j for j in jobs if j.state is is_queued]
    holders = [j for j in jobs if j.state in HOLDING]
    holders.sort(key=_job_id)
    unusual = [j for j in queued if j.spec.after or not j.spec.gpus]
    cancels: list[Verdict] = []
    if len(queued) + len(holders) < len(jobs) or any(j.spec.after for j in unusual):
        queued, cancels = _eligible(request, waiting)
    cpu_queued = any(not j.spec.gpus for j in unusual)
    return _SortedOut(holders, queued, cpu_queued, cancels)


def _eligible(
    request: SchedulingRequest, waiting: WaitingReasons
) -> tuple[list[Job], list[Verdict]]:
    """Queued jobs whose dependencies have all succeeded; note why the others wait."""
    states: dict[int, JobState] | None = None  # built only when some job needs it
    candidates: list[Job] = []
    cancels: list[Verdict] = []
    for job in request.jobs:
        if job.state is not JobState.QUEUED:
            if job.state is JobState.HELD:
                waiting.note(job, "held: `gpugate release` to queue it")
            continue
        if not job.spec.after:
            candidates.append(job)
            continue
        if states is None:
            states = _job_states(request)
        can_run, why = dependency_verdict(job, states)
        if not can_run:
            cancels.append(Verdict(job.id, why or "dependency cannot succeed"))
        elif why is not None:
            waiting.note(job, why)
        else:
            candidates.append(job)
    cancels.sort(key=lambda v: v.job_id)  # the store may list jobs in any order
    return candidates, cancels


def _job_states(request: SchedulingRequest) -> dict[int, JobState]:
    states = dict(request.dependency_states)
    states.update((j.id, j.state) for j in request.jobs)
    return states


def _next_decision_at(
    request: SchedulingRequest,
    holders: Sequence[Job],
    ramping: set[int],
    queued: Sequence[Job],
    starts: Sequence[Start],
) -> float | None:
    """The earliest future time at which this pass's answer could change with no event:
    a ramp-up window ends (its reservation drops), or a waiting job reaches the backfill
    bound (its GPUs get drained), or a preemptible job outranked by a waiting one has run
    long enough to be preempted. Started-now jobs open a ramp window of their own."""
    policy, now = request.policy, request.now
    times = [
        j.started_at + policy.ramp_timeout_s
        for j in holders
        if j.id in ramping and j.started_at is not None
    ]
    if starts and any(s.gpu_uuids for s in starts):
        times.append(now + policy.ramp_timeout_s)
    started = {s.job_id for s in starts}
    still_queued = [j for j in queued if j.id not in started] if started else queued
    if policy.backfill and math.isfinite(policy.max_head_wait_s):
        oldest = min(map(_waiting_since, still_queued), default=None)
        if oldest is not None:
            times.append(oldest + policy.max_head_wait_s)
    if policy.preemption and still_queued and _any_preemptible(holders):
        of_age = victims_come_of_age(holders, still_queued, policy, now)
        if of_age is not None:
            times.append(of_age)
    return min((t for t in times if now < t < math.inf), default=None)


def _holding(request: SchedulingRequest) -> list[Job]:
    return [j for j in request.jobs if j.state in HOLDING]


def _any_preemptible(holders: Sequence[Job]) -> bool:
    return any(h.spec.preempt is not PreemptMode.NEVER for h in holders)


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


def _start_cpu_jobs(
    jobs: Sequence[Job], busy: int, policy: Policy, waiting: WaitingReasons
) -> list[Start]:
    """CPU-only jobs use their own slots: they never wait behind GPU jobs."""
    slots = policy.max_cpu_jobs
    starts: list[Start] = []
    for job in jobs:
        if slots is not None and busy >= slots:
            waiting.note(job, f"all {slots} CPU-job slots busy")
            continue
        busy += 1
        starts.append(Start(job.id, (), "CPU-only job: a CPU-job slot is free"))
    return starts


def _start_gpu_jobs(
    jobs: Sequence[Job],
    loads: dict[str, GpuLoad],
    free_at: dict[str, float],
    request: SchedulingRequest,
    waiting: WaitingReasons,
) -> tuple[list[Start], Drain | None, set[int]]:
    """Greedy in queue order; later jobs backfill around a blocked head: on the GPUs held
    for it only if expected to end in time (``hold_for_head``), and within its bound.
    Also returns the jobs held back by their owner's GPU quota (no preemption for them).

    Between two changes of the loads (a start, a hold, a drain) the moment's screen
    refuses, in one sweep, the jobs that cannot fit; their reasons are written later."""
    policy = request.policy
    moment = _Moment(loads, policy)
    quota = GpuQuota(_holding(request), policy) if GpuQuota.applies(policy) else None
    starts: list[Start] = []
    over_quota: set[int] = set()
    head: Job | None = None
    drain: Drain | None = None
    jobs = _drained_job_first(jobs, request.drain)
    index = 0
    while index < len(jobs):
        if head is not None:
            if not policy.backfill:
                waiting.note_all(jobs[index:], f"behind job {head.id} (backfill is off)")
                break
            admissible = moment.screen.first_admissible(jobs, index)
            moment.refuse(jobs[index:admissible], waiting)
            index = admissible
            if index == len(jobs):
                break
        job = jobs[index]
        index += 1
        if quota is not None and (over := quota.refusal(job)):
            waiting.note(job, over)  # waits for its owner's own jobs, not for room
            over_quota.add(job.id)
            continue
        chosen = moment.place(job)
        if not chosen:
            moment.refuse((job,), waiting)
            if head is None:
                head = job
                if _past_backfill_bound(job, request) or _room_kept_for(job, request):
                    waiting.note(job, _Suffixed(moment.writer, _STOPPED_FOR_HEAD))
                    moment.ends()
                    drain = _drain_for(job, loads, request.drain)
                    moment = _Moment(loads, policy)
                elif policy.backfill and policy.hold_for_head:
                    moment.ends()
                    _hold_for(job, loads, free_at, policy, request.now)
                    moment = _Moment(loads, policy)
            continue
        starts.append(
            Start(job.id, tuple(g.view.uuid for g in chosen), _admit_reason(chosen, job, policy))
        )
        if quota is not None:
            quota.started(job)
        moment.ends()
        for load in chosen:
            reserve(load, job)
            free_at[load.view.uuid] = max(
                free_at.get(load.view.uuid, request.now), _expected_end(job, request.now)
            )
        moment = _Moment(loads, policy)
    return starts, drain, over_quota


_STOPPED_FOR_HEAD = "; backfill stopped for it (waited past bound)"


class _Moment:
    """The loads between two changes within a pass: what decides and explains refusals."""

    __slots__ = ("_fits", "_loads", "_policy", "_refused", "screen", "writer")

    def __init__(self, loads: dict[str, GpuLoad], policy: Policy) -> None:
        self._loads = loads
        self._policy = policy
        self._fits = FIT_CHECKS[policy.admission]
        open_loads = [g for g in loads.values() if g.drained_for is None]
        self.screen = SCREENS[policy.admission](open_loads, policy)
        self.writer = RefusalWriter(list(loads.values()), self._fits, policy)
        self._refused = False

    def place(self, job: Job) -> list[GpuLoad]:
        """The GPUs the job gets; none when it waits. The screen answers most refusals;
        the rules decide the rest and choose the GPUs."""
        if screen_refuses(self.screen, job):
            return []
        return place(job, self._loads.values(), self._fits, self._policy)

    def refuse(self, jobs: Sequence[Job], waiting: WaitingReasons) -> None:
        """These jobs wait; their reasons will be written from this moment's loads."""
        if jobs:
            waiting.note_all(jobs, self.writer)
            self._refused = True

    def ends(self) -> None:
        """The loads are about to change (a start, a drain): the jobs refused in this
        moment keep the loads as they saw them."""
        if self._refused:
            self.writer.keep_as_they_are()


class _Suffixed:
    """A writer's sentence with a few words added (why a head's GPUs are drained)."""

    __slots__ = ("_suffix", "_writer")

    def __init__(self, writer: ReasonWriter, suffix: str) -> None:
        self._writer = writer
        self._suffix = suffix

    def write(self, job: Job) -> str:
        return self._writer.write(job) + self._suffix


def _expected_end(job: Job, now: float) -> float:
    """When a holder (or a job started now) is expected to end: its start plus its
    expected run time; a job already past that, or with no history, is expected to run as
    long again as it has so far (run times are heavy-tailed: the longer a job has run, the
    longer it is likely to go on)."""
    started = now if job.started_at is None else job.started_at
    run_s = job.expected.run_s
    if run_s is not None and started + run_s > now:
        return started + run_s
    return started + 2 * (now - started)


def _expected_free_at(holders: Sequence[Job], now: float) -> dict[str, float]:
    """When each GPU holding gpugate jobs is expected to hold none (absent: free now)."""
    free_at: dict[str, float] = {}
    for job in holders:
        end = _expected_end(job, now)
        for uuid in job.gpu_uuids:
            free_at[uuid] = max(free_at.get(uuid, now), end)
    return free_at


def _hold_for(
    head: Job, loads: dict[str, GpuLoad], free_at: dict[str, float], policy: Policy, now: float
) -> None:
    """Hold for the blocked head the GPUs expected to empty first (EASY backfill): until
    then they take only jobs expected to end before the head can start, so backfill never
    delays it. Only GPUs that could take the head: those running gpugate jobs (they will
    end), and empty ones where it fits now; an empty GPU that refuses it waits for
    something gpugate does not control (outside load). No hold when the head could start
    now on GPUs that refused it for such reasons: backfill stays greedy."""
    need = head.expected.mem_bytes or 0
    fits = FIT_CHECKS[policy.admission]
    able = [
        g
        for g in loads.values()
        if g.drained_for is None
        and g.mem_cap_bytes >= need
        and (g.view.uuid in free_at or fits(g, head, policy) is None)
    ]
    if len(able) < head.spec.gpus:
        return
    able.sort(key=lambda g: (free_at.get(g.view.uuid, now), g.view.index))
    chosen = able[: head.spec.gpus]
    start_at = max(free_at.get(g.view.uuid, now) for g in chosen)
    if start_at <= now:
        return
    for load in chosen:
        load.held_for = head.id
        load.hold_slack_s = start_at - now


def _drained_job_first(jobs: Sequence[Job], drain: Drain | None) -> Sequence[Job]:
    """The job the last pass drained for stays the head until it starts: otherwise each new
    arrival that outranks it would get a drain of its own, and the GPUs already emptied
    for it would be handed out again."""
    if drain is None:
        return jobs
    for index, job in enumerate(jobs):  # it waited long: most often near the front
        if job.id == drain.job_id:
            return [job, *jobs[:index], *jobs[index + 1 :]]
    return jobs


def _room_kept_for(job: Job, request: SchedulingRequest) -> bool:
    """Is ``job`` the one running jobs are yielding to (preemption)? Then the GPUs it will
    get are kept free of anything new until it starts, like a drain."""
    kept = request.drain
    if kept is None or kept.job_id != job.id:
        return False
    return any(j.preempted_for == job.id for j in request.jobs)


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


def _admit_reason(chosen: Sequence[GpuLoad], job: Job, policy: Policy) -> str:
    """Each chosen GPU's memory and utilization with the job added, against the line that
    applied to it (the share line where the GPU already runs work)."""
    parts = []
    shares = not (job.spec.exclusive or job.expected.whole_gpu)
    add = job.expected.util_pct if shares else idle_util_added(job)
    for load in chosen:
        mem_after = load.mem_bytes + (job.expected.mem_bytes or 0)
        headroom = load.limits.util_headroom_pct
        line = util_line(load, policy) if shares else headroom
        which = " share line" if line < headroom else ""
        parts.append(
            f"{load.label} mem {format_bytes(mem_after)} of {format_bytes(load.mem_cap_bytes)},"
            f" util {load.util_pct + add:.0f}% of {line:.0f}%{which}"
        )
    return "fits: " + "; ".join(parts)
