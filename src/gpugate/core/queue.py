"""Queue order (priority with aging and expected run time) and dependency checks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from gpugate.core.fairshare import fair_share_points
from gpugate.core.policy import Policy, QueueOrder
from gpugate.model import Job
from gpugate.states import JobState

SECONDS_PER_HOUR = 3600.0
REFERENCE_RUN_S = 3600.0  # a job expected to run this long gets no run-time points
MIN_RUN_S, MAX_RUN_S = 60.0, 7 * 24 * 3600.0


def effective_priority(job: Job, now: float, aging_per_hour: float) -> float:
    """Priority plus what waiting earned: ``priority + aging_per_hour * hours_waited``
    (hours since submit, or since release from hold).

    With aging > 0 any job eventually outranks a fixed stream of higher-priority arrivals,
    so low priorities never starve.
    """
    waited_h = max(0.0, now - job.waiting_since) / SECONDS_PER_HOUR
    return job.priority + aging_per_hour * waited_h


def run_time_points(job: Job, weight: float) -> float:
    """``weight x log2(1 h / expected run time)``: points for being short (weighted
    shortest job first, Smith's rule, in log form so it adds to priority points).

    Unknown run time: 0. Estimates are clamped to [1 min, 1 week], so a job that once
    took a second cannot jump a whole priority class on noise alone.
    """
    run_s = job.expected.run_s
    if run_s is None or weight == 0:
        return 0.0
    clamped = min(max(run_s, MIN_RUN_S), MAX_RUN_S)
    return weight * math.log2(REFERENCE_RUN_S / clamped)


def in_queue_order(
    jobs: Sequence[Job],
    now: float,
    policy: Policy,
    user_usage: Mapping[int, float] | None = None,
    last_start_by_user: Mapping[int, float] | None = None,
) -> list[Job]:
    """The order in which ``schedule()`` considers queued jobs (``policy.order``)."""
    if policy.order is QueueOrder.FIFO:
        return sorted(jobs, key=lambda job: (job.waiting_since, job.id))
    if policy.order is QueueOrder.SHORTEST_FIRST:
        return sorted(jobs, key=_shortest_first_key)
    owners = {job.spec.owner_uid for job in jobs}
    fair = fair_share_points(user_usage or {}, owners, policy)
    served = (last_start_by_user or {}) if fair else {}
    return _by_priority(jobs, now, policy, fair, served)


def _by_priority(
    jobs: Sequence[Job],
    now: float,
    policy: Policy,
    fair: Mapping[int, float],
    served: Mapping[int, float],
) -> list[Job]:
    """Highest rank first: effective priority plus run-time points plus fair-share
    points (``fair``, by owner; empty with one user); FIFO (submit time, then id) among
    equals.

    With fair share in play (``served``: when each user's latest job started), a job
    ages only from the later of its queueing and its owner's latest start: aging then
    rescues a user nobody serves, and a deep backlog earns no more than a short one
    (otherwise a user's oldest job, waiting for days behind their own queue, would
    outrank fair share; docs/benchmarks.md §10).

    Aging is linear, so ``priority + rate * (now - submitted)`` orders jobs exactly like
    ``priority - rate * submitted``: the key does not depend on ``now`` (jobs submitted in
    the future, which only a test can make, are the exception and clamp to no aging).
    """
    rate = policy.aging_per_hour / SECONDS_PER_HOUR
    weight = policy.run_time_weight

    def key(job: Job) -> tuple[float, float, int]:
        since = job.waiting_since
        if served:
            since = max(since, served.get(job.spec.owner_uid, since))
        waited = now - since if now > since else 0.0
        rank = job.priority + rate * waited + run_time_points(job, weight)
        if fair:
            rank += fair.get(job.spec.owner_uid, 0.0)
        return -rank, job.submitted_at, job.id

    return sorted(jobs, key=key)


def _shortest_first_key(job: Job) -> tuple[float, float, int]:
    run_s = job.expected.run_s
    return (math.inf if run_s is None else run_s), job.submitted_at, job.id


def dependency_verdict(job: Job, states: Mapping[int, JobState]) -> tuple[bool, str | None]:
    """``(can_ever_run, reason_it_waits)`` for a job's ``--after`` list.

    A dependency that ended in anything but success, or that does not exist, means the
    job can never run. One still active makes it wait.
    """
    for dep in job.spec.after:
        state = states.get(dep)
        if state is None:
            return False, f"dependency job {dep} does not exist"
        if state is JobState.SUCCEEDED:
            continue
        if state.is_terminal:
            return False, f"dependency job {dep} ended {state.value}"
        return True, f"after job {dep} ({state.value})"
    return True, None
