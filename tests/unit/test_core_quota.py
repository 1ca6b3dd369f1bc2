"""GPU quotas in the scheduling pass (hand-computable scenes on four 24 GiB GPUs)."""

from __future__ import annotations

from dataclasses import replace

from gpugate.core.policy import Policy
from gpugate.core.schedule import schedule
from gpugate.model import PreemptMode
from tests.unit.factories import gpu, job, request, running, seen

ALICE, BOB = 1000, 1001
GPUS = [gpu(i) for i in range(4)]


def test_a_user_at_their_gpu_quota_waits_while_others_start() -> None:
    """Alice holds 3 GPUs (quota 4); her 2-GPU job would take her to 5: it waits, and
    says why. Bob's 1-GPU job, queued behind it, starts."""
    held = running(1, "GPU-0", "GPU-1", "GPU-2", gpus=3, mem_gib=4, owner=ALICE)
    hers = job(2, gpus=2, mem_gib=4, owner=ALICE)
    his = job(3, gpus=1, mem_gib=4, owner=BOB)
    usage = {1: {f"GPU-{i}": seen(4) for i in range(3)}}
    reply = schedule(
        request(GPUS, [held, hers, his], policy=Policy(max_gpus_per_user=4), usage=usage)
    )
    assert [s.job_id for s in reply.starts] == [3]
    assert reply.waiting[2] == (
        "quota: its owner's jobs hold 3 of the 4 GPUs a user may hold at once"
    )


def test_the_quota_counts_what_the_pass_itself_starts() -> None:
    """Two 1-GPU jobs of Alice with a quota of 1: only the first starts."""
    jobs = [job(1, owner=ALICE), job(2, owner=ALICE)]
    reply = schedule(request(GPUS, jobs, policy=Policy(max_gpus_per_user=1)))
    assert [s.job_id for s in reply.starts] == [1]
    assert reply.waiting[2].startswith("quota: its owner's jobs hold 1 of the 1")


def test_a_users_own_line_overrides_the_default_and_none_means_no_limit() -> None:
    jobs = [job(1, gpus=2, owner=ALICE), job(2, gpus=2, owner=BOB)]
    policy = Policy(max_gpus_per_user=1, user_max_gpus={ALICE: None})
    reply = schedule(request(GPUS, jobs, policy=policy))
    assert [s.job_id for s in reply.starts] == [1]  # Alice unlimited; Bob's 2 > 1


def test_no_preemption_for_a_job_its_quota_holds_back() -> None:
    """Bob's urgent job could preempt Alice's checkpointable one for room, but Bob is
    at his quota: preempting would not let it start."""
    plain = running(1, "GPU-0", gpus=1, mem_gib=20, owner=ALICE)
    alices = replace(plain, spec=replace(plain.spec, preempt=PreemptMode.CHECKPOINT))
    bobs_running = running(2, "GPU-1", gpus=1, mem_gib=20, owner=BOB)
    urgent = job(3, mem_gib=10, priority=5, owner=BOB)
    one_gpu = [gpu(0, used_gib=20), gpu(1, used_gib=20)]
    usage = {1: {"GPU-0": seen(20)}, 2: {"GPU-1": seen(20)}}
    policy = Policy(max_gpus_per_user=1)
    reply = schedule(
        request(one_gpu, [alices, bobs_running, urgent], now=1000, policy=policy, usage=usage)
    )
    assert reply.preemptions == ()
    unlimited = schedule(
        request(one_gpu, [alices, bobs_running, urgent], now=1000, policy=Policy(), usage=usage)
    )
    assert [p.job_id for p in unlimited.preemptions] == [1]  # the scene does preempt otherwise
