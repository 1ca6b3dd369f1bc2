"""How long the simulator takes for 10,000 synthetic jobs on 8 GPUs, per policy.

    python bench/sim_speed.py [--jobs 10000] [--load 0.9]

Prints one line per policy: wall time, scheduler passes, passes per second, and the
longest queue seen (the scheduler's cost per pass grows with the queue).
"""

from __future__ import annotations

import argparse
import platform
import time

from gpugate.sim.engine import SimConfig, Simulation
from gpugate.sim.interference import FITTED
from gpugate.sim.policies import ORACLE_POLICIES, policy_named
from gpugate.sim.workload import offered_load, synthetic, whole_gpu_load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--load", type=float, default=0.9)
    parser.add_argument("--policies", default="gpugate,fifo-backfill,memory-only-backfill")
    args = parser.parse_args()
    workload = synthetic(args.jobs, 8, args.load, seed=1)
    print(
        f"# {platform.processor() or platform.machine()}, Python {platform.python_version()};"
        f" {args.jobs} synthetic jobs on 8 GPUs, offered load"
        f" {offered_load(workload.jobs, 8):.2f} (whole-GPU {whole_gpu_load(workload.jobs, 8):.2f})"
    )
    for name in args.policies.split(","):
        oracle = name in ORACLE_POLICIES  # sjf-oracle is told true run times
        sim = Simulation(
            workload.jobs, policy_named(name), FITTED, SimConfig(), name, oracle=oracle
        )
        started = time.perf_counter()
        result = sim.run()
        wall = time.perf_counter() - started
        print(
            f"{name:<22} {wall:6.2f} s  {result.passes:6d} passes"
            f"  {result.passes / wall:7.0f} passes/s  longest queue {max(result.timeline.queued)}"
        )


if __name__ == "__main__":
    main()
