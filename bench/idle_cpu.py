#!/usr/bin/env python3
"""Idle cost: the daemon's CPU use with no jobs, GPU monitoring on (simulated GPUs).

Three servers sit idle side by side over the same window (default 30 s, after a 3 s
settle): a gpugate daemon with the defaults (monitor_interval_s = 1.0, tick_fallback_s =
5.0), one with the fast settings the integration tests use (monitor_interval_s = 0.1,
tick_fallback_s = 0.5), both on ``sim:2x24GiB``, and a tsp server (after one job, so it is
running). Each is sampled with psutil: CPU time (user + system) over the window as a
percentage of one core, wake-ups (voluntary context switches) per second, RSS and threads.

Usage: bench/idle_cpu.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    BenchDaemon,
    BenchTsp,
    have_tsp,
    header,
    machine_info,
    progress,
    psutil,
    skip_peer_message,
    table,
    write_json,
)

FAST = """monitor_interval_s = 0.1
util_window_s = 0.3
tick_fallback_s = 0.5
"""


def sample(proc: psutil.Process) -> tuple[float, int, float]:
    t = proc.cpu_times()
    return t.user + t.system, proc.num_ctx_switches().voluntary, time.perf_counter()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="window (default 30)")
    args = parser.parse_args()
    info = machine_info()
    header(f"idle CPU over {args.seconds:.0f} s", info)

    procs: dict[str, psutil.Process] = {}
    default = BenchDaemon("sim:2x24GiB", name="idle").start()
    procs["gpugate, defaults (monitor 1.0 s, fallback 10 s)"] = default.ps()
    fast = BenchDaemon("sim:2x24GiB", config=FAST, name="idle-fast").start()
    procs["gpugate, monitor 0.1 s, fallback 0.5 s"] = fast.ps()
    peer_note = None
    if have_tsp():
        tsp = BenchTsp()
        tsp.run("true")
        tsp.wait_idle()
        pid = tsp.server_pid()
        if pid is not None:
            procs["tsp server (task-spooler)"] = psutil.Process(pid)
    else:
        peer_note = skip_peer_message()
        print(peer_note)

    time.sleep(3)  # let start-up work settle
    first = {name: sample(p) for name, p in procs.items()}
    step = 5.0
    waited = 0.0
    while waited < args.seconds:
        time.sleep(min(step, args.seconds - waited))
        waited = min(args.seconds, waited + step)
        cpu_now = default.cpu_seconds() - first[next(iter(procs))][0]
        progress(f"{waited:.0f}/{args.seconds:.0f} s: default daemon used {cpu_now * 1000:.0f} ms")
    rows: dict[str, dict[str, Any]] = {}
    for name, proc in procs.items():
        cpu0, ctx0, t0 = first[name]
        cpu1, ctx1, t1 = sample(proc)
        rows[name] = {
            "window_s": t1 - t0,
            "cpu_ms": (cpu1 - cpu0) * 1000,
            "cpu_pct_of_core": (cpu1 - cpu0) / (t1 - t0) * 100,
            "wakeups_per_s": (ctx1 - ctx0) / (t1 - t0),
            "rss_mib": proc.memory_info().rss / 2**20,
            "threads": proc.num_threads(),
        }
    default.close()
    fast.close()
    if peer_note is None:
        tsp.close()

    print()
    print(
        table(
            ["server", "CPU ms", "% of a core", "wake-ups/s", "RSS MiB", "threads"],
            [
                (
                    k,
                    v["cpu_ms"],
                    v["cpu_pct_of_core"],
                    v["wakeups_per_s"],
                    v["rss_mib"],
                    v["threads"],
                )
                for k, v in rows.items()
            ],
        )
    )
    print(
        "\nnotes: CPU = user + system time of the server process itself over the window "
        "(psutil; 10 ms resolution);\n  wake-ups = voluntary context switches of all its threads."
    )
    write_json(
        "idle_cpu",
        {
            "benchmark": "idle_cpu",
            "machine": info,
            "seconds": args.seconds,
            "rows": rows,
            "peer_skipped": peer_note,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
