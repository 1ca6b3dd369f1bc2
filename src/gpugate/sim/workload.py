"""Workloads for the simulator: how loaded they are, time windows, and a seeded synthetic
generator. Generic: used by every trace loader (the file formats are in ``tracefile``).

Offered load
------------
A job asks for ``gpus * share`` GPUs for ``run_s`` seconds, where ``share`` is the fraction
of each GPU it declares (``declared_util_pct / 100`` for a job that declares its memory, 1 for a job
that declares nothing and so gets whole GPUs). Over a machine of ``n_gpus``::

    offered_load = sum(gpus * share * run_s) / (n_gpus * arrival_span_s)
    arrival_span_s = last submit_s - first submit_s

The span runs from the first to the last submit, not to the last finish: it is what the
arrival process alone says, so rescaling arrivals moves the load exactly. (With ``n``
Poisson arrivals the span averages ``(n - 1)`` gaps while the work is ``n`` jobs', so the
load reads ``n / (n - 1)`` high: negligible for the hundreds of jobs a run needs.)
``whole_gpu_load`` counts every job as whole GPUs: what a one-job-per-GPU queue sees.

Time windows are in days from the first job, half-open ``[start, end)``; the "last ``d``
days" end at the last submit and include it. Every selection is shifted so its first job
submits at 0 s. Train/test splits are by time, never at random.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from gpugate.sim.csvio import WorkloadError, parse_cell, parse_seconds, read_csv_rows
from gpugate.sim.job import SimJob, Workload
from gpugate.units import GiB

DAY_S = 86_400.0
DEFAULT_GPU_MEM_BYTES = 32 * GiB
WHOLE_GPU_MEM_FRACTION = 0.9  # a whole-GPU job's real peak memory, as a fraction of the GPU

# Ramp-up: a job allocates its memory within tens of seconds (CUDA context, model load,
# first batch). Capped below the daemon's 60 s ramp_timeout_s so every job has ramped
# before the scheduler stops reserving its expected use.
RAMP_MEDIAN_S = 20.0
RAMP_SIGMA = 0.5  # lognormal: 90% of jobs between 9 s and 38 s
RAMP_BOUNDS_S = (2.0, 55.0)

# synthetic(): the distributions documented in its docstring and docs/simulator-workloads.md
SYN_RUN_MEDIAN_S = 1200.0
SYN_RUN_SIGMA = 1.86  # puts the 90th percentile near 12,900 s, like Philly's
SYN_RUN_BOUNDS_S = (1.0, DAY_S)
SYN_GPU_COUNTS = {1: 0.85, 2: 0.08, 4: 0.05, 8: 0.02}
SYN_WHOLE_GPU_WEIGHT = 0.4  # of one-GPU jobs: declare nothing
SYN_SHARES = {0.25: 0.4, 0.5: 0.4, 0.75: 0.2}  # declared memory share of the rest
SYN_UTIL_NOISE = 0.1  # util share = memory share + N(0, 0.1), clamped to [0.05, 1]
SYN_PRIORITIES = {0: 0.3, 1: 0.5, 2: 0.2}
SYN_PRIORITY_NAMES = {0: "low", 1: "normal", 2: "high"}
SYN_OVERRUN_FACTOR = (1.25, 2.0)  # real / declared memory of an overrunning job, uniform


_T = TypeVar("_T")


# --- load ---------------------------------------------------------------------------------
def gpu_share(job: SimJob) -> float:
    """Fraction of each of its GPUs a job asks for: its declared utilization, or 1.0 when
    it declares nothing (it gets whole GPUs). What it really uses does not change it."""
    return 1.0 if job.declared_mem_bytes is None else job.declared_util_pct / 100.0


def arrival_span_s(jobs: Sequence[SimJob]) -> float:
    """Seconds from the first to the last submit; needs two distinct submit times."""
    submits = [job.submit_s for job in jobs]
    span = max(submits, default=0.0) - min(submits, default=0.0)
    if span <= 0:
        raise WorkloadError(f"load is undefined: {len(jobs)} jobs span no time between submits")
    return span


def offered_load(jobs: Sequence[SimJob], n_gpus: int) -> float:
    """Declared GPU-seconds asked per GPU-second of the arrival span (see module docstring)."""
    work = sum(job.gpus * gpu_share(job) * job.run_s for job in jobs)
    return work / (_positive_gpus(n_gpus) * arrival_span_s(jobs))


def whole_gpu_load(jobs: Sequence[SimJob], n_gpus: int) -> float:
    """Like ``offered_load`` with every job taking whole GPUs (one job per GPU)."""
    work = sum(job.gpus * job.run_s for job in jobs)
    return work / (_positive_gpus(n_gpus) * arrival_span_s(jobs))


def rescale_factor(jobs: Sequence[SimJob], n_gpus: int, target_load: float) -> float:
    """How much ``rescale_to_load`` stretches arrival gaps (> 1 spreads them out)."""
    if not (target_load > 0 and math.isfinite(target_load)):
        raise WorkloadError(f"target load must be a positive number, not {target_load}")
    load = offered_load(jobs, n_gpus)
    if load <= 0:
        raise WorkloadError("cannot rescale: the jobs ask for no GPU time")
    return load / target_load


def rescale_to_load(jobs: Sequence[SimJob], n_gpus: int, target_load: float) -> list[SimJob]:
    """The jobs, in the same order and with the same run times, with arrival gaps scaled so
    that ``offered_load(result, n_gpus) == target_load``. The first submit stays put."""
    factor = rescale_factor(jobs, n_gpus, target_load)
    first = min(job.submit_s for job in jobs)
    return [_at(job, first + (job.submit_s - first) * factor) for job in jobs]


def _positive_gpus(n_gpus: int) -> int:
    if n_gpus < 1:
        raise WorkloadError(f"a machine needs at least one GPU, not {n_gpus}")
    return n_gpus


def _at(job: SimJob, submit_s: float) -> SimJob:
    return dataclasses.replace(job, submit_s=submit_s)


# --- time windows -------------------------------------------------------------------------
def shift_to_zero(jobs: Sequence[SimJob]) -> list[SimJob]:
    """The jobs sorted by submit time (then id), shifted so the first one submits at 0 s."""
    ordered = sorted(jobs, key=lambda job: (job.submit_s, job.id))
    first = ordered[0].submit_s if ordered else 0.0
    return [_at(job, job.submit_s - first) for job in ordered]


def select_days(jobs: Sequence[SimJob], start_day: float, end_day: float) -> list[SimJob]:
    """Jobs submitted in ``[start_day, end_day)`` days after the first job, shifted to 0."""
    if not jobs:
        return []
    first = min(job.submit_s for job in jobs)
    low, high = first + start_day * DAY_S, first + end_day * DAY_S
    return shift_to_zero([job for job in jobs if low <= job.submit_s < high])


def last_days(jobs: Sequence[SimJob], days: float) -> list[SimJob]:
    """Jobs submitted in the final ``days`` days, up to and including the last submit."""
    return split_by_time(jobs, test_days=days)[1]


def split_by_time(
    jobs: Sequence[SimJob], test_days: float = 7.0
) -> tuple[list[SimJob], list[SimJob]]:
    """``(train, test)``: test is the final ``test_days`` days, train everything before.

    Disjoint, and every train job submits before every test job. Each is shifted to 0.
    """
    cut = max((job.submit_s for job in jobs), default=0.0) - test_days * DAY_S
    train = [job for job in jobs if job.submit_s < cut]
    test = [job for job in jobs if job.submit_s >= cut]
    return shift_to_zero(train), shift_to_zero(test)


def select_window(
    workload: Workload,
    *,
    window_days: tuple[float, float] | None = None,
    last: float | None = None,
) -> Workload:
    """The workload cut to ``window_days`` (from its first job) or its ``last`` days."""
    if window_days is not None and last is not None:
        raise WorkloadError("give a window in days or the last days, not both")
    if window_days is not None:
        start, end = window_days
        jobs, label = select_days(workload.jobs, start, end), f"days {start:g}-{end:g}"
    elif last is not None:
        jobs, label = last_days(workload.jobs, last), f"last {last:g} days"
    else:
        return workload
    return dataclasses.replace(
        workload,
        jobs=jobs,
        description=f"{workload.description}; {label}: {len(jobs)} jobs",
        history=runs_before(workload.jobs, {job.id for job in jobs}),
    )


def runs_before(jobs: Sequence[SimJob], window_ids: set[int]) -> tuple[tuple[str, float], ...]:
    """``(command, run_s)`` of the jobs outside the window that ended before its first
    submit, in the order they ended: what a daemon running the window already knows."""
    window = [job for job in jobs if job.id in window_ids]
    if not window:
        return ()
    opened = min(job.submit_s for job in window)
    ended = [j for j in jobs if j.id not in window_ids and j.submit_s + j.run_s <= opened]
    ended.sort(key=lambda job: (job.submit_s + job.run_s, job.id))
    return tuple((job.submitted_command, job.run_s) for job in ended)


# --- synthetic ----------------------------------------------------------------------------
def draw_ramp_s(rng: random.Random) -> float:
    """Seconds until a job's memory is allocated: lognormal, median 20 s, in [2, 55] s."""
    return _clamp(rng.lognormvariate(math.log(RAMP_MEDIAN_S), RAMP_SIGMA), *RAMP_BOUNDS_S)


def synthetic(
    n_jobs: int,
    n_gpus: int,
    load: float,
    seed: int,
    *,
    gpu_mem_bytes: int = DEFAULT_GPU_MEM_BYTES,
    users: int = 4,
    philly_path: str | Path | None = None,
    mem_overrun_fraction: float = 0.0,
    whole_gpu_mem_fraction: float = WHOLE_GPU_MEM_FRACTION,
) -> Workload:
    """A seeded workload whose ``offered_load`` on ``n_gpus`` is exactly ``load``.

    - arrivals: Poisson (exponential gaps), then scaled with ``rescale_to_load``;
    - run times: lognormal, median 1200 s, sigma 1.86 (p90 ~12,900 s), clamped to
      [1 s, 1 day]; or, given ``philly_path``, drawn from the Philly run times in (0, 1 day];
    - GPUs: 1: 85%, 2: 8%, 4: 5%, 8: 2% (counts above ``n_gpus`` left out, rest renormalised);
    - one-GPU jobs: 40% declare nothing (whole GPU); the rest declare a memory share of
      0.25 (40%), 0.5 (40%) or 0.75 (20%) of ``gpu_mem_bytes`` and a util share of that share
      plus N(0, 0.1), clamped to [0.05, 1], and really use what they declare;
    - whole-GPU jobs (and all multi-GPU jobs) use 100% util and ``whole_gpu_mem_fraction``;
    - ``mem_overrun_fraction`` of the declaring jobs really use 1.25-2x their declared
      memory (uniform, at most the GPU), for OOM experiments;
    - priority 0 (low): 30%, 1 (normal): 50%, 2 (high): 20%;
    - users ``user0``.. submit at rates proportional to 1, 1/2, 1/3, ... (Zipf);
    - ramp-up: lognormal, median 20 s, clamped to [2, 55] s.

    Each attribute has its own random stream, so changing one distribution (say, Philly run
    times) leaves the others' draws as they were.
    """
    if n_jobs < 2 or users < 1:
        raise WorkloadError(f"need at least 2 jobs and 1 user, not {n_jobs} and {users}")
    rng = functools.partial(_stream, seed)
    use_rng, ramp_rng, overrun_rng = rng("use"), rng("ramp"), rng("overrun")
    columns = zip(
        _poisson_submits(rng("arrival"), n_jobs),
        _draw_runs(rng("run"), n_jobs, philly_path),
        _weighted(rng("gpus"), _fitting(SYN_GPU_COUNTS, n_gpus), n_jobs),
        _weighted(rng("priority"), SYN_PRIORITIES, n_jobs),
        _weighted(rng("user"), {f"user{k}": 1 / (k + 1) for k in range(users)}, n_jobs),
        strict=True,
    )
    jobs = []
    for i, (submit_s, run_s, gpus, priority, user) in enumerate(columns):
        use = _synthetic_use(use_rng, gpus, gpu_mem_bytes, whole_gpu_mem_fraction)
        ramp_s = draw_ramp_s(ramp_rng)
        job = SimJob(i, submit_s, run_s, gpus, *use, priority, user, ramp_s, f"syn-{i}")
        jobs.append(_overrun(job, overrun_rng, mem_overrun_fraction, gpu_mem_bytes))
    source = f"Philly run times ({Path(philly_path).name})" if philly_path else "lognormal"
    return Workload(
        name=f"synthetic-{seed}",
        jobs=rescale_to_load(jobs, n_gpus, load),
        description=f"synthetic: {n_jobs} jobs, load {load:g} on {n_gpus} GPUs, seed {seed}, "
        f"{users} users, run times {source}, mem overrun fraction {mem_overrun_fraction:g}",
        priority_names=dict(SYN_PRIORITY_NAMES),
    )


def read_runtimes(path: str | Path) -> list[float]:
    """Run times in seconds from a one-column CSV with a header (the Philly file's shape)."""
    header, rows = read_csv_rows(path)
    if len(header) != 1:
        raise WorkloadError(f"{path}:1: expected one column of run times, got {header}")
    return [parse_cell(path, line, header[0], row[header[0]], parse_seconds) for line, row in rows]


def _stream(seed: int, name: str) -> random.Random:
    return random.Random(f"{seed}:{name}")  # str seeds hash with SHA-512: stable across runs


def _weighted(rng: random.Random, weights: dict[_T, float], k: int) -> list[_T]:
    return rng.choices(list(weights), weights=list(weights.values()), k=k)


def _fitting(counts: dict[int, float], n_gpus: int) -> dict[int, float]:
    return {gpus: weight for gpus, weight in counts.items() if gpus <= n_gpus}


def _poisson_submits(rng: random.Random, n_jobs: int) -> list[float]:
    gaps = [0.0] + [rng.expovariate(1.0) for _ in range(n_jobs - 1)]
    return list(itertools.accumulate(gaps))


def _draw_runs(rng: random.Random, n_jobs: int, philly_path: str | Path | None) -> list[float]:
    if philly_path is None:
        median = math.log(SYN_RUN_MEDIAN_S)
        draws = (rng.lognormvariate(median, SYN_RUN_SIGMA) for _ in range(n_jobs))
        return [_clamp(run_s, *SYN_RUN_BOUNDS_S) for run_s in draws]
    # dropped, not clamped, past a day: the same rule as the Alibaba loader's
    pool = [run_s for run_s in read_runtimes(philly_path) if 0 < run_s <= DAY_S]
    if not pool:
        raise WorkloadError(f"{philly_path}: no run times in (0, 1 day]")
    return [rng.choice(pool) for _ in range(n_jobs)]


def _synthetic_use(
    rng: random.Random, gpus: int, gpu_mem_bytes: int, whole_fraction: float
) -> tuple[int, float, int | None, float]:
    """``(mem_bytes, util_pct, declared_mem_bytes, declared_util_pct)`` of one job."""
    if gpus > 1 or rng.random() < SYN_WHOLE_GPU_WEIGHT:
        return round(gpu_mem_bytes * whole_fraction), 100.0, None, 0.0
    share = _weighted(rng, SYN_SHARES, 1)[0]
    util_pct = round(100 * _clamp(share + rng.gauss(0.0, SYN_UTIL_NOISE), 0.05, 1.0), 1)
    mem_bytes = round(share * gpu_mem_bytes)
    return mem_bytes, util_pct, mem_bytes, util_pct


def _overrun(job: SimJob, rng: random.Random, fraction: float, gpu_mem_bytes: int) -> SimJob:
    """``job`` using 1.25-2x its declared memory, for ``fraction`` of the declaring jobs."""
    # both numbers drawn for every job, so one job's kind never shifts another's draws
    hit, factor = rng.random() < fraction, rng.uniform(*SYN_OVERRUN_FACTOR)
    if not hit or job.declared_mem_bytes is None:  # declaring nothing, it cannot overrun it
        return job
    return dataclasses.replace(
        job, mem_bytes=min(gpu_mem_bytes, round(job.declared_mem_bytes * factor))
    )


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))
