"""``schedule()`` in small stories whose numbers can be checked by hand.

Unless a test says otherwise: GPUs have 24 GiB, the headroom lines are 90% (so the memory
cap is 21.6 GiB and the utilization line 90%), jobs expect 8 GiB and 0% utilization, and
the pass runs at t=10 s with aging, ramp-up timeout and backfill bound at their defaults.
"""

from __future__ import annotations

import math

import pytest

from gpugate.core.policy import Admission, GpuLimits, Policy
from gpugate.core.queue import effective_priority, run_time_points
from gpugate.core.schedule import schedule
from gpugate.core.types import Drain, SchedulingReply, Verdict
from gpugate.model import Job
from gpugate.states import JobState
from tests.unit.factories import gpu, job, request, running, seen, starting

NO_AGING = Policy(aging_per_hour=0.0)


def started(reply: SchedulingReply) -> dict[int, tuple[str, ...]]:
    """job id -> the GPUs it starts on."""
    return {s.job_id: s.gpu_uuids for s in reply.starts}


# ---------------------------------------------------------------------------------------
# Memory and utilization headroom
# ---------------------------------------------------------------------------------------
def test_two_jobs_that_fit_together_both_start() -> None:
    """8 + 8 GiB on an empty 24 GiB GPU is 16 GiB, under the 21.6 GiB cap; 20% + 20% of
    utilization is under the 50% share line that applies once the GPU runs job 1."""
    reply = schedule(request([gpu(0)], [job(1, util_pct=20), job(2, util_pct=20)]))

    assert started(reply) == {1: ("GPU-0",), 2: ("GPU-0",)}
    assert reply.waiting == {}
    assert reply.starts[0].reason == "fits: GPU0 mem 8.0 GiB of 21.6 GiB, util 20% of 90%"
    assert (
        reply.starts[1].reason == "fits: GPU0 mem 16.0 GiB of 21.6 GiB, util 40% of 50% share line"
    )


@pytest.mark.parametrize(("second_util", "both"), [(25.0, True), (26.0, False)])
def test_joining_a_busy_gpu_keeps_summed_utilization_under_the_share_line(
    second_util: float, both: bool
) -> None:
    """Alone, a 70% job fits the 90% headroom. Next to a 25% job, the second must keep the
    sum at or under the 50% share line: 25 + 25 fits, 25 + 26 waits, with the reason."""
    jobs = [job(1, util_pct=25), job(2, util_pct=second_util)]
    reply = schedule(request([gpu(0)], jobs))
    assert set(started(reply)) == ({1, 2} if both else {1})
    if not both:
        assert reply.waiting == {
            2: "GPU0 util 25% + 26% > 50% (share line: the GPU already runs work)"
        }
    alone = schedule(request([gpu(0)], [job(3, util_pct=70)]))
    assert set(started(alone)) == {3}


def test_other_processes_holding_memory_count_as_work_for_the_share_line() -> None:
    """4 GiB of 24 in use by a process gpugate did not start (over the 10% idle line) at
    30%: a 30% job would bring it to 60% > 50%. The same GPU at 1 GiB counts as idle."""
    busy = schedule(request([gpu(0, used_gib=4, util_pct=30)], [job(1, util_pct=30)]))
    assert busy.waiting == {1: "GPU0 util 30% + 30% > 50% (share line: the GPU already runs work)"}
    idle = schedule(request([gpu(0, used_gib=1, util_pct=30)], [job(1, util_pct=30)]))
    assert set(started(idle)) == {1}


def test_share_line_at_the_headroom_turns_it_off() -> None:
    policy = Policy(limits=GpuLimits(share_util_pct=100.0))
    reply = schedule(request([gpu(0)], [job(1, util_pct=40), job(2, util_pct=40)], policy=policy))
    assert set(started(reply)) == {1, 2}


def test_a_third_job_that_would_overflow_memory_waits_with_a_memory_reason() -> None:
    """A third 8 GiB job would make 24 GiB > 21.6 GiB: it waits and says by how much."""
    reply = schedule(request([gpu(0)], [job(1), job(2), job(3)]))

    assert set(started(reply)) == {1, 2}
    assert reply.waiting == {
        3: "GPU0 mem 16.0 GiB (incl. 16.0 GiB reserved) + 8.0 GiB > 90% of 24.0 GiB"
    }


def test_outside_load_blocks_and_the_reason_shows_it() -> None:
    """16 GiB used by a process gpugate did not start leaves room for 4 GiB, not 8 GiB."""
    reply = schedule(request([gpu(0, used_gib=16)], [job(1, mem_gib=8), job(2, mem_gib=4)]))

    assert started(reply) == {2: ("GPU-0",)}
    assert reply.waiting == {1: "GPU0 mem 16.0 GiB + 8.0 GiB > 90% of 24.0 GiB"}


def test_utilization_over_the_line_blocks_even_a_job_that_adds_none() -> None:
    """A GPU smoothed at 93% is over the 90% line: nothing starts there."""
    reply = schedule(request([gpu(0, util_pct=93)], [job(1, util_pct=0)]))

    assert reply.starts == ()
    assert reply.waiting == {1: "GPU0 util 93% > 90%"}


def test_utilization_plus_the_jobs_own_must_stay_under_the_line() -> None:
    """75% + 20% = 95% > 90% waits; 75% + 15% = 90% is on the line and starts."""
    reply = schedule(request([gpu(0, util_pct=75)], [job(1, util_pct=20)]))
    assert reply.waiting == {1: "GPU0 util 75% + 20% > 90%"}

    reply = schedule(request([gpu(0, util_pct=75)], [job(1, util_pct=15)]))
    assert started(reply) == {1: ("GPU-0",)}


def test_a_gpu_that_does_not_report_utilization_counts_as_zero() -> None:
    reply = schedule(request([gpu(0, util_pct=None)], [job(1, util_pct=80)]))

    assert started(reply) == {1: ("GPU-0",)}


def test_jobs_started_in_the_same_pass_add_their_utilization() -> None:
    """50% + 50% > 90%: the second waits although the GPU still reads 0%."""
    policy = Policy(limits=GpuLimits(share_util_pct=100.0))
    reply = schedule(request([gpu(0)], [job(1, util_pct=50), job(2, util_pct=50)], policy=policy))

    assert started(reply) == {1: ("GPU-0",)}
    assert reply.waiting == {2: "GPU0 util 50% + 50% > 90%"}


# ---------------------------------------------------------------------------------------
# Ramp-up reservations
# ---------------------------------------------------------------------------------------
def test_ramp_up_reservation_prevents_a_burst() -> None:
    """Ten 8 GiB jobs on an empty 24 GiB GPU: the GPU reads 0 GiB used during the whole
    pass, yet only 2 start (16 GiB), because each start reserves its 8 GiB at once."""
    jobs = [job(i, submitted_at=i) for i in range(1, 11)]
    reply = schedule(request([gpu(0)], jobs))

    assert started(reply) == {1: ("GPU-0",), 2: ("GPU-0",)}
    assert set(reply.waiting) == set(range(3, 11))
    assert set(reply.waiting.values()) == {
        "GPU0 mem 16.0 GiB (incl. 16.0 GiB reserved) + 8.0 GiB > 90% of 24.0 GiB"
    }


def test_starting_jobs_not_yet_seen_still_reserve_their_memory() -> None:
    """The pass after the burst: two STARTING jobs have allocated nothing yet (the GPU reads
    0 GiB), but their 16 GiB is still reserved, so a third 8 GiB job waits."""
    jobs = [starting(1), starting(2), job(3)]
    reply = schedule(request([gpu(0, used_gib=0)], jobs, now=10))

    assert reply.starts == ()
    assert reply.waiting == {
        3: "GPU0 mem 16.0 GiB (incl. 16.0 GiB reserved) + 8.0 GiB > 90% of 24.0 GiB"
    }


def test_a_starting_job_reserves_only_what_it_has_not_allocated_yet() -> None:
    """Job 1 declared 8 GiB and holds 4 GiB: 4 GiB seen + 4 GiB reserved = 8 GiB, so a
    13 GiB job fits (21 <= 21.6) and a 14 GiB one does not (22 > 21.6)."""
    usage = {1: {"GPU-0": seen(4)}}
    gpus = [gpu(0, used_gib=4)]
    reply = schedule(request(gpus, [starting(1), job(2, mem_gib=13)], usage=usage))
    assert started(reply) == {2: ("GPU-0",)}

    reply = schedule(request(gpus, [starting(1), job(2, mem_gib=14)], usage=usage))
    assert reply.waiting == {
        2: "GPU0 mem 8.0 GiB (incl. 4.0 GiB reserved) + 14.0 GiB > 90% of 24.0 GiB"
    }


def test_observed_usage_replaces_the_reservation_when_a_job_uses_more() -> None:
    """Job 1 declared 8 GiB but uses 12 GiB: the GPU counts 12 GiB, not 12 + 8, so another
    8 GiB job fits (20 <= 21.6)."""
    usage = {1: {"GPU-0": seen(12)}}
    reply = schedule(request([gpu(0, used_gib=12)], [running(1), job(2)], usage=usage))

    assert started(reply) == {2: ("GPU-0",)}
    assert reply.starts[0].reason.startswith("fits: GPU0 mem 20.0 GiB of 21.6 GiB")


def test_a_running_job_keeps_its_declared_memory_reserved() -> None:
    """A ramped job that declared 8 GiB and holds 2 GiB may still grow: 2 seen + 6 reserved
    = 8 GiB, so a 14 GiB job (22 GiB) waits."""
    usage = {1: {"GPU-0": seen(2)}}
    reply = schedule(request([gpu(0, used_gib=2)], [running(1), job(2, mem_gib=14)], usage=usage))

    assert reply.waiting == {
        2: "GPU0 mem 8.0 GiB (incl. 6.0 GiB reserved) + 14.0 GiB > 90% of 24.0 GiB"
    }


def test_a_starting_job_reserves_its_utilization_until_it_ramps() -> None:
    """Job 1 expects 50% and reads 0% so far: 0 + 50 reserved + 50 new > 90%. Once it is
    RUNNING only the observed utilization counts."""
    new = job(2, util_pct=50)
    policy = Policy(limits=GpuLimits(share_util_pct=100.0))
    reply = schedule(request([gpu(0)], [starting(1, util_pct=50), new], policy=policy))
    assert reply.waiting == {2: "GPU0 util 50% + 50% > 90%"}

    reply = schedule(request([gpu(0, util_pct=30)], [running(1, util_pct=50), new], policy=policy))
    assert started(reply) == {2: ("GPU-0",)}


def test_ramped_after_the_timeout() -> None:
    """Started at t=0 with the 60 s window: not ramped at 59.9 s, ramped at 60 s."""
    jobs = [starting(1, started_at=0.0)]
    assert schedule(request([gpu(0)], jobs, now=59.9)).ramped == ()

    reply = schedule(request([gpu(0)], jobs, now=60.0))
    assert reply.ramped == (Verdict(1, "ramp-up window of 60 s passed"),)


def test_ramped_when_seen_at_its_level() -> None:
    """ramp_level 0.75 of 8 GiB is 6 GiB: 5.9 GiB is not enough, 6 GiB is."""
    policy = Policy(ramp_level=0.75)
    jobs = [starting(1)]
    low = {1: {"GPU-0": seen(5.9)}}
    assert schedule(request([gpu(0, used_gib=5.9)], jobs, usage=low, policy=policy)).ramped == ()

    level = {1: {"GPU-0": seen(6)}}
    reply = schedule(request([gpu(0, used_gib=6)], jobs, usage=level, policy=policy))
    assert reply.ramped == (Verdict(1, "seen at its expected 8.0 GiB per GPU"),)


def test_a_multi_gpu_job_ramps_only_when_seen_on_every_gpu() -> None:
    jobs = [starting(1, "GPU-0", "GPU-1", gpus=2)]
    gpus = [gpu(0, used_gib=8), gpu(1)]
    one = {1: {"GPU-0": seen(8)}}
    assert schedule(request(gpus, jobs, usage=one)).ramped == ()

    both = {1: {"GPU-0": seen(8), "GPU-1": seen(8)}}
    assert [v.job_id for v in schedule(request(gpus, jobs, usage=both)).ramped] == [1]


def test_a_job_seen_at_its_level_stops_reserving_utilization_in_the_same_pass() -> None:
    """Job 1 (50%) ramps in this very pass: its utilization reservation is gone, so a new
    50% job fits on a GPU that reads 0%."""
    usage = {1: {"GPU-0": seen(8, util_pct=0.0)}}
    jobs = [starting(1, util_pct=50), job(2, util_pct=50)]
    reply = schedule(request([gpu(0, used_gib=8)], jobs, usage=usage))

    assert [v.job_id for v in reply.ramped] == [1]
    assert started(reply) == {2: ("GPU-0",)}


def test_a_starting_cpu_job_is_ramped_at_once() -> None:
    reply = schedule(request([gpu(0)], [starting(1, gpus=0)]))
    assert reply.ramped == (Verdict(1, "CPU-only job: nothing to reserve"),)


# ---------------------------------------------------------------------------------------
# Unknown-size and exclusive jobs
# ---------------------------------------------------------------------------------------
def test_an_unknown_size_job_takes_the_idle_gpu() -> None:
    """GPU0 runs a gpugate job, GPU1 is empty: the unknown-size job goes to GPU1."""
    jobs = [running(1, "GPU-0"), job(2, mem_gib=None)]
    reply = schedule(request([gpu(0, used_gib=8), gpu(1)], jobs, usage={1: {"GPU-0": seen(8)}}))

    assert started(reply) == {2: ("GPU-1",)}


def test_an_unknown_size_job_waits_without_an_idle_gpu() -> None:
    """GPU0 runs a gpugate job; GPU1 has 4 GiB of outside use, over 10% of 24 GiB."""
    jobs = [running(1, "GPU-0"), job(2, mem_gib=None)]
    reply = schedule(request([gpu(0, used_gib=8), gpu(1, used_gib=4)], jobs))

    assert reply.starts == ()
    assert reply.waiting == {
        2: "GPU0 runs job 1; unknown-size (declare --mem) jobs need an idle GPU;"
        " GPU1 not idle: 4.0 GiB in use by other processes"
    }


def test_a_gpu_with_a_little_outside_use_still_counts_as_idle() -> None:
    """2 GiB is under 10% of 24 GiB (2.4 GiB): idle enough for an unknown-size job."""
    reply = schedule(request([gpu(0, used_gib=2)], [job(1, mem_gib=None)]))

    assert started(reply) == {1: ("GPU-0",)}


def test_an_unknown_size_job_blocks_its_gpu_while_ramping() -> None:
    """Nothing joins a GPU whose unknown-size job may still grow to take all of it; once
    the 60 s window passes, only what the monitor sees counts."""
    jobs = [starting(1, mem_gib=None, started_at=0.0), job(2, mem_gib=1)]
    reply = schedule(request([gpu(0, used_gib=5)], jobs, now=30))
    assert reply.waiting == {2: "GPU0 reserved for job 1 (unknown size, ramping up)"}

    reply = schedule(request([gpu(0, used_gib=5)], jobs, now=60))
    assert [v.job_id for v in reply.ramped] == [1]
    assert started(reply) == {2: ("GPU-0",)}


def test_an_unknown_size_job_started_in_this_pass_blocks_its_gpu() -> None:
    reply = schedule(request([gpu(0)], [job(1, mem_gib=None), job(2, mem_gib=1)]))

    assert started(reply) == {1: ("GPU-0",)}
    assert reply.waiting == {2: "GPU0 reserved for job 1 (unknown size, ramping up)"}


def test_an_exclusive_job_needs_an_idle_gpu() -> None:
    jobs = [running(1, "GPU-0", mem_gib=1), job(2, exclusive=True)]
    reply = schedule(request([gpu(0, used_gib=1)], jobs))

    assert reply.waiting == {2: "GPU0 runs job 1; exclusive jobs need an idle GPU"}


def test_an_exclusive_job_keeps_its_gpu_to_itself() -> None:
    """Started in this pass or already running, nothing joins an exclusive job's GPU even
    though memory and utilization would allow it."""
    reply = schedule(request([gpu(0)], [job(1, mem_gib=1, exclusive=True), job(2, mem_gib=1)]))
    assert started(reply) == {1: ("GPU-0",)}
    assert reply.waiting == {2: "GPU0 held exclusively by job 1"}

    jobs = [running(1, mem_gib=1, exclusive=True), job(2, mem_gib=1)]
    reply = schedule(request([gpu(0, used_gib=1)], jobs, usage={1: {"GPU-0": seen(1)}}))
    assert reply.waiting == {2: "GPU0 held exclusively by job 1"}


# ---------------------------------------------------------------------------------------
# Placement
# ---------------------------------------------------------------------------------------
def test_an_n_gpu_job_gets_n_distinct_gpus() -> None:
    """Three GPUs, GPU1 nearly full: a 2-GPU job gets GPU0 and GPU2."""
    gpus = [gpu(0), gpu(1, used_gib=20), gpu(2)]
    reply = schedule(request(gpus, [job(1, gpus=2)]))

    assert started(reply) == {1: ("GPU-0", "GPU-2")}


def test_an_n_gpu_job_waits_when_fewer_fit_and_says_how_many() -> None:
    gpus = [gpu(0), gpu(1, used_gib=20)]
    reply = schedule(request(gpus, [job(1, gpus=2)]))

    assert reply.waiting == {
        1: "needs 2 GPUs, 1 fit: GPU1 mem 20.0 GiB + 8.0 GiB > 90% of 24.0 GiB"
    }


def test_best_fit_picks_the_tighter_gpu() -> None:
    """After an 8 GiB job GPU0 (empty) would have 13.6 GiB left, GPU1 (10 GiB used) 3.6:
    GPU1 is chosen, keeping GPU0's big gap for a big job."""
    reply = schedule(request([gpu(0), gpu(1, used_gib=10)], [job(1)]))
    assert started(reply) == {1: ("GPU-1",)}


def test_best_fit_prefers_the_smaller_gpu_for_a_small_job() -> None:
    reply = schedule(request([gpu(0, total_gib=80), gpu(1, total_gib=24)], [job(1)]))
    assert started(reply) == {1: ("GPU-1",)}


def test_best_fit_ties_go_to_the_less_utilized_then_the_lower_index() -> None:
    reply = schedule(request([gpu(0, util_pct=30), gpu(1, util_pct=10)], [job(1)]))
    assert started(reply) == {1: ("GPU-1",)}

    reply = schedule(request([gpu(0), gpu(1), gpu(2)], [job(1)]))
    assert started(reply) == {1: ("GPU-0",)}


def test_an_unknown_size_job_prefers_the_emptiest_idle_gpu() -> None:
    reply = schedule(request([gpu(0, used_gib=2), gpu(1, used_gib=1)], [job(1, mem_gib=None)]))
    assert started(reply) == {1: ("GPU-1",)}


# ---------------------------------------------------------------------------------------
# Queue order
# ---------------------------------------------------------------------------------------
def test_higher_priority_starts_first() -> None:
    """Room for one 16 GiB job: the priority-5 job, submitted later, gets it."""
    jobs = [job(1, mem_gib=16, priority=0, submitted_at=0), job(2, mem_gib=16, priority=5)]
    reply = schedule(request([gpu(0)], jobs, policy=NO_AGING))

    assert started(reply) == {2: ("GPU-0",)}
    assert reply.waiting == {
        1: "GPU0 mem 16.0 GiB (incl. 16.0 GiB reserved) + 16.0 GiB > 90% of 24.0 GiB"
    }


def test_priority_never_overrides_headroom() -> None:
    """A priority-100 job that does not fit waits; a priority-0 job that fits starts."""
    jobs = [job(1, mem_gib=20, priority=100), job(2, mem_gib=4, priority=0)]
    reply = schedule(request([gpu(0, used_gib=10)], jobs, policy=NO_AGING))

    assert started(reply) == {2: ("GPU-0",)}
    assert set(reply.waiting) == {1}


def test_fifo_within_a_priority() -> None:
    """Same priority: the earlier submission wins even with a higher id; equal submit
    times fall back to the lower id."""
    jobs = [job(3, mem_gib=16, submitted_at=2), job(5, mem_gib=16, submitted_at=1)]
    assert set(started(schedule(request([gpu(0)], jobs, policy=NO_AGING)))) == {5}

    jobs = [job(7, mem_gib=16, submitted_at=1), job(6, mem_gib=16, submitted_at=1)]
    assert set(started(schedule(request([gpu(0)], jobs, policy=NO_AGING)))) == {6}


@pytest.mark.parametrize(("now", "winner"), [(7199.0, 2), (7200.0, 1), (7201.0, 1)])
def test_aging_lets_an_old_low_priority_job_overtake(now: float, winner: int) -> None:
    """Job 1: priority 0, submitted at t=0. Job 2: priority 3, submitted just now. With
    1.5 points per hour job 1 reaches 3 after 3 / 1.5 = 2 h = 7200 s; at the tie it wins
    by FIFO (it was submitted first)."""
    policy = Policy(aging_per_hour=1.5)
    old = job(1, mem_gib=16, priority=0, submitted_at=0.0)
    fresh = job(2, mem_gib=16, priority=3, submitted_at=now)
    reply = schedule(request([gpu(0)], [old, fresh], now=now, policy=policy))

    assert set(started(reply)) == {winner}
    assert effective_priority(old, 7200.0, 1.5) == pytest.approx(3.0)


@pytest.mark.parametrize(("short_run_s", "winner"), [(900.0, 2), (3600.0, 1), (None, 1)])
def test_a_shorter_expected_run_goes_first_among_equal_priorities(
    short_run_s: float | None, winner: int
) -> None:
    """Room for one: job 1 (1 h expected, submitted first) against job 2. Expected to run
    15 min, job 2 gains log2(4) = 2 points and goes first; as long, or unknown, it gains
    nothing and first come first served holds."""
    first = job(1, mem_gib=16, submitted_at=0, run_s=3600)
    second = job(2, mem_gib=16, submitted_at=5, run_s=short_run_s)
    reply = schedule(request([gpu(0)], [first, second], policy=NO_AGING))
    assert set(started(reply)) == {winner}


@pytest.mark.parametrize(("low_run_s", "winner"), [(600.0, 2), (1200.0, 1)])
def test_a_priority_point_is_worth_halving_the_expected_run(low_run_s: float, winner: int) -> None:
    """Priority 2 expected 1 h against priority 0: the low job must be expected to run
    more than 2^2 = 4x shorter to go first. 10 min is 6x shorter (log2 6 = 2.58 > 2): it
    wins; 20 min is 3x shorter (1.58 < 2): it waits."""
    high = job(1, mem_gib=16, priority=2, run_s=3600)
    low = job(2, mem_gib=16, priority=0, run_s=low_run_s)
    reply = schedule(request([gpu(0)], [high, low], policy=NO_AGING))
    assert set(started(reply)) == {winner}


def test_run_time_weight_zero_is_priority_and_fifo_only() -> None:
    policy = Policy(aging_per_hour=0.0, run_time_weight=0.0)
    first = job(1, mem_gib=16, submitted_at=0, run_s=86_400)
    second = job(2, mem_gib=16, submitted_at=5, run_s=60)
    assert set(started(schedule(request([gpu(0)], [first, second], policy=policy)))) == {1}


def test_estimates_are_clamped_so_seconds_long_noise_cannot_jump_the_queue() -> None:
    """1 s and 60 s both count as 1 min (the floor): equal points, first come first served."""
    first = job(1, mem_gib=16, submitted_at=0, run_s=60)
    second = job(2, mem_gib=16, submitted_at=5, run_s=1)
    assert set(started(schedule(request([gpu(0)], [first, second], policy=NO_AGING)))) == {1}
    assert run_time_points(second, 1.0) == pytest.approx(math.log2(60))


@pytest.mark.parametrize(("waited_h", "winner"), [(39.0, 2), (41.0, 1)])
def test_aging_still_lets_a_long_job_overtake_short_ones(waited_h: float, winner: int) -> None:
    """A 4 h job (-2 points) against a fresh 15 min job (+2) of the same priority: at 0.1
    points per hour it outranks it after 40 h of waiting (+4), so no job starves behind a
    stream of short ones."""
    now = waited_h * 3600
    long_job = job(1, mem_gib=16, submitted_at=0, run_s=4 * 3600)
    short_job = job(2, mem_gib=16, submitted_at=now, run_s=900)
    policy = Policy(aging_per_hour=0.1)
    reply = schedule(request([gpu(0)], [long_job, short_job], now=now, policy=policy))
    assert set(started(reply)) == {winner}


def test_a_suspended_job_still_holds_its_gpu_memory() -> None:
    """Suspended: no compute, but its 16 GiB are still allocated (the GPU reads them):
    an 8 GiB job does not fit beside it (16 + 8 > 21.6), as if it were running."""
    suspended = job(1, mem_gib=16, state=JobState.SUSPENDED, on=("GPU-0",), started_at=0.0)
    usage = {1: {"GPU-0": seen(16, util_pct=0.0)}}
    gpus = [gpu(0, used_gib=16)]
    jobs = [suspended, job(2, mem_gib=8), job(3, mem_gib=None)]
    reply = schedule(request(gpus, jobs, usage=usage))
    assert started(reply) == {}
    assert reply.waiting[2] == "GPU0 mem 16.0 GiB + 8.0 GiB > 90% of 24.0 GiB"
    # the GPU is the suspended job's, not "in use by other processes"
    assert reply.waiting[3].startswith("GPU0 runs job 1")


# ---------------------------------------------------------------------------------------
# Holding the head's GPUs (EASY backfill, opt-in)
# ---------------------------------------------------------------------------------------
HOLD = Policy(aging_per_hour=0.0, hold_for_head=True)


def hold_scene(*later: Job, policy: Policy = HOLD) -> SchedulingReply:
    """GPU0 runs job 1 (4 GiB, started at 0, expected to run 1000 s: free at 1000);
    job 2, unknown size, needs the idle GPU: the blocked head. Now is 10 s."""
    holder = running(1, mem_gib=4, util_pct=10, run_s=1000)
    head = job(2, mem_gib=None, priority=5)
    return schedule(request([gpu(0, used_gib=4)], [holder, head, *later], policy=policy))


def test_a_held_gpu_takes_only_jobs_expected_to_end_before_the_head_starts() -> None:
    """The head is expected to start in 990 s: a 900 s job backfills, a 1000 s job and
    a job of unknown length wait, saying why."""
    fits_in_time = job(3, mem_gib=2, util_pct=10, run_s=900)
    too_long = job(4, mem_gib=2, util_pct=10, run_s=1000)
    unknown = job(5, mem_gib=2, util_pct=10)
    reply = hold_scene(fits_in_time, too_long, unknown)

    assert set(started(reply)) == {3}
    assert reply.waiting[4] == (
        "GPU0 held for job 2, expected to start there in 16 min; this job is expected to run 17 min"
    )
    assert "expected to run an unknown time" in reply.waiting[5]


def test_without_the_hold_backfill_is_greedy() -> None:
    reply = hold_scene(
        job(3, mem_gib=2, util_pct=10, run_s=900),
        job(4, mem_gib=2, util_pct=10, run_s=1000),
        policy=Policy(aging_per_hour=0.0),
    )
    assert set(started(reply)) == {3, 4}


def test_no_hold_when_the_head_waits_for_something_gpugate_did_not_start() -> None:
    """An idle-by-gpugate GPU with 12 GiB in use by another process: the head (unknown
    size) cannot start there, and no gpugate job's end will change that: nothing to hold."""
    head = job(2, mem_gib=None, priority=5)
    later = job(3, mem_gib=2, util_pct=10, run_s=5000)
    reply = schedule(request([gpu(0, used_gib=12)], [head, later], policy=HOLD))
    assert set(started(reply)) == {3}


def test_a_job_not_yet_past_its_expected_run_keeps_its_expected_end() -> None:
    """Job 1 expected 3600 s, 2700 s in (now 2700): free at 3600, so the head's GPU takes
    a 900 s job and not a 901 s one."""
    holder = running(1, mem_gib=4, util_pct=10, run_s=3600)
    head = job(2, mem_gib=None, priority=5)
    short, long = job(3, mem_gib=2, run_s=900), job(4, mem_gib=2, run_s=901)
    reply = schedule(
        request([gpu(0, used_gib=4)], [holder, head, short, long], now=2700, policy=HOLD)
    )
    assert set(started(reply)) == {3}


def test_the_hold_skips_an_empty_gpu_the_head_cannot_use() -> None:
    """GPU0 has no gpugate job but 12 GiB used by another process: the unknown-size head
    can never start there. GPU1 runs job 1 until 1000: that is the GPU to hold, so a
    50,000 s job must not backfill onto it (it may go to GPU0)."""
    holder = running(1, "GPU-1", mem_gib=4, util_pct=10, run_s=1000)
    head = job(2, mem_gib=None, priority=5)
    long = job(3, mem_gib=2, util_pct=10, run_s=50_000)
    gpus = [gpu(0, used_gib=12), gpu(1, used_gib=4)]
    reply = schedule(request(gpus, [holder, head, long], policy=HOLD))
    assert started(reply) == {3: ("GPU-0",)}


def test_a_job_past_its_expected_run_is_expected_to_run_as_long_again() -> None:
    """Job 1 expected 100 s but running for 400 s (now 400): expected free at 800, so
    the head's GPU takes a 399 s job and not a 401 s one."""
    holder = running(1, mem_gib=4, util_pct=10, run_s=100)
    head = job(2, mem_gib=None, priority=5)
    short, long = job(3, mem_gib=2, run_s=399), job(4, mem_gib=2, run_s=401)
    reply = schedule(
        request([gpu(0, used_gib=4)], [holder, head, short, long], now=400, policy=HOLD)
    )
    assert set(started(reply)) == {3}


# ---------------------------------------------------------------------------------------
# Backfill
# ---------------------------------------------------------------------------------------
BIG_HEAD_STORY = [
    running(1, mem_gib=10),
    job(2, mem_gib=16, priority=5, submitted_at=0.0),  # the head: 10 + 16 > 21.6
    job(3, mem_gib=4, submitted_at=5.0),  # fits: 10 + 4 <= 21.6
]
BUSY_GPU = [gpu(0, used_gib=10)]
BUSY_USAGE = {1: {"GPU-0": seen(10)}}
BOUNDED = Policy(max_head_wait_s=1800)  # the default is no bound: greedy backfill


def test_a_small_job_backfills_around_a_blocked_big_head() -> None:
    reply = schedule(request(BUSY_GPU, BIG_HEAD_STORY, usage=BUSY_USAGE, now=60))

    assert started(reply) == {3: ("GPU-0",)}
    assert reply.waiting == {2: "GPU0 mem 10.0 GiB + 16.0 GiB > 90% of 24.0 GiB"}
    assert reply.drained_for is None


def test_with_backfill_off_nothing_passes_the_head() -> None:
    policy = Policy(backfill=False)
    reply = schedule(request(BUSY_GPU, BIG_HEAD_STORY, usage=BUSY_USAGE, now=60, policy=policy))

    assert reply.starts == ()
    assert reply.waiting[3] == "behind job 2 (backfill is off)"


def test_backfill_continues_until_just_before_the_bound() -> None:
    reply = schedule(
        request(BUSY_GPU, BIG_HEAD_STORY, usage=BUSY_USAGE, now=1799.9, policy=BOUNDED)
    )

    assert set(started(reply)) == {3}
    assert reply.drained_for is None


def test_after_the_bound_the_heads_gpu_is_drained() -> None:
    """The head has waited 1800 s (max_head_wait_s): its GPU is kept free for it, so the
    small job that fits by memory waits and says for whom."""
    reply = schedule(request(BUSY_GPU, BIG_HEAD_STORY, usage=BUSY_USAGE, now=1800, policy=BOUNDED))

    assert reply.starts == ()
    assert reply.drained_for == 2
    assert reply.waiting == {
        2: "GPU0 mem 10.0 GiB + 16.0 GiB > 90% of 24.0 GiB;"
        " backfill stopped for it (waited past bound)",
        3: "GPU0 kept free for job 2 (waited past backfill bound)",
    }


def test_draining_keeps_only_the_heads_gpus_free() -> None:
    """Two busy GPUs; the head needs one. GPU1 (no gpugate job) is drained for it; the small
    job, whose best fit would be GPU1, backfills onto GPU0 instead."""
    gpus = [gpu(0, used_gib=10), gpu(1, used_gib=15)]
    jobs = [running(1, "GPU-0", mem_gib=10), job(2, mem_gib=16), job(3, mem_gib=4, submitted_at=5)]
    reply = schedule(request(gpus, jobs, usage=BUSY_USAGE, now=3600, policy=BOUNDED))

    assert reply.drained_for == 2
    assert started(reply) == {3: ("GPU-0",)}


def test_by_default_backfill_has_no_bound() -> None:
    """A day later the small job still backfills: draining is opt-in (see Policy)."""
    reply = schedule(request(BUSY_GPU, BIG_HEAD_STORY, usage=BUSY_USAGE, now=86_400))

    assert set(started(reply)) == {3}
    assert reply.drain is None
    assert reply.next_decision_at == 86_460  # only job 3's ramp-up window: no bound to reach


def test_a_drain_stays_with_its_job_when_a_higher_priority_job_arrives() -> None:
    """Job 2 waited past the bound and GPU1 is being emptied for it. A priority-5 job that
    also cannot fit arrives: the drain does not move to it, and stays on GPU1."""
    gpus = [gpu(0, used_gib=10), gpu(1, used_gib=15)]
    jobs = [
        running(1, "GPU-0", mem_gib=10),
        job(2, mem_gib=16),
        job(4, mem_gib=20, priority=5, submitted_at=3000),
    ]
    first = schedule(request(gpus, jobs[:2], usage=BUSY_USAGE, now=3600, policy=BOUNDED))
    assert first.drain == Drain(2, ("GPU-1",))

    later = schedule(
        request(gpus, jobs, usage=BUSY_USAGE, now=3700, policy=BOUNDED, drain=first.drain)
    )
    assert later.drain == Drain(2, ("GPU-1",))
    assert "kept free for job 2" in later.waiting[4]


def test_the_next_decision_comes_when_a_ramp_window_ends_or_the_head_reaches_the_bound() -> None:
    busy = [gpu(0, used_gib=10)]
    head_only = [running(1, "GPU-0", mem_gib=10), job(2, mem_gib=16)]
    reply = schedule(request(busy, head_only, usage=BUSY_USAGE, now=60, policy=BOUNDED))
    assert reply.next_decision_at == 1800.0  # job 2, submitted at 0, reaches the bound

    reply = schedule(request(BUSY_GPU, BIG_HEAD_STORY, usage=BUSY_USAGE, now=60, policy=BOUNDED))
    assert reply.next_decision_at == 120.0  # job 3 starts now: its ramp window ends first


# ---------------------------------------------------------------------------------------
# CPU-only jobs
# ---------------------------------------------------------------------------------------
def test_cpu_only_jobs_start_even_when_gpu_jobs_are_blocked() -> None:
    """The GPU is over its utilization line and backfill is off: the higher-priority GPU
    job waits, the CPU-only job starts with no GPU."""
    jobs = [job(1, priority=9), job(2, gpus=0)]
    policy = Policy(backfill=False)
    reply = schedule(request([gpu(0, util_pct=95)], jobs, policy=policy))

    assert started(reply) == {2: ()}
    assert reply.waiting == {1: "GPU0 util 95% > 90%"}


def test_cpu_only_jobs_are_limited_by_max_cpu_jobs() -> None:
    """Two slots, one taken by a running CPU job: one of three queued CPU jobs starts."""
    jobs = [running(1, gpus=0)] + [job(i, gpus=0, submitted_at=i) for i in (2, 3, 4)]
    reply = schedule(request([gpu(0)], jobs, policy=Policy(max_cpu_jobs=2)))

    assert started(reply) == {2: ()}
    assert reply.waiting == {3: "all 2 CPU-job slots busy", 4: "all 2 CPU-job slots busy"}


def test_cpu_only_jobs_run_without_a_limit_by_default_and_without_gpus() -> None:
    jobs = [job(i, gpus=0) for i in range(1, 6)]
    reply = schedule(request([], jobs))

    assert started(reply) == {i: () for i in range(1, 6)}


# ---------------------------------------------------------------------------------------
# Dependencies and holds
# ---------------------------------------------------------------------------------------
def test_a_job_waits_while_its_dependency_is_active() -> None:
    jobs = [running(1), job(2, mem_gib=1, after=(1,))]
    reply = schedule(request([gpu(0, used_gib=8)], jobs))

    assert reply.starts == ()
    assert reply.waiting == {2: "after job 1 (running)"}


def test_a_job_starts_once_its_dependencies_succeeded() -> None:
    deps = {1: JobState.SUCCEEDED, 2: JobState.SUCCEEDED}
    reply = schedule(request([gpu(0)], [job(3, after=(1, 2))], dependency_states=deps))

    assert started(reply) == {3: ("GPU-0",)}


def test_a_job_waits_on_the_first_unfinished_dependency() -> None:
    jobs = [job(2, state=JobState.HELD), job(3, after=(1, 2))]
    deps = {1: JobState.SUCCEEDED}
    reply = schedule(request([gpu(0)], jobs, dependency_states=deps))

    assert reply.waiting[3] == "after job 2 (held)"


@pytest.mark.parametrize(
    ("deps", "reason"),
    [
        ({1: JobState.FAILED}, "dependency job 1 ended failed"),
        ({1: JobState.CANCELLED}, "dependency job 1 ended cancelled"),
        ({1: JobState.LOST}, "dependency job 1 ended lost"),
        ({}, "dependency job 1 does not exist"),
    ],
)
def test_a_job_whose_dependency_cannot_succeed_is_cancelled(
    deps: dict[int, JobState], reason: str
) -> None:
    reply = schedule(request([gpu(0)], [job(2, after=(1,))], dependency_states=deps))

    assert reply.cancels == (Verdict(2, reason),)
    assert reply.starts == ()
    assert 2 not in reply.waiting


def test_held_jobs_get_a_reason_and_never_start() -> None:
    reply = schedule(request([gpu(0)], [job(1, state=JobState.HELD)]))

    assert reply.starts == ()
    assert reply.waiting == {1: "held: `gpugate release` to queue it"}


# ---------------------------------------------------------------------------------------
# Per-GPU limits
# ---------------------------------------------------------------------------------------
def test_per_gpu_limits_by_uuid_override_the_defaults() -> None:
    """GPU1 allows only 50% of its memory (12 GiB): 6 + 8 GiB waits there, not on GPU0."""
    policy = Policy(per_gpu_limits={"GPU-1": GpuLimits(mem_headroom_pct=50)})
    reply = schedule(request([gpu(1, used_gib=6)], [job(1)], policy=policy))
    assert reply.waiting == {1: "GPU1 mem 6.0 GiB + 8.0 GiB > 50% of 24.0 GiB"}

    reply = schedule(request([gpu(0, used_gib=6)], [job(1)], policy=policy))
    assert started(reply) == {1: ("GPU-0",)}


def test_per_gpu_limits_by_index_override_the_defaults() -> None:
    policy = Policy(per_gpu_limits={"0": GpuLimits(util_headroom_pct=50)})
    reply = schedule(request([gpu(0, util_pct=40)], [job(1, util_pct=20)], policy=policy))

    assert reply.waiting == {1: "GPU0 util 40% + 20% > 50%"}


def test_a_raised_memory_line_lets_a_gpu_fill_up() -> None:
    """At 100% three 8 GiB jobs fit on 24 GiB; at the default 90% only two do."""
    policy = Policy(per_gpu_limits={"GPU-0": GpuLimits(mem_headroom_pct=100)})
    jobs = [job(1), job(2), job(3)]
    assert len(schedule(request([gpu(0)], jobs, policy=policy)).starts) == 3
    assert len(schedule(request([gpu(0)], jobs)).starts) == 2


# ---------------------------------------------------------------------------------------
# The simulator's other admission policies
# ---------------------------------------------------------------------------------------
MEMORY_ONLY = Policy(admission=Admission.MEMORY_ONLY)
WHOLE_GPU = Policy(admission=Admission.WHOLE_GPU)


def test_memory_only_counts_its_own_starts_in_a_pass_but_not_jobs_still_loading() -> None:
    """Three 8 GiB jobs fill 24 GiB in one pass. At the next pass those three are still
    loading (nothing allocated yet): the GPU reads 24 GiB free, and three more start (the
    burst gpugate's reservations exist to avoid)."""
    jobs = [job(i, submitted_at=i) for i in range(1, 11)]
    reply = schedule(request([gpu(0)], jobs, policy=MEMORY_ONLY))
    assert set(started(reply)) == {1, 2, 3}

    loading = [job(i, state=JobState.STARTING, on=("GPU-0",), started_at=10) for i in (1, 2, 3)]
    reply = schedule(request([gpu(0)], loading + jobs[3:], policy=MEMORY_ONLY, now=11))
    assert set(started(reply)) == {4, 5, 6}


def test_memory_only_refuses_a_job_larger_than_free_memory_and_ignores_util() -> None:
    gpus = [gpu(0, used_gib=20, util_pct=100)]
    reply = schedule(request(gpus, [job(1, mem_gib=8), job(2, mem_gib=4)], policy=MEMORY_ONLY))

    assert started(reply) == {2: ("GPU-0",)}
    assert reply.waiting == {1: "GPU0 free memory 4.0 GiB < 8.0 GiB"}


def test_memory_only_wants_the_whole_gpu_free_for_an_unknown_size_job() -> None:
    reply = schedule(request([gpu(0, used_gib=1)], [job(1, mem_gib=None)], policy=MEMORY_ONLY))

    assert reply.waiting == {1: "GPU0 free memory 23.0 GiB < 24.0 GiB"}


def test_whole_gpu_runs_one_job_per_gpu_whatever_the_load() -> None:
    """Two GPUs, one almost full of outside work: each takes one job, the third waits."""
    gpus = [gpu(0, used_gib=23, util_pct=100), gpu(1)]
    jobs = [job(i, mem_gib=1, submitted_at=i) for i in (1, 2, 3)]
    reply = schedule(request(gpus, jobs, policy=WHOLE_GPU))

    assert started(reply) == {1: ("GPU-0",), 2: ("GPU-1",)}
    assert reply.waiting == {3: "GPU0 runs job 1; GPU1 runs job 2"}


def test_whole_gpu_counts_running_jobs() -> None:
    jobs = [running(1, mem_gib=1), job(2, mem_gib=1)]
    reply = schedule(request([gpu(0)], jobs, policy=WHOLE_GPU))

    assert reply.waiting == {2: "GPU0 runs job 1"}


def test_an_exclusive_job_counts_its_own_utilization_against_the_line() -> None:
    """An idle-memory GPU at 50% outside utilization cannot take an exclusive job that
    declares 80%: 50 + 80 > 90. It fits a GPU at 5%."""
    busy, calm = gpu(0, used_gib=0.5, util_pct=50.0), gpu(1, used_gib=0.5, util_pct=5.0)
    reply = schedule(request([busy], [job(1, exclusive=True, util_pct=80.0)]))
    assert reply.waiting == {1: "GPU0 util 50% + 80% > 90%"}
    reply = schedule(request([busy, calm], [job(1, exclusive=True, util_pct=80.0)]))
    assert started(reply) == {1: ("GPU-1",)}


def test_time_spent_held_neither_ages_a_job_nor_counts_towards_the_backfill_bound() -> None:
    """Job 1 was submitted 10 h ago but released from hold a minute ago: it has waited one
    minute, so it earns one minute of aging and its GPU is not drained for it."""
    from dataclasses import replace

    now = 36_000.0
    released = replace(job(1, mem_gib=20, submitted_at=0.0), queued_at=now - 60)
    assert effective_priority(released, now, aging_per_hour=1.0) == pytest.approx(60 / 3600)
    small = job(2, mem_gib=1, submitted_at=now - 30)
    policy = Policy(max_head_wait_s=1800)
    reply = schedule(request([gpu(0, used_gib=10)], [released, small], now=now, policy=policy))
    assert reply.drained_for is None and started(reply) == {2: ("GPU-0",)}
    never_held = job(1, mem_gib=20, submitted_at=0.0)
    reply = schedule(request([gpu(0, used_gib=10)], [never_held, small], now=now, policy=policy))
    assert reply.drained_for == 1 and started(reply) == {}
