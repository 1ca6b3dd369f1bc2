"""Deciding to preempt and to resume, in the pure core (hand-computable scenes).

One 24 GiB GPU (21.6 GiB under the 90% line) unless said otherwise; now is t=1000 s, and
the running jobs started at t=0 (past the 300 s minimum run time)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gpugate.core.policy import Policy
from gpugate.core.schedule import schedule
from gpugate.core.types import Drain, SchedulingReply
from gpugate.model import Job, PreemptMode
from gpugate.states import JobState
from tests.unit.factories import gpu, job, request, running, seen

NOW = 1000.0
CHECKPOINT, SUSPEND, REQUEUE = PreemptMode.CHECKPOINT, PreemptMode.SUSPEND, PreemptMode.REQUEUE


def allowing(j: Job, how: PreemptMode) -> Job:
    return replace(j, spec=replace(j.spec, preempt=how))


def victim(job_id: int, gib: float, how: PreemptMode = CHECKPOINT, **kw: object) -> Job:
    return allowing(running(job_id, mem_gib=gib, util_pct=kw.pop("util", 10.0), **kw), how)  # type: ignore[arg-type]


def decide(*jobs: Job, used_gib: float = 0.0, util: float = 0.0, **kw: object) -> SchedulingReply:
    """``used_gib``/``util``: what the GPU reads; each running job is seen at its expected
    memory and utilization."""
    usage = {
        j.id: {"GPU-0": seen((j.expected.mem_bytes or 0) / 2**30, j.expected.util_pct)}
        for j in jobs
        if j.state is JobState.RUNNING
    }
    return schedule(
        request([gpu(0, used_gib=used_gib, util_pct=util)], list(jobs), now=NOW, usage=usage, **kw)  # type: ignore[arg-type]
    )


def who(reply: SchedulingReply) -> list[tuple[int, PreemptMode, int]]:
    return [(p.job_id, p.how, p.for_job) for p in reply.preemptions]


def test_an_urgent_job_that_does_not_fit_makes_a_lower_one_checkpoint() -> None:
    """Job 1 (priority 0, 16 GiB, checkpointable) runs; job 2 (priority 5, 10 GiB) waits:
    16 + 10 > 21.6. Without job 1 it fits: job 1 is asked to checkpoint, for job 2."""
    reply = decide(victim(1, 16), job(2, mem_gib=10, priority=5), used_gib=16)
    assert who(reply) == [(1, CHECKPOINT, 2)]
    assert reply.preemptions[0].reason == (
        "asked to checkpoint and requeue to make room for job 2 (priority 5 > 0)"
    )
    assert reply.starts == ()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"priority": 5}, "equal priority"),
        ({"started_at": NOW - 299}, "younger than the minimum run time"),
        ({"preemptions": 3}, "preempted as often as the cap allows"),
        ({"cancel_requested": True}, "already being cancelled"),
    ],
)
def test_never_preempted(change: dict[str, object], why: str) -> None:
    target = replace(victim(1, 16), **change)  # type: ignore[arg-type]
    reply = decide(target, job(2, mem_gib=10, priority=5), used_gib=16)
    assert reply.preemptions == (), why


def test_never_a_job_that_did_not_allow_it() -> None:
    reply = decide(victim(1, 16, PreemptMode.NEVER), job(2, mem_gib=10, priority=5), used_gib=16)
    assert reply.preemptions == ()


def test_never_when_preempting_would_not_make_room() -> None:
    """Job 2 wants 30 GiB: more than the GPU has, victims or not."""
    reply = decide(victim(1, 16), job(2, mem_gib=23, priority=5), used_gib=16)
    assert reply.preemptions == ()


def test_suspend_frees_compute_not_memory() -> None:
    """Blocked by memory: a suspend-only job cannot help. Blocked by utilization (80% +
    30% > 90%): suspending it is enough."""
    by_memory = decide(victim(1, 16, SUSPEND), job(2, mem_gib=10, priority=5), used_gib=16)
    assert by_memory.preemptions == ()
    busy = victim(1, 4, SUSPEND, util=80.0)
    by_compute = decide(busy, job(2, mem_gib=4, util_pct=30, priority=5), used_gib=4, util=80.0)
    assert who(by_compute) == [(1, SUSPEND, 2)]


def test_the_fewest_victims_that_make_room() -> None:
    """Two 6 GiB jobs and one 8 GiB job run (20 GiB). Job 9 wants 8 GiB: either 6 GiB job
    alone frees too little (14 + 8 > 21.6); the 8 GiB one alone is enough."""
    jobs = [victim(1, 6), victim(2, 6), victim(3, 8), job(9, mem_gib=8, priority=5)]
    reply = decide(*jobs, used_gib=20)
    assert who(reply) == [(3, CHECKPOINT, 9)]


def test_among_single_victims_the_lowest_priority_then_the_least_work_lost() -> None:
    """Each of jobs 1-3 alone makes room (14 + 7 <= 21.6). Job 1 has priority 2, jobs 2
    and 3 priority 1; job 2 would lose its run (requeue), job 3 checkpoints: job 3."""
    jobs = [
        victim(1, 7, priority=2),
        victim(2, 7, REQUEUE, priority=1),
        victim(3, 7, priority=1),
        job(9, mem_gib=7, priority=5),
    ]
    reply = decide(*jobs, used_gib=21)
    assert who(reply) == [(3, CHECKPOINT, 9)]


def test_one_preemption_at_a_time() -> None:
    """Job 1 was already asked to checkpoint: nothing new until it has yielded."""
    asked = replace(victim(1, 8), checkpoint_requested_at=NOW - 5)
    jobs = [asked, victim(2, 8), job(9, mem_gib=10, priority=5)]
    reply = decide(*jobs, used_gib=16)
    assert reply.preemptions == ()


def test_a_suspended_job_resumes_once_its_beneficiary_started_and_compute_fits() -> None:
    suspended = replace(victim(1, 4, SUSPEND, util=60.0), state=JobState.SUSPENDED, preempted_for=9)
    still_waiting = decide(suspended, job(9, mem_gib=4, util_pct=50, priority=5), used_gib=4)
    assert still_waiting.resumes == ()
    urgent_running = running(9, mem_gib=4, util_pct=50, priority=5)
    busy = decide(suspended, urgent_running, used_gib=8, util=50.0)
    assert busy.resumes == ()  # 50% + its 60% > 90%: not yet
    done = decide(suspended, used_gib=4, util=0.0)
    assert [v.job_id for v in done.resumes] == [1]


def test_a_job_the_user_suspended_is_not_resumed_by_the_scheduler() -> None:
    by_user = replace(victim(1, 4, SUSPEND, util=60.0), state=JobState.SUSPENDED)
    assert decide(by_user, used_gib=4).resumes == ()


def test_the_minimum_run_time_and_cap_come_from_the_policy() -> None:
    young = replace(victim(1, 16), started_at=NOW - 60)
    policy = Policy(preempt_min_run_s=30)
    reply = decide(young, job(2, mem_gib=10, priority=5), used_gib=16, policy=policy)
    assert who(reply) == [(1, CHECKPOINT, 2)]
    capped = replace(victim(1, 16), preemptions=1)
    reply = decide(
        capped, job(2, mem_gib=10, priority=5), used_gib=16, policy=Policy(max_preemptions=1)
    )
    assert reply.preemptions == ()


def test_a_stopped_job_that_cannot_help_is_resumed() -> None:
    """Job 1 was asked to checkpoint for job 9, ignored it, and was suspended (the next
    rung). Job 9 waits for memory, which a stopped job keeps: no help, so it resumes."""
    stopped = replace(victim(1, 16, util=30.0), state=JobState.SUSPENDED, preempted_for=9)
    reply = decide(stopped, job(9, mem_gib=10, priority=5), used_gib=16)
    assert [v.job_id for v in reply.resumes] == [1]
    assert reply.resumes[0].reason == "resumed: job 9 was not helped by it"


def test_a_job_alone_on_its_gpu_resumes_whatever_its_peak() -> None:
    heavy = replace(
        victim(1, 4, SUSPEND, util=100.0),
        state=JobState.SUSPENDED,
        preempted_for=9,
        peak_util_pct=100.0,
    )
    assert [v.job_id for v in decide(heavy, used_gib=4).resumes] == [1]


def test_no_resume_ahead_of_a_higher_priority_queued_job() -> None:
    stopped = replace(victim(1, 4, SUSPEND, util=60.0), state=JobState.SUSPENDED, preempted_for=8)
    higher = job(7, mem_gib=30, priority=3)  # waits (too big), but outranks job 1
    assert decide(stopped, higher, used_gib=4).resumes == ()


def test_no_new_preemption_while_a_victim_waits_for_its_beneficiary() -> None:
    """Job 1 checkpointed for job 9 and is back in the queue; job 9 has not started yet
    (the memory is seen free only at the next sample): job 2 is not preempted meanwhile,
    and job 1 does not take the room back."""
    requeued = replace(allowing(job(1, mem_gib=16), CHECKPOINT), preempted_for=9)
    jobs = [requeued, victim(2, 8), job(9, mem_gib=10, priority=5)]
    reply = decide(*jobs, used_gib=8)
    assert reply.preemptions == ()
    assert set(s.job_id for s in reply.starts) == {9}
    assert 1 in reply.waiting and "made room for job 9" in reply.waiting[1]


def test_no_preemption_for_a_job_that_waits_for_something_else() -> None:
    """Job 9 would fit now but the GPU is drained for job 5 (backfill bound): preempting
    job 1 would not let it start."""
    drain_policy = Policy(max_head_wait_s=10)
    head = job(5, mem_gib=None, priority=1, submitted_at=0.0)  # waited past the bound
    jobs = [victim(1, 4), head, job(9, mem_gib=4, priority=5, submitted_at=NOW)]
    reply = decide(*jobs, used_gib=4, policy=drain_policy)
    assert reply.drained_for == 5
    assert reply.preemptions == ()


def test_with_cuda_checkpoint_suspend_frees_memory_too() -> None:
    """Blocked by memory, a suspend-only job can help when suspending moves its memory to
    host (the daemon sets suspend_releases_memory when cuda-checkpoint works)."""
    policy = Policy(suspend_releases_memory=True)
    reply = decide(
        victim(1, 16, SUSPEND), job(2, mem_gib=10, priority=5), used_gib=16, policy=policy
    )
    assert who(reply) == [(1, SUSPEND, 2)]


def test_a_job_whose_memory_went_to_host_resumes_only_when_it_fits_again() -> None:
    """Job 1's 16 GiB are on the host; job 9 (10 GiB) runs: 10 + 16 > 21.6, no resume.
    Once job 9 is gone, it fits: it resumes, and its 16 GiB are counted at once, so a
    queued 8 GiB job does not start beside it in the same pass."""
    released = replace(
        victim(1, 16, SUSPEND),
        state=JobState.SUSPENDED,
        preempted_for=9,
        gpu_memory_released=True,
        peak_mem_bytes=16 * 2**30,
    )
    urgent_running = running(9, mem_gib=10, util_pct=30, priority=5)
    assert decide(released, urgent_running, used_gib=10).resumes == ()
    reply = decide(released, job(3, mem_gib=8), used_gib=0)
    assert [v.job_id for v in reply.resumes] == [1]
    assert reply.starts == ()


def test_the_room_made_for_a_job_is_kept_until_it_starts() -> None:
    """Job 1 is saving to make room for job 9 on GPU0 (the last pass's drain). Job 9 does
    not fit yet; job 5, which would fit now, must not take the room."""
    saving = replace(victim(1, 16), checkpoint_requested_at=NOW - 5, preempted_for=9)
    jobs = [saving, job(9, mem_gib=10, priority=5), job(5, mem_gib=4)]
    reply = decide(*jobs, used_gib=16, drain=Drain(9, ("GPU-0",)))
    assert reply.starts == ()
    assert reply.drain == Drain(9, ("GPU-0",))
    assert "kept free for job 9" in reply.waiting[5]


def test_the_pass_wakes_when_a_too_young_victim_comes_of_age() -> None:
    """Job 1 started 60 s ago: too young to yield now, but in 240 s it may be preempted
    for job 2, and no event would come then: the reply asks for a pass at that time."""
    young = replace(victim(1, 16), started_at=NOW - 60)
    reply = decide(young, job(2, mem_gib=10, priority=5), used_gib=16)
    assert reply.preemptions == ()
    assert reply.next_decision_at == NOW + 240


def test_no_wake_for_a_young_job_that_nothing_outranks() -> None:
    young = replace(victim(1, 16), started_at=NOW - 60)
    reply = decide(young, job(2, mem_gib=10, priority=0), used_gib=16)
    assert reply.next_decision_at != NOW + 240
