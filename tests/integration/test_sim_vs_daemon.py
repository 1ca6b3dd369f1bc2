"""The simulator and the daemon share one scheduler core: the same tiny workload, run
through both, starts its jobs in the same order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from gpugate.api.schemas import JobSubmission, JobView
from gpugate.sim.engine import SimConfig, Simulation
from gpugate.sim.interference import NONE
from gpugate.sim.job import SimJob
from gpugate.sim.policies import policy_named
from gpugate.units import GiB
from tests.integration.conftest import RunningDaemon

pytestmark = pytest.mark.integration

GPUS = "sim:1x24GiB"  # admission keeps it under 90%: 21.6 GiB and 90% utilization
RAMP_TIMEOUT_S = 60.0  # longer than the workload: reservations end only when use is seen


def job(id: int, priority: int, mem_gib: int, util_pct: float, run_s: float, name: str) -> SimJob:
    """A job that declares exactly what it uses, and uses it 0.1 s after it starts (the
    daemon's job reports its use at once; its run time does not wait for that)."""
    mem_bytes = mem_gib * GiB
    return SimJob(
        id=id,
        submit_s=0.0,
        run_s=run_s,
        gpus=1,
        mem_bytes=mem_bytes,
        util_pct=util_pct,
        declared_mem_bytes=mem_bytes,
        declared_util_pct=util_pct,
        priority=priority,
        ramp_s=0.1,
        name=name,
    )


# In submission order. Every start after t=0 follows a distinct end, and the ends are
# >= 1 s apart (at 1, 2, 3.5, 5, 6.5 and 7.5 s): the daemon's few hundred ms of launch,
# monitor and utilization-smoothing delay cannot swap them.
WORKLOAD = (
    job(1, priority=0, mem_gib=11, util_pct=45, run_s=1.0, name="fits 3's memory, not its util"),
    job(2, priority=3, mem_gib=8, util_pct=15, run_s=2.0, name="starts at once"),
    job(3, priority=1, mem_gib=10, util_pct=50, run_s=1.5, name="no memory until 5 ends"),
    job(4, priority=5, mem_gib=6, util_pct=20, run_s=3.5, name="first in the queue"),
    job(5, priority=2, mem_gib=14, util_pct=15, run_s=3.0, name="blocked head until 2 ends"),
    job(6, priority=0, mem_gib=2, util_pct=5, run_s=1.0, name="backfills around 5"),
)
# t=0: 4, 2 and 6 (backfill; 40% together, under the 50% share line); 2 ends -> 5;
# 4 ends -> nothing; 5 ends -> 3 (alone: only the 90% headroom applies); 3 ends -> 1
# (its memory fits beside 3, but 50% + 45% is over the share line)
DESIGNED_ORDER = [2, 4, 6, 5, 3, 1]


def simulated_start_order(jobs: tuple[SimJob, ...]) -> list[int]:
    policy = replace(policy_named("gpugate"), ramp_timeout_s=RAMP_TIMEOUT_S)
    config = SimConfig(n_gpus=1, gpu_mem_bytes=24 * GiB)
    result = Simulation(jobs, policy=policy, interference=NONE, config=config).run()
    assert all(r.outcome == "completed" for r in result.records), result.records
    started = sorted(result.records, key=lambda r: (r.start_s, r.job.id))
    return [r.job.id for r in started]


def command(job: SimJob) -> str:
    """Runs ``run_s`` from its start while it reports its use, as a real job would: the
    report's interpreter start-up (slow on a loaded machine) does not lengthen the run."""
    use = f"gpugate sim use --mem {job.mem_bytes} --util {job.util_pct:g}"
    return f"sleep {job.run_s:g} & {use} && wait"


def run_on_daemon(daemon: RunningDaemon, jobs: tuple[SimJob, ...]) -> list[JobView]:
    """Submit all jobs in one request (one scheduler pass sees them all); wait for all."""
    submissions = [
        JobSubmission(
            command=command(j),
            cwd=str(daemon.home),
            priority=j.priority,
            mem_bytes=j.declared_mem_bytes,
            util_pct=j.declared_util_pct,
            name=j.name,
        )
        for j in jobs
    ]
    queued = daemon.client.submit(submissions, env=daemon.env)
    done = [daemon.wait_state(q.id, "succeeded", "failed", timeout_s=30) for q in queued]
    for view in done:
        assert view.state == "succeeded", daemon.client.logs(view.id, "stderr")
    return done


def test_the_simulator_and_the_daemon_start_a_workload_in_the_same_order(
    make_daemon: Callable[..., RunningDaemon],
) -> None:
    simulated = simulated_start_order(WORKLOAD)
    assert simulated == DESIGNED_ORDER, "the workload's timing margins assume this order"
    assert simulated != [j.id for j in WORKLOAD]  # priorities and fit reorder it

    daemon = make_daemon(GPUS, ramp_timeout_s=RAMP_TIMEOUT_S)
    views = run_on_daemon(daemon, WORKLOAD)
    sim_id = {view.id: j.id for view, j in zip(views, WORKLOAD, strict=True)}
    started = sorted(views, key=lambda v: (v.started_at or 0.0, v.id))
    submitted_at = min(v.submitted_at for v in views)
    timeline = [(sim_id[v.id], round((v.started_at or 0.0) - submitted_at, 2)) for v in started]
    assert [sim_id[v.id] for v in started] == simulated, f"daemon (job, start s): {timeline}"
    # the order came from what the jobs were seen using, not from reservations alone
    assert [v.peak_mem_bytes for v in views] == [j.mem_bytes for j in WORKLOAD]
