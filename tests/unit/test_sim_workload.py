"""Simulator workloads: the Alibaba loader's rules on a tiny hand-written trace, load
measures and rescaling, time windows, the synthetic generator, and the workload CSV."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gpugate.sim.alibaba import PRIORITY_NAMES, load_alibaba
from gpugate.sim.csvio import WorkloadError
from gpugate.sim.job import SimJob, Workload
from gpugate.sim.tracefile import load_csv, load_trace, save_csv
from gpugate.sim.workload import (
    DAY_S,
    last_days,
    offered_load,
    rescale_factor,
    rescale_to_load,
    runs_before,
    select_days,
    split_by_time,
    synthetic,
    whole_gpu_load,
)
from gpugate.units import GiB

TINY = Path(__file__).parent.parent / "data" / "alibaba_tiny.csv"
# alibaba_tiny.csv: 30 pods; 5 CPU-only (one of them also runs > 1 day), 2 with 12 and 16
# GPUs, 2 more longer than a day; the first kept pod (row 1) submits at 1800 s.
KEPT = 21


def job(
    id: int, submit_s: float, run_s: float = 100.0, gpus: int = 1, share: float | None = None
) -> SimJob:
    """A job taking ``share`` of each GPU (declared), or whole GPUs if ``share`` is None."""
    if share is None:
        return SimJob(id, submit_s, run_s, gpus, 30 * GiB, 100.0, None)
    return SimJob(id, submit_s, run_s, gpus, round(share * 32 * GiB), 100 * share, 0, 100 * share)


def by_name(workload: Workload) -> dict[str, SimJob]:
    return {job.name: job for job in workload.jobs}


# --- Alibaba ------------------------------------------------------------------------------
def test_alibaba_keeps_gpu_pods_up_to_8_gpus_and_a_day_and_says_what_it_dropped() -> None:
    workload = load_alibaba(TINY)

    assert len(workload.jobs) == KEPT
    assert all(1 <= job.gpus <= 8 and job.run_s <= DAY_S for job in workload.jobs)
    assert "kept 21 of 30 pods" in workload.description
    assert "5 CPU-only" in workload.description
    assert "2 with more than 8 GPUs" in workload.description
    assert "2 longer than 24 h" in workload.description
    assert "tiny-pod-0004" in by_name(workload)  # exactly one day is kept


def test_alibaba_options_change_the_filters() -> None:
    with_cpu = load_alibaba(TINY, include_cpu_only=True)
    # four CPU-only pods come in; the fifth now counts as too long
    assert len(with_cpu.jobs) == KEPT + 4
    assert "dropped 0 CPU-only, 2 with more than 8 GPUs, 3 longer than 24 h" in with_cpu.description
    assert "tiny-pod-0000" in by_name(with_cpu)
    assert len(load_alibaba(TINY, max_gpus=4).jobs) == KEPT - 2  # the two 8-GPU pods
    assert len(load_alibaba(TINY, max_run_s=3600).jobs) == 13


def test_alibaba_jobs_are_sorted_and_the_first_kept_pod_submits_at_zero() -> None:
    jobs = load_alibaba(TINY).jobs

    assert jobs[0].name == "tiny-pod-0001" and jobs[0].submit_s == 0
    assert [job.submit_s for job in jobs] == sorted(job.submit_s for job in jobs)
    assert by_name(load_alibaba(TINY))["tiny-pod-0029"].submit_s == 864000 - 1800


def test_alibaba_priority_comes_from_qos() -> None:
    jobs = by_name(load_alibaba(TINY))

    assert jobs["tiny-pod-0001"].priority == 2  # LS
    assert jobs["tiny-pod-0004"].priority == 2  # Guaranteed
    assert jobs["tiny-pod-0003"].priority == 1  # Burstable
    assert jobs["tiny-pod-0002"].priority == 0  # BE
    assert load_alibaba(TINY).priority_names == PRIORITY_NAMES
    assert all(job.user == "" for job in jobs.values())


def test_a_sharing_pod_declares_and_uses_its_share_of_the_gpu() -> None:
    half = by_name(load_alibaba(TINY))["tiny-pod-0002"]  # gpu_milli 500
    quarter = by_name(load_alibaba(TINY, gpu_mem_bytes=16 * GiB))["tiny-pod-0003"]

    assert half.declared_mem_bytes == half.mem_bytes == 16 * GiB
    assert half.declared_util_pct == half.util_pct == 50.0
    assert quarter.declared_mem_bytes == quarter.mem_bytes == 4 * GiB


def test_whole_gpu_pods_declare_nothing_and_use_most_of_each_gpu() -> None:
    jobs = by_name(load_alibaba(TINY, whole_gpu_mem_fraction=0.5))

    for name in ("tiny-pod-0001", "tiny-pod-0005", "tiny-pod-0007", "tiny-pod-0008"):
        assert jobs[name].declared_mem_bytes is None
        assert jobs[name].util_pct == 100.0
        assert jobs[name].mem_bytes == 16 * GiB
    assert [jobs[name].gpus for name in ("tiny-pod-0005", "tiny-pod-0007")] == [2, 4]


def test_alibaba_ramp_is_seeded_bounded_and_does_not_depend_on_the_filters() -> None:
    ramps = {job.name: job.ramp_s for job in load_alibaba(TINY, seed=1).jobs}
    wider = {job.name: job.ramp_s for job in load_alibaba(TINY, seed=1, max_gpus=16).jobs}

    assert all(2 <= ramp_s <= 55 for ramp_s in ramps.values())
    assert ramps == {job.name: job.ramp_s for job in load_alibaba(TINY, seed=1).jobs}
    assert ramps != {job.name: job.ramp_s for job in load_alibaba(TINY, seed=2).jobs}
    assert all(wider[name] == ramp_s for name, ramp_s in ramps.items())


def test_alibaba_windows_are_in_days_from_the_first_kept_pod() -> None:
    first_two_days = load_alibaba(TINY, window_days=(0, 2))
    last_week = load_alibaba(TINY, last_days=7)

    assert len(first_two_days.jobs) == 7
    assert len(last_week.jobs) == 14
    assert last_week.jobs[0].name == "tiny-pod-0011" and last_week.jobs[0].submit_s == 0
    assert "last 7 days: 14 jobs" in last_week.description


def test_bad_alibaba_rows_name_the_file_and_line(tmp_path: Path) -> None:
    lines = TINY.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    for row, message in [
        ("p,0,10,1,500,0.5,1,1,Platinum,Running,0", "unknown qos"),
        ("p,0,-10,1,500,0.5,1,1,BE,Running,0", "run_time_s"),
        ("p,0,10,1,0,0.5,1,1,BE,Running,0", "gpu_milli"),
        ("p,0,10,one,500,0.5,1,1,BE,Running,0", "num_gpu"),
    ]:
        bad.write_text("\n".join([*lines[:3], row]))
        with pytest.raises(WorkloadError, match=rf"bad\.csv:4: .*{message}"):
            load_alibaba(bad)


# --- load and rescaling -------------------------------------------------------------------
def test_offered_load_counts_declared_shares_over_the_arrival_span() -> None:
    jobs = [job(0, 0.0, 400, share=0.5), job(1, 50.0, 100, gpus=2), job(2, 100.0, 300)]

    # (0.5 * 400 + 2 * 100 + 300) GPU-seconds over 2 GPUs and 100 s of arrivals
    assert offered_load(jobs, 2) == pytest.approx(700 / 200)
    assert whole_gpu_load(jobs, 2) == pytest.approx(900 / 200)


def test_load_needs_arrivals_that_span_time_and_a_gpu() -> None:
    with pytest.raises(WorkloadError, match="span no time"):
        offered_load([job(0, 5.0), job(1, 5.0)], 1)
    with pytest.raises(WorkloadError, match="at least one GPU"):
        offered_load([job(0, 0.0), job(1, 5.0)], 0)


@pytest.mark.parametrize("target", [0.3, 0.9, 1.7])
def test_rescale_hits_the_target_and_keeps_run_times_and_order(target: float) -> None:
    jobs = list(load_alibaba(TINY).jobs)
    rescaled = rescale_to_load(jobs, 8, target)

    assert offered_load(rescaled, 8) == pytest.approx(target, rel=1e-9)
    assert [j.run_s for j in rescaled] == [j.run_s for j in jobs]
    assert [j.id for j in rescaled] == [j.id for j in jobs]
    assert [j.submit_s for j in rescaled] == sorted(j.submit_s for j in rescaled)
    factor = rescale_factor(jobs, 8, target)
    assert rescaled[-1].submit_s == pytest.approx(jobs[-1].submit_s * factor)


# --- time windows -------------------------------------------------------------------------
def test_split_by_time_is_disjoint_and_train_comes_before_test() -> None:
    jobs = list(load_alibaba(TINY).jobs)
    train, test = split_by_time(jobs, test_days=7)

    assert {j.id for j in train} | {j.id for j in test} == {j.id for j in jobs}
    assert not {j.id for j in train} & {j.id for j in test}
    original = {j.id: j.submit_s for j in jobs}
    assert max(original[j.id] for j in train) < min(original[j.id] for j in test)
    assert train[0].submit_s == test[0].submit_s == 0
    assert test == last_days(jobs, 7)


def test_select_days_is_half_open() -> None:
    jobs = [job(i, i * DAY_S) for i in range(5)]

    assert [j.id for j in select_days(jobs, 1, 3)] == [1, 2]
    assert select_days(jobs, 1, 3)[0].submit_s == 0


# --- synthetic ----------------------------------------------------------------------------
def test_synthetic_is_deterministic_per_seed_and_hits_the_load() -> None:
    first = synthetic(300, 4, 0.8, seed=7)

    assert first == synthetic(300, 4, 0.8, seed=7)
    assert first.jobs != synthetic(300, 4, 0.8, seed=8).jobs
    assert offered_load(first.jobs, 4) == pytest.approx(0.8, rel=1e-9)
    assert first.jobs[0].submit_s == 0


def test_synthetic_mix_fits_the_machine_and_users_are_unequal() -> None:
    jobs = synthetic(2000, 2, 0.5, seed=1, users=4).jobs
    users = Counter(j.user for j in jobs)

    assert {j.gpus for j in jobs} == {1, 2}  # no 4- or 8-GPU job on a 2-GPU machine
    assert users["user0"] > 1.5 * users["user3"]
    assert {j.priority for j in jobs} == {0, 1, 2}
    assert all(j.declared_mem_bytes is None for j in jobs if j.gpus > 1)
    sharing = [j for j in jobs if j.declared_mem_bytes is not None]
    assert 0.4 < len(sharing) / len(jobs) < 0.65
    assert all(j.mem_bytes == j.declared_mem_bytes for j in sharing)
    assert all(1 <= j.run_s <= DAY_S and 2 <= j.ramp_s <= 55 for j in jobs)


def test_mem_overrun_fraction_makes_declaring_jobs_use_more_than_declared() -> None:
    jobs = synthetic(2000, 8, 0.9, seed=3, mem_overrun_fraction=0.25).jobs
    sharing = [j for j in jobs if j.declared_mem_bytes is not None]
    over = [j for j in sharing if j.mem_bytes > (j.declared_mem_bytes or 0)]

    assert 0.2 < len(over) / len(sharing) < 0.3
    assert all(j.mem_bytes <= 32 * GiB for j in over)


def test_synthetic_can_draw_run_times_from_a_runtime_file(tmp_path: Path) -> None:
    runtimes = tmp_path / "runtimes.csv"
    runtimes.write_text("runtime\n0.0\n60\n600\n6000\n999999\n")
    workload = synthetic(100, 4, 0.5, seed=2, philly_path=runtimes)

    assert {j.run_s for j in workload.jobs} == {60.0, 600.0, 6000.0}  # 0 and > 1 day left out
    # the other attributes keep their draws
    assert [j.gpus for j in workload.jobs] == [j.gpus for j in synthetic(100, 4, 0.5, 2).jobs]


# --- CSV ----------------------------------------------------------------------------------
def test_workload_csv_round_trips(tmp_path: Path) -> None:
    workload = synthetic(50, 4, 0.7, seed=5, mem_overrun_fraction=0.2)
    path = tmp_path / "jobs.csv"
    save_csv(workload, path)

    assert load_csv(path).jobs == workload.jobs
    assert load_trace(path).jobs == workload.jobs


def test_load_trace_reads_either_format(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(
        "submit_s,id,run_s,gpus,mem_bytes,util_pct,declared_mem_bytes\n"
        "10,1,60,1,8GiB,40,8GiB\n"
        "5,0,30,1,30GiB,100,\n"
    )
    mine = load_trace(path)

    assert [j.id for j in mine.jobs] == [0, 1] and mine.jobs[0].submit_s == 0
    assert mine.jobs[0].declared_mem_bytes is None
    assert mine.jobs[1].declared_mem_bytes == 8 * GiB and mine.jobs[1].ramp_s == 20.0
    assert len(load_trace(TINY, last_days=7, seed=3).jobs) == 14
    with pytest.raises(WorkloadError, match="Alibaba traces only"):
        load_trace(path, max_gpus=4)


HEADER = "id,submit_s,run_s,gpus,mem_bytes,util_pct,declared_mem_bytes"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b,c\n1,2,3\n", r"x\.csv:1: unknown header"),
        (HEADER + ",color\n", r"x\.csv:1: bad header: unknown column 'color'"),
        (
            "id,submit_s,run_s\n",
            r"x\.csv:1: bad header: missing column 'declared_mem_bytes', missing column 'gpus'",
        ),
        (HEADER + "\n0,0,10,1,1GiB,50,\n1,5,-3,1,1GiB,50,\n", r"x\.csv:3: column run_s"),
        (HEADER + "\n0,0,ten,1,1GiB,50,\n", r"x\.csv:2: column run_s"),
        (HEADER + "\n0,0,10,1,1GiB,150,\n", r"x\.csv:2: column util_pct"),
        (HEADER + "\n0,nan,10,1,1GiB,50,\n", r"x\.csv:2: column submit_s"),
        (HEADER + "\n0,0,10,1,lots,50,\n", r"x\.csv:2: column mem_bytes"),
        (HEADER + "\n0,0,10,1,1GiB\n", r"x\.csv:2: 5 values, header has 7"),
        (HEADER + "\n0,0,10,1,1GiB,50,\n0,1,10,1,1GiB,50,\n", "ids must be unique"),
        (HEADER + ",id\n", r"x\.csv:1: bad header: repeated column 'id'"),
        ("", r"x\.csv: empty file"),
    ],
)
def test_bad_workload_files_get_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text(text)

    with pytest.raises(WorkloadError, match=message):
        load_trace(path)


def test_a_missing_file_is_a_workload_error(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match=r"nope\.csv: cannot read"):
        load_trace(tmp_path / "nope.csv")


def test_a_window_carries_the_runs_that_ended_before_it_opened() -> None:
    """The daemon running the last week has seen the earlier pods end: those become the
    window's history, keyed by the pod's request, in the order they ended; pods still
    running when the window opened are not in it."""
    pods = {job.id: job for job in load_alibaba(TINY).jobs}
    last_week = load_alibaba(TINY, last_days=7)
    opened = min(pods[job.id].submit_s for job in last_week.jobs)
    before = [j for j in pods.values() if j.id not in {w.id for w in last_week.jobs}]
    ended = sorted(
        (j for j in before if j.submit_s + j.run_s <= opened),
        key=lambda j: j.submit_s + j.run_s,
    )

    assert ended
    assert last_week.history == tuple((j.command, j.run_s) for j in ended)
    assert all(command.startswith("qos=") for command, _ in last_week.history)
    assert load_alibaba(TINY).history == ()  # the whole trace: nothing before it


def test_runs_still_going_when_the_window_opens_are_not_history() -> None:
    def job(job_id: int, submit_s: float, run_s: float) -> SimJob:
        return SimJob(job_id, submit_s, run_s, 1, GiB, 10.0, GiB, command=f"cmd{job_id % 2}")

    jobs = [job(0, 0, 50), job(1, 10, 30), job(2, 20, 500), job(3, 100, 5)]
    assert runs_before(jobs, {3}) == (("cmd1", 30.0), ("cmd0", 50.0))  # job 2 still ran
    assert runs_before(jobs, set()) == ()
