"""Queue order (priority with aging, FIFO within a priority) and dependency checks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from gpugate.core.policy import Policy, QueueOrder
from gpugate.model import Job
from gpugate.states import JobState

SECONDS_PER_HOUR = 3600.0


def effective_priority(job: Job, now: float, aging_per_hour: float) -> float:
    """Priority plus what waiting earned: ``priority + aging_per_hour * hours_waited``
    (hours since submit, or since release from hold).

    With aging > 0 any job eventually outranks a fixed stream of higher-priority arrivals,
    so low priorities never starve.
    """
    waited_h = max(0.0, now - job.waiting_since) / SECONDS_PER_HOUR
    return job.priority + aging_per_hour * waited_h


def in_queue_order(jobs: Sequence[Job], now: float, policy: Policy) -> list[Job]:
    """The order in which ``schedule()`` considers queued jobs (``policy.order``)."""
    if policy.order is QueueOrder.FIFO:
        return sorted(jobs, key=lambda job: (job.waiting_since, job.id))
    if policy.order is QueueOrder.SHORTEST_FIRST:
        return sorted(jobs, key=_shortest_first_key)
    return _by_priority(jobs, now, policy.aging_per_hour)


def _by_priority(jobs: Sequence[Job], now: float, aging_per_hour: float) -> list[Job]:
    """Highest effective priority first; FIFO (submit time, then id) among equals.

    Aging is linear, so ``priority + rate * (now - submitted)`` orders jobs exactly like
    ``priority - rate * submitted``: the key does not depend on ``now`` (jobs submitted in
    the future, which only a test can make, are the exception and clamp to no aging).
    """
    rate = aging_per_hour / SECONDS_PER_HOUR

    def key(job: Job) -> tuple[float, float, int]:
        since = job.submitted_at if job.queued_at is None else job.queued_at
        waited = now - since if now > since else 0.0
        return -(job.priority + rate * waited), job.submitted_at, job.id

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
