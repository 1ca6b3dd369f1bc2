"""The simulator's event loop driving the real scheduler: small scenarios per policy whose
start and end times are worked out by hand, out-of-memory crashes and their retries,
interference, determinism, and what every run must conserve on a synthetic workload.

Unless a story says otherwise: one 24 GiB GPU (90% line: 21.6 GiB), no interference, jobs
that load for 10 s, then run 100 s alone, and really use what they declare.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest

from gpugate.model import PreemptMode
from gpugate.sim.engine import JobRecord, Outcome, SimConfig, SimResult, Simulation
from gpugate.sim.interference import FITTED, NONE
from gpugate.sim.job import SimJob
from gpugate.sim.policies import ORACLE_POLICIES, POLICIES, policy_named
from gpugate.sim.workload import synthetic
from gpugate.units import GiB
from tests.unit.sim_factories import by_id, sim_job, simulate, spans


# --- fifo and fifo-backfill: one job per GPU ------------------------------------------------
def test_fifo_runs_two_small_jobs_one_after_the_other_while_gpugate_colocates_them() -> None:
    # Two 8 GiB, 25% jobs. fifo: job 0 [0, 100), job 1 [100, 200); JCTs 100 and 200.
    # gpugate: 8 + 8 = 16 GiB <= 21.6 GiB and 25 + 25 = 50% <= the 50% share line: both
    # [0, 100).
    jobs = [sim_job(0, mem_gib=8, util_pct=25), sim_job(1, mem_gib=8, util_pct=25)]

    fifo = simulate("fifo", jobs)
    gpugate = simulate("gpugate", jobs)

    assert spans(fifo) == {0: (0, 100), 1: (100, 200)}
    assert [r.jct_s for r in fifo.records] == [100, 200]
    assert spans(gpugate) == {0: (0, 100), 1: (0, 100)}
    assert [r.jct_s for r in gpugate.records] == [100, 100]


def test_fifo_keeps_a_small_job_behind_a_blocked_two_gpu_head_and_backfill_starts_it() -> None:
    # 2 GPUs. job 0 (1 GPU) runs [0, 100); job 1 (2 GPUs, t=1) must wait for it.
    # fifo: job 2 (1 GPU, 50 s, t=2) waits behind job 1: job 1 [100, 200), job 2 [200, 250).
    # fifo-backfill: job 2 starts at 2 on the free GPU, [2, 52); job 1 still starts at 100.
    jobs = [sim_job(0), sim_job(1, 1, gpus=2), sim_job(2, 2, run_s=50)]

    fifo = simulate("fifo", jobs, n_gpus=2)
    backfill = simulate("fifo-backfill", jobs, n_gpus=2)

    assert spans(fifo) == {0: (0, 100), 1: (100, 200), 2: (200, 250)}
    assert [r.jct_s for r in fifo.records] == [100, 199, 248]
    assert spans(backfill) == {0: (0, 100), 1: (100, 200), 2: (2, 52)}
    assert [r.jct_s for r in backfill.records] == [100, 199, 50]


def test_backfill_stops_for_a_head_that_waited_past_the_bound() -> None:
    # 2 GPUs, bound 1800 s. job 0 holds GPU0 for [0, 3000); job 1 (2 GPUs, t=1) is the
    # blocked head; job 2 backfills GPU1 for [2, 2002). At 2002 GPU1 is free for job 3
    # (t=3), but job 1 passed its bound at 1 + 1800 = 1801, so GPU1 stays free:
    #   bounded:   job 1 [3000, 3100), job 3 [3100, 5100)
    #   unbounded: job 3 [2002, 4002), job 1 [4002, 4102): the head waits 1002 s longer
    jobs = [sim_job(0, 0, 3000), sim_job(1, 1, 100, gpus=2), sim_job(2, 2, 2000)]
    jobs.append(sim_job(3, 3, 2000))
    backfill = policy_named("fifo-backfill")

    bounded = simulate(replace(backfill, max_head_wait_s=1800), jobs, n_gpus=2)
    unbounded = simulate(replace(backfill, max_head_wait_s=math.inf), jobs, n_gpus=2)

    assert spans(bounded) == {0: (0, 3000), 1: (3000, 3100), 2: (2, 2002), 3: (3100, 5100)}
    assert spans(unbounded) == {0: (0, 3000), 1: (4002, 4102), 2: (2, 2002), 3: (2002, 4002)}


# --- memory-only: free memory now, blind to jobs still loading ------------------------------
def test_memory_only_starts_a_job_during_a_ramp_up_and_it_crashes_when_both_allocate() -> None:
    # Two 16 GiB jobs. t=0: job 0 starts and loads until 10. t=5: nothing is allocated yet,
    # 24 GiB look free, job 1 starts. t=10: job 0 allocates 16 GiB. t=15: job 1 allocates:
    # 16 + 16 = 32 > 24 GiB, out of memory. Resubmitted at once, it finds 8 GiB free and
    # waits for job 0 to end at 100: it reruns [100, 200), JCT 195.
    jobs = [sim_job(0, mem_gib=16), sim_job(1, 5, mem_gib=16)]

    records = by_id(simulate("memory-only", jobs))

    assert (records[0].start_s, records[0].end_s, records[0].oom_crashes) == (0, 100, 0)
    assert records[1].oom_crashes == 1
    assert records[1].first_start_s == 5
    assert (records[1].start_s, records[1].end_s) == (100, 200)
    assert records[1].jct_s == 195
    assert records[1].outcome == Outcome.COMPLETED


def test_the_job_that_allocates_second_crashes_even_when_it_started_first() -> None:
    # job 0 loads for 30 s, job 1 (t=5) for 10 s: job 1 allocates at 15, job 0 at 30 and
    # dies. job 0 reruns once job 1 ends at 5 + 100 = 105: [105, 205).
    jobs = [sim_job(0, mem_gib=16, ramp_s=30), sim_job(1, 5, mem_gib=16)]

    records = by_id(simulate("memory-only", jobs))

    assert (records[1].start_s, records[1].end_s, records[1].oom_crashes) == (5, 105, 0)
    assert (records[0].first_start_s, records[0].oom_crashes) == (0, 1)
    assert (records[0].start_s, records[0].end_s) == (105, 205)


def test_with_no_retries_allowed_a_crashed_job_fails_at_its_crash() -> None:
    # The first memory-only story with max_oom_retries=0: job 1 dies at 15 for good.
    jobs = [sim_job(0, mem_gib=16), sim_job(1, 5, mem_gib=16)]

    records = by_id(simulate("memory-only", jobs, max_oom_retries=0))

    assert records[1].outcome == Outcome.FAILED_OOM
    assert (records[1].start_s, records[1].end_s, records[1].oom_crashes) == (5, 15, 1)
    assert records[0].outcome == Outcome.COMPLETED


def test_memory_only_does_not_start_two_jobs_on_the_same_free_memory_in_one_pass() -> None:
    # Two 16 GiB jobs submitted together: 24 GiB are free for one of them, not for both.
    jobs = [sim_job(0, mem_gib=16), sim_job(1, mem_gib=16)]

    records = by_id(simulate("memory-only", jobs))

    assert records[1].oom_crashes == 0
    assert (records[1].start_s, records[1].end_s) == (100, 200)


# --- gpugate: headroom with reservations, priorities ----------------------------------------
def test_gpugate_reserves_declared_memory_while_a_job_loads_and_never_crashes() -> None:
    # The first memory-only story: at t=5 job 0 still reserves its 16 GiB, 16 + 16 > 21.6,
    # so job 1 waits and runs [100, 200) on its first try.
    jobs = [sim_job(0, mem_gib=16), sim_job(1, 5, mem_gib=16)]

    result = simulate("gpugate", jobs)

    assert spans(result) == {0: (0, 100), 1: (100, 200)}
    assert [r.oom_crashes for r in result.records] == [0, 0]
    assert by_id(result)[1].first_start_s == 100


def test_gpugate_never_shares_a_gpu_with_a_job_that_declares_nothing() -> None:
    # job 0 declares 4 GiB and 10%; job 1 (t=1) declares nothing and needs an idle GPU,
    # although it really allocates only 4 GiB: it runs after job 0, [100, 200).
    jobs = [sim_job(0, mem_gib=4, util_pct=10), sim_job(1, 1, mem_gib=None, uses_gib=4)]

    assert spans(simulate("gpugate", jobs)) == {0: (0, 100), 1: (100, 200)}


def test_gpugate_starts_a_later_high_priority_job_first_and_fifo_does_not() -> None:
    # One 16 GiB job at a time. job 0 runs [0, 100); job 1 (priority 0, t=1) and job 2
    # (priority 2, t=2) wait. gpugate: job 2 [100, 200), job 1 [200, 300) (aging gives 1
    # point an hour: job 1 earned under 0.03 by t=100). fifo: job 1 [100, 200), job 2 [200, 300).
    jobs = [sim_job(0, mem_gib=16), sim_job(1, 1, mem_gib=16), sim_job(2, 2, mem_gib=16)]
    jobs[2] = replace(jobs[2], priority=2)

    assert spans(simulate("gpugate", jobs)) == {0: (0, 100), 1: (200, 300), 2: (100, 200)}
    assert spans(simulate("fifo", jobs)) == {0: (0, 100), 1: (100, 200), 2: (200, 300)}


def test_a_job_that_can_never_fit_is_refused_when_it_arrives() -> None:
    # 95% utilization is over the 90% line of an idle GPU; so are 22 GiB (> 21.6 GiB).
    # Refused at their submit time, they never start and hold nothing: job 2 runs [0, 100).
    jobs = [sim_job(0, util_pct=95), sim_job(1, 3, mem_gib=22), sim_job(2)]

    records = by_id(simulate("gpugate", jobs))

    for refused in (records[0], records[1]):
        assert refused.outcome == Outcome.REFUSED
        assert refused.first_start_s is None
        assert refused.end_s == refused.job.submit_s
    assert (records[2].start_s, records[2].end_s) == (0, 100)


def test_a_job_that_outgrows_the_gpu_is_retried_max_oom_retries_times_then_fails() -> None:
    # It declares 8 GiB but allocates 30 GiB, more than the GPU has: every run dies when it
    # allocates, 10 s after its start. Runs [0, 10), [10, 20), [20, 30): with 2 retries the
    # third crash is final, at 30.
    jobs = [sim_job(0, mem_gib=8, uses_gib=30)]

    record = simulate("gpugate", jobs, max_oom_retries=2).records[0]

    assert record.outcome == Outcome.FAILED_OOM
    assert record.oom_crashes == 3
    assert (record.first_start_s, record.start_s, record.end_s) == (0, 20, 30)


def test_after_a_crash_gpugate_queues_the_rerun_behind_jobs_already_waiting() -> None:
    # job 0 declares 4 GiB, allocates 30 GiB (dies at every allocation); job 1 (t=5, 20 GiB)
    # waits: 4 reserved + 20 > 21.6 GiB. job 0 dies at 10 and is resubmitted; job 1 has
    # waited longer, so it starts at 10, [10, 110); job 0's rerun [110, 120) dies for good.
    jobs = [sim_job(0, mem_gib=4, uses_gib=30), sim_job(1, 5, mem_gib=20)]

    records = by_id(simulate("gpugate", jobs, max_oom_retries=1))

    assert (records[1].start_s, records[1].end_s) == (10, 110)
    assert (records[0].start_s, records[0].end_s, records[0].outcome) == (110, 120, "failed-oom")


def test_after_a_crash_a_fifo_queue_puts_the_rerun_behind_jobs_already_waiting() -> None:
    # The story above under strict submission order: job 1 was waiting when job 0 crashed.
    jobs = [sim_job(0, mem_gib=4, uses_gib=30), sim_job(1, 5, mem_gib=20)]

    records = by_id(simulate("gpugate-fifo", jobs, max_oom_retries=1))

    assert (records[1].start_s, records[1].end_s) == (10, 110)


# --- sjf-oracle: shortest true run time first -----------------------------------------------
def test_sjf_oracle_starts_the_shortest_queued_job_first() -> None:
    # One 16 GiB job at a time. job 0 (100 s) runs [0, 100); queued: job 1 (300 s, t=1),
    # job 2 (50 s, t=2), job 3 (100 s, t=3).
    # sjf-oracle: job 2 [100, 150), job 3 [150, 250), job 1 [250, 550); mean JCT
    #   (100 + 549 + 148 + 247) / 4 = 261.
    # gpugate (equal priorities: arrival order): job 1 [100, 400), job 2 [400, 450),
    #   job 3 [450, 550); mean JCT (100 + 399 + 448 + 547) / 4 = 373.5.
    jobs = [sim_job(0, 0, 100, mem_gib=16), sim_job(1, 1, 300, mem_gib=16)]
    jobs += [sim_job(2, 2, 50, mem_gib=16), sim_job(3, 3, 100, mem_gib=16)]

    sjf = simulate("sjf-oracle", jobs)
    gpugate = simulate("gpugate", jobs)

    assert spans(sjf) == {0: (0, 100), 1: (250, 550), 2: (100, 150), 3: (150, 250)}
    assert mean_jct_s(sjf.records) == 261
    assert spans(gpugate) == {0: (0, 100), 1: (100, 400), 2: (400, 450), 3: (450, 550)}
    assert mean_jct_s(gpugate.records) == 373.5


# --- interference ---------------------------------------------------------------------------
def test_two_colocated_jobs_slow_each_other_down_as_the_interference_model_says() -> None:
    # job 0 (30%, 100 s) and job 1 (50%, 200 s) share the GPU from 0 (80% <= 90%; the share
    # line is off for this test, gpugate-no-share-line). Both load
    # at full speed until 10, then run at s0, s1 = FITTED.speeds([0.3, 0.5]) (~0.500,
    # ~0.682). job 0 has 90 s of work left: it ends at 10 + 90 / s0 (~190.0). job 1 did
    # (end0 - 10) * s1 of its 190 s by then and runs the rest alone: ends ~257.3.
    jobs = [sim_job(0, 0, 100, util_pct=30), sim_job(1, 0, 200, util_pct=50)]
    s0, s1 = FITTED.speeds([0.3, 0.5])
    end0 = 10 + 90 / s0
    end1 = end0 + 190 - (end0 - 10) * s1

    shared = simulate("gpugate-no-share-line", jobs, interference=FITTED)
    alone = simulate("gpugate-no-share-line", jobs[1:], interference=FITTED)

    assert [r.start_s for r in shared.records] == [0, 0]
    assert [r.end_s for r in shared.records] == [pytest.approx(end0), pytest.approx(end1)]
    assert end0 > 100 and end1 > 200
    assert alone.records[0].end_s == 200


# --- determinism ----------------------------------------------------------------------------
N_JOBS, N_GPUS, GPU_MEM_BYTES = 300, 4, 32 * GiB
SEEDS = (11, 12)
MAX_OOM_RETRIES = SimConfig().max_oom_retries


def run_synthetic(policy_name: str, seed: int) -> tuple[SimResult, tuple[int, int]]:
    """A fresh run on a freshly generated synthetic workload, with interference; also the
    last ``(jobs ended, jobs)`` the run reported."""
    workload = synthetic(N_JOBS, N_GPUS, 0.8, seed, gpu_mem_bytes=GPU_MEM_BYTES)
    config = SimConfig(n_gpus=N_GPUS, gpu_mem_bytes=GPU_MEM_BYTES)
    progress: list[tuple[int, int]] = []
    oracle = policy_name in ORACLE_POLICIES
    simulation = Simulation(
        workload.jobs, policy_named(policy_name), FITTED, config, policy_name, oracle=oracle
    )
    result = simulation.run(lambda ended, total: progress.append((ended, total)))
    return result, progress[-1]


synthetic_run = functools.cache(run_synthetic)  # the property tests below share runs


def history(result: SimResult) -> list[tuple[object, ...]]:
    return [
        (r.job.id, r.first_start_s, r.start_s, r.end_s, r.oom_crashes, r.outcome)
        for r in result.records
    ]


@pytest.mark.parametrize("policy_name", ["fifo-backfill", "memory-only-backfill", "gpugate"])
def test_the_same_seed_gives_the_same_run(policy_name: str) -> None:
    first, _ = synthetic_run(policy_name, SEEDS[0])
    again, _ = run_synthetic(policy_name, SEEDS[0])

    assert history(again) == history(first)
    assert again.timeline == first.timeline
    assert again.passes == first.passes


def test_another_seed_gives_another_run() -> None:
    one, _ = synthetic_run("gpugate", SEEDS[0])
    other, _ = synthetic_run("gpugate", SEEDS[1])

    assert spans(one) != spans(other)


# --- conservation on synthetic workloads ----------------------------------------------------
ALL_POLICIES = ["fifo", "fifo-backfill", "memory-only-backfill", "gpugate", "sjf-oracle"]
HEADROOM_POLICIES = ["gpugate", "sjf-oracle"]
WHOLE_GPU_POLICIES = ["fifo", "fifo-backfill"]
# the smallest synthetic job declares a quarter of a GPU: four would pass the 90% line
MOST_JOBS_PER_GPU = 3


def each_run(policies: Sequence[str]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(
        ("policy_name", "seed"), [(p, s) for p in policies for s in SEEDS]
    )


@each_run(ALL_POLICIES)
def test_every_job_ends_exactly_once_with_one_outcome(policy_name: str, seed: int) -> None:
    result, (ended, total) = synthetic_run(policy_name, seed)

    assert ended == total == N_JOBS
    assert len(result.records) == N_JOBS
    for record in result.records:
        assert record.end_s is not None
        assert record.outcome in (Outcome.COMPLETED, Outcome.FAILED_OOM, Outcome.REFUSED)
        if record.outcome == Outcome.REFUSED:
            assert record.first_start_s is None
            assert record.end_s == record.job.submit_s
        elif record.outcome == Outcome.FAILED_OOM:
            assert record.oom_crashes == MAX_OOM_RETRIES + 1
        else:
            assert record.oom_crashes <= MAX_OOM_RETRIES


@each_run(ALL_POLICIES)
def test_no_job_starts_before_it_is_submitted_and_slowdowns_only_delay(
    policy_name: str, seed: int
) -> None:
    result, _ = synthetic_run(policy_name, seed)

    for record in result.records:
        if record.first_start_s is None:
            continue
        assert record.start_s is not None and record.end_s is not None
        assert record.job.submit_s <= record.first_start_s <= record.start_s <= record.end_s
        if record.outcome == Outcome.COMPLETED:
            assert record.end_s >= record.start_s + record.job.run_s - 1e-6


@each_run(ALL_POLICIES)
def test_no_gpu_ever_holds_more_memory_than_it_has(policy_name: str, seed: int) -> None:
    timeline = synthetic_run(policy_name, seed)[0].timeline

    assert timeline.at_s == sorted(timeline.at_s)
    assert max(max(per_gpu) for per_gpu in timeline.mem_pct) <= 100
    assert min(timeline.queued) >= 0


def test_memory_only_crashes_on_the_synthetic_workload_so_retries_are_exercised() -> None:
    records = synthetic_run("memory-only-backfill", SEEDS[0])[0].records

    assert any(r.oom_crashes and r.outcome == Outcome.COMPLETED for r in records)


@each_run(WHOLE_GPU_POLICIES)
def test_one_job_per_gpu_never_crashes_overbooks_or_slows_a_job(
    policy_name: str, seed: int
) -> None:
    result, _ = synthetic_run(policy_name, seed)
    completed = [r for r in result.records if r.outcome == Outcome.COMPLETED]

    assert sum(r.oom_crashes for r in result.records) == 0
    assert max(result.timeline.running) <= N_GPUS
    assert peak_sum(completed, lambda job: job.gpus) <= N_GPUS
    for record in completed:  # alone on its GPUs: nobody interferes
        assert record.start_s is not None
        assert record.end_s == pytest.approx(record.start_s + record.job.run_s)


@each_run(HEADROOM_POLICIES)
def test_headroom_admission_keeps_every_gpu_under_its_memory_line(
    policy_name: str, seed: int
) -> None:
    # synthetic jobs really use what they declare: nothing should ever pass the 90% line
    result, _ = synthetic_run(policy_name, seed)
    completed = [r for r in result.records if r.outcome == Outcome.COMPLETED]
    memory_line_bytes = 0.9 * GPU_MEM_BYTES

    assert sum(r.oom_crashes for r in result.records) == 0
    assert max(max(per_gpu) for per_gpu in result.timeline.mem_pct) <= 90
    assert max(result.timeline.running) <= MOST_JOBS_PER_GPU * N_GPUS
    assert peak_sum(completed, lambda job: job.gpus * job.mem_bytes) <= N_GPUS * memory_line_bytes


# --- helpers --------------------------------------------------------------------------------
def mean_jct_s(records: Sequence[JobRecord]) -> float:
    return sum(r.jct_s for r in records) / len(records)


def peak_sum(records: Sequence[JobRecord], weight: Callable[[SimJob], float]) -> float:
    """The largest total ``weight`` of jobs running at one instant, each over its last run
    ``[start_s, end_s)`` (exact for runs without crashes: then there is only one run)."""
    edges: list[tuple[float, int, float]] = []
    for record in records:
        assert record.start_s is not None and record.end_s is not None
        edges.append((record.end_s, 0, -weight(record.job)))  # ends first at one instant
        edges.append((record.start_s, 1, weight(record.job)))
    peak = total = 0.0
    for _, _, change in sorted(edges):
        total += change
        peak = max(peak, total)
    return peak


# --- run-time history -----------------------------------------------------------------------
def test_the_simulator_orders_by_what_history_says_not_by_the_truth() -> None:
    """One GPU held by job 0 until t=100; jobs 1 (command "long", really 10 s) and 2
    ("short", really 1000 s) wait. History says "long" takes 1 h and "short" 1 min, so
    gpugate starts job 2 first, as the daemon would, although the truth is the other way
    round. Without history it is first come, first served; the oracle knows the truth."""

    def job(job_id: int, submit_s: float, run_s: float, command: str) -> SimJob:
        return replace(sim_job(job_id, submit_s, run_s, mem_gib=16), command=command)

    jobs = [job(0, 0, 100, "blocker"), job(1, 1, 10, "long"), job(2, 2, 1000, "short")]
    history = [("long", 3600.0), ("short", 60.0)]

    learned = simulate(POLICIES["gpugate"][0], jobs, history=history)
    fresh = simulate(POLICIES["gpugate"][0], jobs)
    oracle = simulate("sjf-oracle", jobs)

    assert spans(learned)[2] == (100, 1100) and spans(learned)[1] == (1100, 1110)
    assert spans(fresh)[1] == (100, 110) and spans(fresh)[2] == (110, 1110)
    assert spans(oracle)[1] == (100, 110)


def test_completed_runs_teach_the_history_of_later_submissions() -> None:
    """Runs of "a" (100 s and 300 s) end before job 3 ("a") arrives at 500: it is expected
    to run their median, 200 s (+4.2 points), and goes before job 4 ("b", never seen,
    submitted earlier) when the blocker (job 2, [400, 1000)) ends. Without learning from
    completed runs, first come first served would start job 4 first."""

    def job(job_id: int, submit_s: float, run_s: float, command: str, gib: float) -> SimJob:
        return replace(sim_job(job_id, submit_s, run_s, mem_gib=gib), command=command)

    jobs = [
        job(0, 0, 100, "a", 8),
        job(1, 0, 300, "a", 8),
        job(2, 400, 600, "blocker", 16),
        job(4, 450, 100, "b", 16),
        job(3, 500, 100, "a", 16),
    ]
    sim = Simulation(jobs, POLICIES["gpugate"][0], NONE, SimConfig(1, 24 * GiB))
    result = sim.run()
    assert spans(result)[3] == (1000, 1100) and spans(result)[4] == (1100, 1200)
    assert sim.history.expected_run_s("a") == pytest.approx(100.0)  # 100, 300 and 100


# --- preemption ------------------------------------------------------------------------------
def test_a_checkpointing_job_yields_to_an_urgent_one_and_finishes_what_it_had_left() -> None:
    """Job 0 (priority 0, 16 GiB, 1000 s) runs from 0; job 1 (priority 5, 10 GiB, 100 s)
    arrives at 400 and does not fit beside it. Job 0 has run 400 s (past the 300 s
    minimum): asked to checkpoint, it saves for 60 s and yields at 460 with 600 s of work
    left, plus 60 s to restore. Job 1 runs [460, 560); job 0 then [560, 1220)."""
    jobs = [
        sim_job(0, 0, 1000, mem_gib=16, priority=0),
        sim_job(1, 400, 100, mem_gib=10, priority=5),
    ]
    config = SimConfig(1, 24 * GiB, preempt=PreemptMode.CHECKPOINT, checkpoint_s=60.0)
    result = Simulation(jobs, POLICIES["gpugate"][0], NONE, config).run()
    records = by_id(result)
    assert spans(result)[1] == (460, 560)
    assert (records[0].first_start_s, records[0].start_s, records[0].end_s) == (0, 560, 1220)


def test_a_victim_too_young_to_yield_is_preempted_the_moment_it_comes_of_age() -> None:
    """Job 1 arrives at 100, when job 0 has run only 100 s of the 300 s minimum. Nothing
    happens between 100 and job 0's end at 1000, yet at 300 job 0 comes of age: the pass
    asks to be woken then, job 0 saves [300, 360), and job 1 runs [360, 460)."""
    jobs = [
        sim_job(0, 0, 1000, mem_gib=16, priority=0),
        sim_job(1, 100, 100, mem_gib=10, priority=5),
    ]
    config = SimConfig(1, 24 * GiB, preempt=PreemptMode.CHECKPOINT, checkpoint_s=60.0)
    result = Simulation(jobs, POLICIES["gpugate"][0], NONE, config).run()
    assert spans(result)[1] == (360, 460)


def test_coming_of_age_survives_float_rounding() -> None:
    """Started at s, the victim is woken for at s + 300, where (s + 300) - s rounds to
    just under 300 for this s: the age test must be the same sum, or the wake is lost
    and job 1 waits until job 0 ends."""
    s = 7905.089776155183
    jobs = [
        sim_job(0, s, 1000, mem_gib=16, priority=0),
        sim_job(1, s + 100, 100, mem_gib=10, priority=5),
    ]
    config = SimConfig(1, 24 * GiB, preempt=PreemptMode.CHECKPOINT, checkpoint_s=60.0)
    result = Simulation(jobs, POLICIES["gpugate"][0], NONE, config).run()
    assert spans(result)[1] == pytest.approx((s + 360, s + 460))


def test_nothing_is_preempted_when_jobs_do_not_allow_it_or_for_the_fifo_peers() -> None:
    jobs = [
        sim_job(0, 0, 1000, mem_gib=16, priority=0),
        sim_job(1, 400, 100, mem_gib=10, priority=5),
    ]
    never = Simulation(jobs, POLICIES["gpugate"][0], NONE, SimConfig(1, 24 * GiB)).run()
    assert spans(never)[1] == (1000, 1100)
    allowed = SimConfig(1, 24 * GiB, preempt=PreemptMode.CHECKPOINT)
    peer = Simulation(jobs, policy_named("memory-only-backfill"), NONE, allowed).run()
    assert spans(peer)[1] == (1000, 1100)
