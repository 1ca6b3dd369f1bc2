"""Small builders for simulator tests: jobs with sizes in GiB and one-call runs.

Defaults are the boring case (a one-GPU job submitted at t=0 that runs 100 s, loads for
10 s and really uses what it declares, on one empty 24 GiB GPU, no interference), so each
test spells out only what its story is about.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpugate.core.policy import Policy
from gpugate.sim.engine import JobRecord, SimConfig, SimResult, Simulation
from gpugate.sim.interference import NONE
from gpugate.sim.job import SimJob
from gpugate.sim.machine import Interference
from gpugate.sim.policies import ORACLE_POLICIES, policy_named
from gpugate.units import GiB

GPU_GIB = 24
WHOLE_GPU_USE_GIB = 20  # what a job that declares nothing really allocates


def sim_job(
    job_id: int,
    submit_s: float = 0.0,
    run_s: float = 100.0,
    *,
    mem_gib: float | None = 8,
    util_pct: float = 0.0,
    uses_gib: float | None = None,
    gpus: int = 1,
    priority: int = 0,
    ramp_s: float = 10.0,
) -> SimJob:
    """A job declaring ``mem_gib`` and ``util_pct`` per GPU (``mem_gib=None``: declares
    nothing) that really allocates ``uses_gib`` (default: what it declares) and uses
    ``util_pct`` (100% when it declares nothing)."""
    if uses_gib is None:
        uses_gib = WHOLE_GPU_USE_GIB if mem_gib is None else mem_gib
    return SimJob(
        id=job_id,
        submit_s=submit_s,
        run_s=run_s,
        gpus=gpus,
        mem_bytes=int(uses_gib * GiB),
        util_pct=100.0 if mem_gib is None else util_pct,
        declared_mem_bytes=None if mem_gib is None else int(mem_gib * GiB),
        declared_util_pct=0.0 if mem_gib is None else util_pct,
        priority=priority,
        ramp_s=ramp_s,
    )


def simulate(
    policy: str | Policy,
    jobs: Sequence[SimJob],
    *,
    n_gpus: int = 1,
    gpu_gib: float = GPU_GIB,
    interference: Interference = NONE,
    max_oom_retries: int = 3,
    history: Sequence[tuple[str, float]] = (),
) -> SimResult:
    """One run over ``jobs`` of ``policy``, or of the policy of that name
    (``gpugate.sim.policies``; the oracle is told true run times)."""
    config = SimConfig(
        n_gpus=n_gpus, gpu_mem_bytes=int(gpu_gib * GiB), max_oom_retries=max_oom_retries
    )
    if isinstance(policy, str):
        oracle = policy in ORACLE_POLICIES
        named = policy_named(policy)
        return Simulation(jobs, named, interference, config, policy, oracle=oracle).run()
    return Simulation(jobs, policy, interference, config, "custom", history=history).run()


def by_id(result: SimResult) -> dict[int, JobRecord]:
    return {record.job.id: record for record in result.records}


def spans(result: SimResult) -> dict[int, tuple[float | None, float | None]]:
    """``job id -> (start_s, end_s)`` of the run that ended each job."""
    return {record.job.id: (record.start_s, record.end_s) for record in result.records}
