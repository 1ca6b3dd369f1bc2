#!/usr/bin/env python3
"""Suspend and resume latency of a running job's process tree, through the daemon.

A CPU-only job starts ``N`` sleeping children (N = 1 and 16; its tree is the shim, its
shell and the N children). Each round: ``Client.suspend(id)``, then poll /proc until every
process of the job's session is stopped (state T); then ``Client.resume(id)`` and poll
until none is. Timed from just before the API call. For reference, the floor: the same
tree stopped and continued with ``os.killpg`` directly, no daemon. No peer to compare:
task-spooler has no suspend (pueue's ``pause`` is the closest, and is not packaged here).

Usage: bench/suspend_latency.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BenchDaemon,
    Progress,
    header,
    machine_info,
    summary_ms,
    table,
    write_json,
)

TREE_SIZES = (1, 16)


def session_pids(leader: int) -> list[int]:
    """Every process whose session is the job's shim (read straight from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == leader:
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def state_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return "gone"


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")


def all_stopped(pids: list[int]) -> bool:
    return all(state_of(pid) in ("T", "gone") for pid in pids)


def none_stopped(pids: list[int]) -> bool:
    return all(state_of(pid) != "T" for pid in pids)


def measure(
    suspend: Callable[[], object], resume: Callable[[], object], pids: list[int], rounds: int
) -> tuple[list[float], list[float]]:
    stops: list[float] = []
    conts: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        suspend()
        wait_until(lambda: all_stopped(pids))
        stops.append(time.perf_counter() - started)
        started = time.perf_counter()
        resume()
        wait_until(lambda: none_stopped(pids))
        conts.append(time.perf_counter() - started)
    return stops, conts


def tree_of(daemon: BenchDaemon, size: int) -> tuple[int, int, list[int]]:
    """Start a job with ``size`` sleeping children: (job id, its shim's pid, its pids)."""
    job = daemon.submit(f"for i in $(seq {size}); do sleep 600 & done; wait", gpus=0)
    wait_until(lambda: daemon.client.show(job).job.pid is not None, 30)
    leader = daemon.client.show(job).job.pid
    assert leader is not None
    wait_until(lambda: len(session_pids(leader)) >= size + 2, 30)
    return job, leader, session_pids(leader)


def measure_tree(
    daemon: BenchDaemon, size: int, rounds: int
) -> dict[str, tuple[list[float], list[float]]]:
    """Suspend/resume times through the daemon and with os.killpg, for one tree."""
    job, leader, pids = tree_of(daemon, size)
    progress = Progress(f"{size} child process(es)", 2)
    via_daemon = measure(
        lambda: daemon.client.suspend(job), lambda: daemon.client.resume(job), pids, rounds
    )
    progress.step(1)
    floor = measure(
        lambda: os.killpg(leader, signal.SIGSTOP),
        lambda: os.killpg(leader, signal.SIGCONT),
        pids,
        rounds,
    )
    progress.step(2)
    daemon.client.cancel(job)
    tree = f"tree of {len(pids)} ({size} children)"
    return {
        f"gpugate suspend/resume (API), {tree}": via_daemon,
        f"os.killpg floor, {tree}": floor,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    info = machine_info()
    header("suspend / resume latency", info)
    daemon = BenchDaemon("sim:1x24GiB", name="suspend").start()
    measured: dict[str, dict[str, dict[str, float]]] = {}
    rows = []
    for size in TREE_SIZES:
        for key, (stops, conts) in measure_tree(daemon, size, args.rounds).items():
            s, c = summary_ms(stops), summary_ms(conts)
            measured[key] = {"suspend_ms": s, "resume_ms": c}
            rows.append(
                [key, f"{s['median_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{c['median_ms']:.2f}",
                 f"{c['p99_ms']:.2f}"]
            )  # fmt: skip
    print(table(["variant", "suspend median ms", "p99", "resume median ms", "p99"], rows))
    write_json("suspend_latency", {"machine": info, "rounds": args.rounds, "rows": measured})
    daemon.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
