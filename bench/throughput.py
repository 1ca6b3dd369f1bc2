#!/usr/bin/env python3
"""Throughput: N trivial jobs (``true``, default 1,000) from submission until all have ended.

gpugate (a fresh daemon per row, defaults otherwise):

* CPU-only jobs, ``[scheduler] max_cpu_jobs = K`` in config.toml, submitted in ONE batch
  with ``gpugate submit --gpus 0 --file jobs.txt``;
* GPU jobs on simulated GPUs: ``--exclusive`` on ``sim:KxGiB`` (at most K at once, the
  same parallelism as the CPU rows) and ``--mem 1MiB`` on ``sim:2x24GiB`` (no practical
  limit: every job fits at once).

tsp, a private server with ``tsp -S K``:

* end to end: N ``tsp true`` calls (tsp has no batch submit), then wait for all;
* drain: the jobs are queued behind a gate job that holds all K slots (``tsp -N K``);
  the clock starts when the gate opens. This isolates the execution pipeline. Capped at
  900 jobs: a tsp server refuses more than ~990 waiting jobs ("Error, queue full"), as each
  one is a client process holding a connection to it.

For gpugate the "run" column (from the submit call's return to the last end) is the drain
figure: the daemon answers the submit request before its next scheduling pass starts them.
Completion is detected by waiting on the last job, then polling the daemon (gpugate: the
per-state counts of ``GET /v1/jobs``; tsp: ``tsp -l``) every 10 ms until nothing is active.

Usage: bench/throughput.py [-n 1000] [--ks 1,2]
"""

from __future__ import annotations

import argparse
import re
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

TSP_MAX_WAITING = 900


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def run_gpugate(label: str, n: int, gpus: str, config: str, flags: list[str]) -> dict[str, Any]:
    progress(f"{label}: starting a daemon ({gpus})")
    daemon = BenchDaemon(gpus, config=config, name="tput").start()
    jobs_file = daemon.workdir / "jobs.txt"
    jobs_file.write_text("true\n" * n)
    proc = daemon.ps()
    cpu0 = cpu_seconds(proc)
    progress(f"{label}: submitting {n} jobs in one batch and waiting for all")
    t0 = time.perf_counter()
    out = daemon.cli("submit", *flags, "--file", str(jobs_file))
    t_submitted = time.perf_counter()
    first, last = map(int, re.search(r"(\d+)-(\d+)", out).groups())  # type: ignore[union-attr]
    daemon.client.wait(last)
    daemon.wait_idle(poll_s=0.01)
    t_end = time.perf_counter()
    cpu = cpu_seconds(proc) - cpu0
    listing = daemon.client.jobs(recent=n)
    ours = [j for j in listing.jobs if first <= j.id <= last]
    succeeded = sum(1 for j in ours if j.state == "succeeded")
    daemon.close()
    total, run = t_end - t0, t_end - t_submitted
    row = {
        "jobs": n,
        "succeeded": succeeded,
        "submit_s": t_submitted - t0,
        "run_s": run,
        "total_s": total,
        "jobs_per_s_total": n / total,
        "jobs_per_s_run": n / run,
        "daemon_cpu_ms_per_job": cpu / n * 1000,
    }
    progress(f"{label}: {n / total:.0f} jobs/s ({succeeded}/{n} succeeded)")
    return row


def run_tsp(label: str, n: int, slots: int, gated: bool) -> dict[str, Any]:
    tsp = BenchTsp(slots=slots)
    go = tsp.workdir / "GO"
    gate_id = None
    if gated:  # holds every slot until GO exists
        gate = f"while [ ! -e {go} ]; do sleep 0.01; done"
        gate_id = tsp.run("-N", str(slots), "sh", "-c", gate).strip()
        while tsp.run("-s", gate_id).strip() != "running":
            time.sleep(0.01)
    server = psutil.Process(tsp.server_pid())
    cpu0 = cpu_seconds(server)
    progress(f"{label}: submitting {n} jobs one `tsp true` at a time")
    t0 = time.perf_counter()
    ids = []
    for _ in range(n):  # -B: fail instead of blocking if the server's queue is full
        ids.append(tsp.run("-B", "true").strip())
    t_submitted = time.perf_counter()
    if gated:
        progress(f"{label}: opening the gate")
        t0 = time.perf_counter()
        go.touch()
    tsp.run("-w", ids[-1], check=False)
    tsp.wait_idle(poll_s=0.01)
    t_end = time.perf_counter()
    cpu = cpu_seconds(server) - cpu0
    listing = tsp.run("-l").splitlines()[1:]
    wanted = set(ids)
    succeeded = sum(
        1
        for line in listing
        if (f := line.split())[0] in wanted and f[1] == "finished" and f[3] == "0"
    )
    tsp.close()
    total = t_end - t0
    row = {
        "jobs": n,
        "succeeded": succeeded,
        "submit_s": None if gated else t_submitted - t0,
        "queued_before_gate_s": t_submitted - t0 if gated else None,
        "run_s": total if gated else None,
        "total_s": None if gated else total,
        "jobs_per_s_total": None if gated else n / total,
        "jobs_per_s_run": n / total if gated else None,
        "daemon_cpu_ms_per_job": cpu / n * 1000,
    }
    progress(f"{label}: {n / total:.0f} jobs/s ({succeeded}/{n} succeeded)")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="jobs per row (default 1000)")
    parser.add_argument("--ks", default="1,2", help="parallelism values (default 1,2)")
    args = parser.parse_args()
    n, ks = args.n, [int(k) for k in args.ks.split(",")]
    info = machine_info()
    header(f"throughput, {n} x `true` per row", info)
    rows: dict[str, dict[str, Any]] = {}

    for k in ks:
        rows[f"gpugate CPU jobs, max_cpu_jobs={k}"] = run_gpugate(
            f"gpugate cpu K={k}",
            n,
            "sim:1x24GiB",
            f"[scheduler]\nmax_cpu_jobs = {k}\n",
            ["--gpus", "0"],
        )
    peer_note = None
    # tsp keeps each queued job as a client process connected to its server, and refuses
    # ("Error, queue full") past ~1000 connections (TS_MAXCONN cannot raise it): so the
    # gated drain, where every job waits at once, is capped below that.
    gated_n = min(n, TSP_MAX_WAITING)
    if have_tsp():
        for k in ks:
            rows[f"tsp -S {k}, end to end"] = run_tsp(f"tsp K={k}", n, k, gated=False)
            rows[f"tsp -S {k}, drain (gated, {gated_n} jobs)"] = run_tsp(
                f"tsp K={k} gated", gated_n, k, gated=True
            )
    else:
        peer_note = skip_peer_message()
        print(peer_note)
    for k in ks:
        rows[f"gpugate GPU jobs, --exclusive on sim:{k}x24GiB"] = run_gpugate(
            f"gpugate gpu exclusive K={k}", n, f"sim:{k}x24GiB", "", ["--exclusive"]
        )
    rows["gpugate GPU jobs, --mem 1MiB on sim:2x24GiB"] = run_gpugate(
        "gpugate gpu 1MiB", n, "sim:2x24GiB", "", ["--mem", "1MiB"]
    )

    print()
    print(
        table(
            [
                "row",
                "ok",
                "submit s",
                "run s",
                "total s",
                "jobs/s total",
                "jobs/s run",
                "server CPU ms/job",
            ],
            [
                (
                    name,
                    r["succeeded"],
                    r["submit_s"],
                    r["run_s"],
                    r["total_s"],
                    r["jobs_per_s_total"],
                    r["jobs_per_s_run"],
                    r["daemon_cpu_ms_per_job"],
                )
                for name, r in rows.items()
            ],
        )
    )
    print(
        "\nnotes: 'total' = from just before the first submit call to the last job's end;\n"
        "  'run' = gpugate: from the submit call's return; tsp gated: from opening the gate;\n"
        "  'server CPU' = CPU time of the gpugate daemon (its own, not the jobs') or of the "
        "tsp server process, per job;\n  gpugate runs `sh -c true` under a POSIX sh shim per job; "
        "tsp execs `true` directly from its forked client;\n"
        f"  tsp's gated drain is capped at {TSP_MAX_WAITING} jobs: its server refuses more than "
        "~990 waiting jobs (one connected client process each)."
    )
    write_json(
        "throughput",
        {
            "benchmark": "throughput",
            "machine": info,
            "n": n,
            "ks": ks,
            "rows": rows,
            "peer_skipped": peer_note,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
