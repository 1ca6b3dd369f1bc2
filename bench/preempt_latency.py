#!/usr/bin/env python3
"""Urgent submit to start, when a checkpointable job holds the GPU and must yield.

One simulated 24 GiB GPU. A training-like job (priority 0, declares and allocates 16 GiB,
submitted with ``--preempt checkpoint``) polls ``gpugate.preempt_requested()`` every 5 ms.
An urgent job (priority 5, 10 GiB: it does not fit beside it) is submitted; the scheduler asks the
training job to checkpoint; it saves (``--save-s``, default 0.2 s, a stand-in for writing
a checkpoint) and exits 75; the urgent job starts. Each round is timed in parts:

* submit -> asked: the daemon's decision and SIGUSR1 (the job notes when it saw it);
* asked -> exited: the job's own save (its grace, not the scheduler's time);
* exited -> urgent started: reaping, requeue and the urgent job's launch.

The daemon runs with its defaults except ``preempt_min_run_s = 0`` (so every round can
preempt at once) on ``sim:1x24GiB``. No peer: task-spooler and pueue have no preemption.

Usage: bench/preempt_latency.py [--rounds 10] [--save-s 0.2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BenchDaemon,
    Progress,
    header,
    machine_info,
    read_stamp,
    table,
    write_json,
)

VICTIM = """
import sys, time, gpugate
gpugate.preemptible()
stamps = sys.argv[1]
while not gpugate.preempt_requested():
    time.sleep(0.005)
open(stamps + ".asked", "w").write(repr(time.time()))
time.sleep(float(sys.argv[2]))  # saving a checkpoint
open(stamps + ".exited", "w").write(repr(time.time()))
gpugate.exit_for_requeue()
"""
GIB = 1024**3


def one_round(daemon: BenchDaemon, index: int, save_s: float) -> dict[str, float]:
    work = daemon.workdir
    script = work / "victim.py"
    stamps = work / f"victim-{index}"
    victim = daemon.submit(
        # allocates its memory like a real job (so it is seen ramped up), then trains
        f"gpugate sim use --mem 16GiB --util 30 && {sys.executable} {script} {stamps} {save_s}",
        mem_bytes=16 * GIB,
        util_pct=30,
        preempt="checkpoint",
    )
    deadline = time.monotonic() + 60
    while daemon.client.show(victim).job.state != "running":
        if time.monotonic() > deadline:
            raise RuntimeError("the victim did not start")
        time.sleep(0.01)
    started_stamp = work / f"urgent-{index}"
    submitted = time.time()
    urgent = daemon.submit(
        f"date +%s.%N > {started_stamp}", mem_bytes=10 * GIB, util_pct=30, priority=5
    )
    asked = read_stamp(Path(f"{stamps}.asked"))
    exited = read_stamp(Path(f"{stamps}.exited"))
    started = read_stamp(started_stamp)
    daemon.client.cancel(victim)  # requeued: do not let it run again between rounds
    daemon.wait_idle()
    del urgent
    return {
        "total_s": started - submitted,
        "submit_to_asked_s": asked - submitted,
        "save_s": exited - asked,
        "exit_to_urgent_start_s": started - exited,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--save-s", type=float, default=0.2)
    args = parser.parse_args()
    info = machine_info()
    header("urgent submit to start through a checkpoint", info)
    config = "[scheduler]\npreempt_min_run_s = 0\n"
    daemon = BenchDaemon("sim:1x24GiB", config=config, name="preempt").start()
    (daemon.workdir / "victim.py").write_text(VICTIM)
    progress = Progress("rounds", args.rounds, every=1)
    rounds = []
    for index in range(args.rounds):
        rounds.append(one_round(daemon, index, args.save_s))
        progress.step(index + 1)
    parts = list(rounds[0])
    rows = [
        [
            part.removesuffix("_s"),
            f"{statistics.median(r[part] for r in rounds) * 1000:.0f}",
            f"{min(r[part] for r in rounds) * 1000:.0f}",
            f"{max(r[part] for r in rounds) * 1000:.0f}",
        ]
        for part in parts
    ]
    print(table(["part", "median ms", "min ms", "max ms"], rows))
    write_json("preempt_latency", {"machine": info, "save_s": args.save_s, "rounds": rounds})
    daemon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
