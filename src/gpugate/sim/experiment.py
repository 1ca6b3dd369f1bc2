"""One comparison: a workload, a machine, several policies, several seeds.

``gpugate sim`` and ``gpugate sim report`` are thin shells around ``run_experiment``; so is
the Python API::

    from gpugate.sim.experiment import Experiment, run_experiment
    comparison = run_experiment(Experiment(trace="jobs.csv", policies=("fifo", "gpugate")))
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gpugate.core.policy import Policy
from gpugate.model import PreemptMode
from gpugate.sim.alibaba import is_alibaba_trace
from gpugate.sim.csvio import WorkloadError
from gpugate.sim.engine import SimConfig, SimResult, Simulation
from gpugate.sim.interference import FITTED, NONE, InterferenceModel
from gpugate.sim.job import SimJob, Workload
from gpugate.sim.metrics import Metrics, Summary, summarize, summarize_runs
from gpugate.sim.policies import DEFAULT_COMPARISON, ORACLE_POLICIES, policy_named
from gpugate.sim.tracefile import load_trace
from gpugate.sim.workload import (
    DEFAULT_GPU_MEM_BYTES,
    offered_load,
    rescale_to_load,
    synthetic,
    whole_gpu_load,
)

INTERFERENCE: dict[str, InterferenceModel] = {"fitted": FITTED, "none": NONE}
RunProgress = Callable[[str, int, int, int], None]  # (policy, seed, jobs ended, jobs)


class LoadBasis(StrEnum):
    OFFERED = "offered"  # GPU shares the jobs declare (a 0.5-GPU job offers half a GPU)
    WHOLE_GPU = "whole-gpu"  # every job counted as whole GPUs (what a FIFO queue sees)


@dataclass(frozen=True, slots=True)
class Experiment:
    """Everything that defines a comparison; the report prints it so it can be rerun."""

    trace: str | None = None  # a gpugate or Alibaba CSV; None: a synthetic workload
    synthetic_jobs: int = 2000
    n_gpus: int = 8
    gpu_mem_bytes: int = DEFAULT_GPU_MEM_BYTES
    load: float | None = 0.9  # None: arrival times as recorded
    load_basis: LoadBasis = LoadBasis.OFFERED
    last_days: float | None = None  # trace window: its final days (e.g. 7, a test week)
    window_days: tuple[float, float] | None = None  # or days (start, end) from its first job
    policies: Sequence[str] = DEFAULT_COMPARISON
    seeds: Sequence[int] = (1, 2, 3)
    interference: str = "fitted"
    real_util: float = 1.0  # jobs really use this fraction of the utilization they declare
    max_oom_retries: int = 3
    preempt: str = "never"  # what every job allows: never, checkpoint or requeue
    checkpoint_s: float = 60.0  # a checkpointing job's save (and, again, restore) time

    def describe(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(slots=True)
class Comparison:
    """What ``run_experiment`` found: per policy, its metrics over seeds."""

    experiment: Experiment
    workloads: dict[int, Workload]  # by seed, as simulated (after rescaling)
    summaries: list[Summary]
    first_runs: dict[str, SimResult] = field(default_factory=dict)  # first seed, for charts
    offered_load: float = 0.0
    whole_gpu_load: float = 0.0


def build_workload(exp: Experiment, seed: int) -> Workload:
    """The workload of one seed: a trace (seed draws ramp-up times) or a synthetic one."""
    if exp.trace is None:
        load = exp.load if exp.load is not None else 0.9
        workload = synthetic(
            exp.synthetic_jobs, exp.n_gpus, load, seed, gpu_mem_bytes=exp.gpu_mem_bytes
        )
    else:
        options: dict[str, Any] = {"last_days": exp.last_days, "window_days": exp.window_days}
        if is_alibaba_trace(exp.trace):
            options.update(seed=seed, gpu_mem_bytes=exp.gpu_mem_bytes, max_gpus=exp.n_gpus)
        workload = load_trace(exp.trace, **options)
    if not workload.jobs:
        raise WorkloadError(f"{exp.trace or 'synthetic'}: no job left to simulate")
    jobs = _at_load(list(workload.jobs), exp)
    jobs = [_with_real_util(j, exp.real_util) for j in jobs]
    return dataclasses.replace(workload, jobs=jobs)


def _at_load(jobs: list[SimJob], exp: Experiment) -> list[SimJob]:
    if exp.load is None or (exp.trace is None and exp.load_basis is LoadBasis.OFFERED):
        return jobs
    target = exp.load
    if exp.load_basis is LoadBasis.WHOLE_GPU:
        # same arrival-gap scaling, aimed so that the whole-GPU load is the target
        target = exp.load * offered_load(jobs, exp.n_gpus) / whole_gpu_load(jobs, exp.n_gpus)
    return rescale_to_load(jobs, exp.n_gpus, target)


def _with_real_util(job: SimJob, fraction: float) -> SimJob:
    if fraction == 1.0:
        return job
    return dataclasses.replace(job, util_pct=job.util_pct * fraction)


def run_experiment(exp: Experiment, progress: RunProgress | None = None) -> Comparison:
    if exp.interference not in INTERFERENCE:
        raise ValueError(f"unknown interference model {exp.interference!r}: fitted or none")
    policies = [(name, policy_named(name)) for name in exp.policies]  # fail before any work
    workloads = {seed: build_workload(exp, seed) for seed in exp.seeds}
    config = SimConfig(
        exp.n_gpus,
        exp.gpu_mem_bytes,
        exp.max_oom_retries,
        preempt=PreemptMode(exp.preempt),
        checkpoint_s=exp.checkpoint_s,
    )
    summaries: list[Summary] = []
    first_runs: dict[str, SimResult] = {}
    for name, policy in policies:
        runs: list[Metrics] = []
        for seed, workload in workloads.items():
            result = _run_one(workload, name, policy, config, exp, seed, progress)
            runs.append(summarize(result, policy.limits.util_headroom_pct))
            first_runs.setdefault(name, result)
        summaries.append(summarize_runs(name, runs))
    first = workloads[exp.seeds[0]].jobs
    return Comparison(
        exp,
        workloads,
        summaries,
        first_runs,
        offered_load(first, exp.n_gpus),
        whole_gpu_load(first, exp.n_gpus),
    )


def _run_one(
    workload: Workload,
    name: str,
    policy: Policy,
    config: SimConfig,
    exp: Experiment,
    seed: int,
    progress: RunProgress | None,
) -> SimResult:
    sim = Simulation(
        workload.jobs,
        policy,
        INTERFERENCE[exp.interference],
        config,
        policy_name=name,
        history=workload.history,
        oracle=name in ORACLE_POLICIES,
    )
    started = time.perf_counter()
    report = None if progress is None else (lambda done, total: progress(name, seed, done, total))
    result = sim.run(report)
    result.wall_s = time.perf_counter() - started
    return result
