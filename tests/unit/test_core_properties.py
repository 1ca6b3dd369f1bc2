"""Invariants of ``schedule()`` on random machines, running jobs and queues.

The headroom invariant is checked against its own accounting, written here from the
documented rule rather than imported from the core: a declared-size job that holds a GPU
counts ``max(observed, expected)`` memory, a job still ramping also reserves the
utilization it has not reached yet, and a new start counts its full expectation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpugate.core.policy import GpuLimits, Policy
from gpugate.core.schedule import schedule
from gpugate.core.types import GpuView, SchedulingReply, SchedulingRequest
from gpugate.model import WHOLE_GPU, Expectation, ExpectationSource, Job, JobUsage
from gpugate.states import JobState
from gpugate.units import GiB
from tests.unit.factories import job as factory_job

NOW = 10_000.0
SETTINGS = settings(max_examples=200, deadline=None)
SIZES_GIB = (8, 16, 24, 40, 80)
UTIL_PCT = st.sampled_from((None, 0.0, 10.0, 35.5, 60.0, 85.0, 89.9, 90.0, 95.0, 100.0))


# ---------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------
@st.composite
def gpu_views(draw: st.DrawFn) -> list[GpuView]:
    views = []
    for index in range(draw(st.integers(1, 8))):
        total = draw(st.sampled_from(SIZES_GIB)) * GiB
        used = draw(st.integers(0, total))
        util = draw(UTIL_PCT)
        views.append(GpuView(f"GPU-{index}", index, total, used, util))
    return views


@st.composite
def expectations(draw: st.DrawFn, unknown: bool) -> Expectation:
    if unknown and draw(st.booleans()):
        return WHOLE_GPU
    mem = draw(st.integers(1, 40)) * GiB // 2
    util = float(draw(st.sampled_from((0, 5, 10, 25, 40, 60, 95))))
    return Expectation(mem, util, ExpectationSource.DECLARED)


def make_job(job_id: int, expected: Expectation, *, gpus: int, **fields: Any) -> Job:
    return factory_job(job_id, gpus=gpus, expected=expected, **fields)


@st.composite
def holders(
    draw: st.DrawFn, gpus: Sequence[GpuView]
) -> tuple[list[Job], dict[int, dict[str, JobUsage]]]:
    """Jobs already on the GPUs (ids 1..), some of unknown size or exclusive, and what
    the monitor saw them use."""
    jobs: list[Job] = []
    usage: dict[int, dict[str, JobUsage]] = {}
    uuids = [g.uuid for g in gpus]
    for job_id in range(1, draw(st.integers(0, 6)) + 1):
        on = tuple(draw(st.lists(st.sampled_from(uuids), min_size=1, max_size=2, unique=True)))
        state = draw(st.sampled_from((JobState.STARTING, JobState.RUNNING)))
        started_at = NOW - draw(st.sampled_from((0.0, 5.0, 30.0, 59.0, 60.0, 600.0)))
        job = make_job(
            job_id,
            draw(expectations(unknown=True)),
            gpus=len(on),
            state=state,
            exclusive=draw(st.integers(0, 5)) == 0,
            on=on,
            started_at=started_at,
        )
        jobs.append(job)
        usage[job_id] = {
            uuid: JobUsage(draw(st.integers(0, 20)) * GiB, draw(UTIL_PCT))
            for uuid in on
            if draw(st.booleans())
        }
    return jobs, usage


@st.composite
def queued(draw: st.DrawFn, first_id: int, n_gpus: int, mixed: bool, unknown: bool) -> list[Job]:
    """Jobs waiting to start. ``mixed`` adds CPU-only, exclusive, held and dependent ones."""
    jobs = []
    count = draw(st.integers(0, 10))
    for job_id in range(first_id, first_id + count):
        gpus = draw(st.integers(0 if mixed else 1, min(3, n_gpus + 1)))
        after: tuple[int, ...] = ()
        if mixed and draw(st.booleans()):
            after = tuple(draw(st.lists(st.integers(1, first_id + count + 2), max_size=2)))
        state = JobState.HELD if mixed and draw(st.integers(0, 9)) == 0 else JobState.QUEUED
        job = make_job(
            job_id,
            draw(expectations(unknown)),
            gpus=gpus,
            state=state,
            priority=draw(st.integers(0, 3)),
            submitted_at=float(draw(st.integers(0, int(NOW)))),
            exclusive=mixed and draw(st.integers(0, 4)) == 0,
            after=after,
        )
        jobs.append(job)
    return jobs


@st.composite
def policies(draw: st.DrawFn, aging: bool = True) -> Policy:
    line = GpuLimits(
        util_headroom_pct=draw(st.sampled_from((50.0, 90.0, 100.0))),
        mem_headroom_pct=draw(st.sampled_from((50.0, 90.0, 100.0))),
    )
    return Policy(
        limits=line,
        per_gpu_limits={"1": GpuLimits(util_headroom_pct=70.0, mem_headroom_pct=75.0)},
        aging_per_hour=draw(st.sampled_from((0.0, 1.0, 5.0))) if aging else 0.0,
        backfill=draw(st.booleans()),
        max_head_wait_s=draw(st.sampled_from((0.0, 1800.0, 1e9))),
        max_cpu_jobs=draw(st.none() | st.integers(0, 3)),
    )


@st.composite
def requests(
    draw: st.DrawFn, mixed: bool = True, unknown: bool = True, aging: bool = True
) -> SchedulingRequest:
    gpus = draw(gpu_views())
    held, usage = draw(holders(gpus))
    waiting = draw(queued(len(held) + 1, len(gpus), mixed, unknown))
    deps = {
        job_id: draw(st.sampled_from((JobState.SUCCEEDED, JobState.FAILED)))
        for job_id in range(1, len(held) + len(waiting) + 3)
        if draw(st.booleans())
    }
    return SchedulingRequest(
        now=NOW,
        gpus=gpus,
        jobs=held + waiting,
        policy=draw(policies(aging)),
        usage=usage,
        dependency_states=deps,
    )


# ---------------------------------------------------------------------------------------
# The headroom invariant, with its own accounting
# ---------------------------------------------------------------------------------------
def is_ramping(job: Job, request: SchedulingRequest) -> bool:
    policy = request.policy
    if job.state is not JobState.STARTING or job.started_at is None:
        return False
    if request.now - job.started_at >= policy.ramp_timeout_s:
        return False
    if job.expected.mem_bytes is None:
        return True
    seen = request.usage.get(job.id, {})
    level = policy.ramp_level * job.expected.mem_bytes
    return not all(u in seen and seen[u].mem_bytes >= level for u in job.gpu_uuids)


def load_after(
    request: SchedulingRequest, reply: SchedulingReply, view: GpuView
) -> tuple[int, float]:
    """(memory bytes, utilization %) on ``view`` once the reply's starts are counted."""
    mem = view.mem_used_bytes
    util = view.util_pct or 0.0
    by_id = {j.id: j for j in request.jobs}
    for job in request.jobs:
        if not job.state.holds_gpus or view.uuid not in job.gpu_uuids:
            continue
        seen = request.usage.get(job.id, {}).get(view.uuid)
        if job.expected.mem_bytes is not None:
            mem += max(0, job.expected.mem_bytes - (seen.mem_bytes if seen else 0))
        if is_ramping(job, request):
            seen_util = seen.util_pct if seen and seen.util_pct is not None else 0.0
            util += max(0.0, job.expected.util_pct - seen_util)
    for start in reply.starts:
        if view.uuid in start.gpu_uuids:
            mem += by_id[start.job_id].expected.mem_bytes or 0
            util += by_id[start.job_id].expected.util_pct
    return mem, util


@SETTINGS
@given(requests(mixed=False, unknown=False))
def test_starts_keep_every_gpu_under_its_memory_and_util_lines(request: SchedulingRequest) -> None:
    """(1) A GPU that receives a start ends the pass under both of its headroom lines."""
    reply = schedule(request)
    for view in request.gpus:
        if not any(view.uuid in s.gpu_uuids for s in reply.starts):
            continue  # a GPU overloaded before the pass is not the scheduler's doing
        limits = request.policy.limits_for(view.uuid, view.index)
        mem, util = load_after(request, reply, view)
        assert mem <= view.mem_total_bytes * limits.mem_headroom_pct / 100
        assert util <= limits.util_headroom_pct
        assert (view.util_pct or 0.0) < limits.util_headroom_pct


# ---------------------------------------------------------------------------------------
# The shape of the reply
# ---------------------------------------------------------------------------------------
def assert_every_pending_job_is_answered_once(
    request: SchedulingRequest, reply: SchedulingReply
) -> None:
    started = [s.job_id for s in reply.starts]
    cancelled = [v.job_id for v in reply.cancels]
    pending = [j.id for j in request.jobs if j.state in (JobState.QUEUED, JobState.HELD)]

    assert sorted(started + cancelled + list(reply.waiting)) == sorted(pending)
    assert all(reason.strip() for reason in reply.waiting.values())
    assert all(v.reason.strip() for v in reply.cancels)


def assert_starts_are_placed_on_distinct_existing_gpus(
    request: SchedulingRequest, reply: SchedulingReply
) -> None:
    by_id = {j.id: j for j in request.jobs}
    uuids = {g.uuid for g in request.gpus}
    for start in reply.starts:
        job = by_id[start.job_id]
        assert job.state is JobState.QUEUED
        assert len(start.gpu_uuids) == len(set(start.gpu_uuids)) == job.spec.gpus
        assert set(start.gpu_uuids) <= uuids
        assert start.reason


def assert_nothing_joins_exclusive_or_ramping_unknown_size_jobs(
    request: SchedulingRequest, reply: SchedulingReply
) -> None:
    blocked = {
        uuid
        for job in request.jobs
        if job.state.holds_gpus
        and (job.spec.exclusive or (job.expected.whole_gpu and is_ramping(job, request)))
        for uuid in job.gpu_uuids
    }
    for start in reply.starts:
        assert not blocked & set(start.gpu_uuids)


def assert_ramped_are_the_starting_jobs_past_ramp_up(
    request: SchedulingRequest, reply: SchedulingReply
) -> None:
    ramped = [v.job_id for v in reply.ramped]
    expected = [
        j.id for j in request.jobs if j.state is JobState.STARTING and not is_ramping(j, request)
    ]
    assert sorted(ramped) == sorted(expected)


@SETTINGS
@given(requests())
def test_the_reply_answers_for_every_job(request: SchedulingRequest) -> None:
    """(2) Starts, waiting and cancels partition the queued and held jobs, every waiting job
    has a reason, every start has exactly ``spec.gpus`` distinct GPUs that exist; nothing
    joins an exclusive job or a ramping unknown-size job; ``ramped`` lists exactly the
    starting jobs past their ramp-up."""
    reply = schedule(request)

    assert_every_pending_job_is_answered_once(request, reply)
    assert_starts_are_placed_on_distinct_existing_gpus(request, reply)
    assert_nothing_joins_exclusive_or_ramping_unknown_size_jobs(request, reply)
    assert_ramped_are_the_starting_jobs_past_ramp_up(request, reply)


# ---------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------
@SETTINGS
@given(st.data())
def test_the_reply_depends_on_the_request_only_not_on_job_order(data: st.DataObject) -> None:
    """(3) The same request gets the same reply; (4) the store may list the jobs in any
    order: the decision, its reasons and the order of the verdicts are the same."""
    request = data.draw(requests())
    shuffled = dataclasses.replace(request, jobs=data.draw(st.permutations(request.jobs)))
    reply = schedule(request)

    assert schedule(request) == reply
    assert schedule(shuffled) == reply


# ---------------------------------------------------------------------------------------
# Priority
# ---------------------------------------------------------------------------------------
def shape(job: Job) -> tuple[int, int | None, float, bool]:
    return (job.spec.gpus, job.expected.mem_bytes, job.expected.util_pct, job.spec.exclusive)


@SETTINGS
@given(requests(mixed=False, aging=False))
def test_a_job_never_waits_while_a_lower_priority_job_of_its_shape_starts(
    request: SchedulingRequest,
) -> None:
    """(5) Without aging, priority decides among jobs that ask for the same thing."""
    reply = schedule(request)
    by_id = {j.id: j for j in request.jobs}
    starts = [by_id[s.job_id] for s in reply.starts]
    for waiting_id in reply.waiting:
        waiter = by_id[waiting_id]
        for other in starts:
            assert not (shape(other) == shape(waiter) and other.priority < waiter.priority)
