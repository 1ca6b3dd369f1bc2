#!/usr/bin/env python3
"""Queue scale: a daemon holding 100,000 queued jobs (default; ``--jobs``).

Setup: one simulated GPU (``sim:1x24GiB``, daemon defaults otherwise). A blocker job
(``sleep``, ``--exclusive``) holds the GPU; then 100k ``true`` jobs asking ``--mem 1GiB``
are submitted through the Python client in batches of 10k, each with the caller's full
environment as ``gpugate submit`` sends it. None can start, so all stay queued.

Measured:

* daemon RSS (psutil) before and after, and submit time per 10k batch;
* one scheduling pass, three ways: as the daemon reports it (``last_pass_s`` of
  ``/v1/health``, read after the pass a one-job submit triggers; None on daemons that
  predate it), and two cross-checks:
  (a) from outside: the daemon's CPU time (psutil) from just before a one-job submit until
      it stops growing, i.e. the submit request plus the scheduling pass it wakes;
  (b) in process: a copy of the daemon's database loaded into an ``Engine`` of the same
      classes (SqliteStore, SimMonitor; a runner that refuses to launch), then
      ``Engine.tick()`` (the daemon's whole pass) and ``schedule()`` alone, timed;
* ``gpugate ls`` (table) and ``gpugate ls --json`` with 100k jobs, cold CLI processes;
  also the client call alone (``Client.jobs()``, no CLI start, no formatting);
* submitting one more job: CLI (cold) and client;
* the daemon's restart time with the queue full (the blocker keeps running, re-adopted);
* the drain rate with the queue full: the blocker is cancelled and the jobs that end over
  10 s are counted (up to 21 x 1 GiB fit the GPU at once; throughput.py gives the same
  figure with a short queue).

Usage: bench/queue_scale.py [--jobs 100000] [--batch 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    GPUGATE,
    BenchDaemon,
    Progress,
    header,
    machine_info,
    progress,
    summary_ms,
    table,
    write_json,
)

from gpugate.api.schemas import JobSubmission

MiB = 2**20


def rss_mib(daemon: BenchDaemon) -> float:
    return float(daemon.ps().memory_info().rss / MiB)


def timed_calls(label: str, repeat: int, call: Any, settle: Any = None) -> list[float]:
    samples = []
    for i in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
        progress(f"{label}: {i + 1}/{repeat}: {samples[-1] * 1000:.0f} ms")
        if settle is not None:
            settle()
    return samples


def in_process_pass(db: Path, gpus: str, repeat: int) -> dict[str, Any]:
    """Load a copy of the daemon's database into an Engine and time its pass."""
    from gpugate.core.schedule import schedule
    from gpugate.daemon.config import load_config
    from gpugate.daemon.engine import Engine
    from gpugate.daemon.paths import StatePaths
    from gpugate.gpu.sim import SimMonitor, parse_sim_spec
    from gpugate.runner.base import LaunchError
    from gpugate.store.sqlite import SqliteStore

    class NoLaunchRunner:
        """Everything already running stays running; nothing new may start."""

        def launch(self, job: Any, env: Any, job_dir: Any) -> Any:
            raise LaunchError("benchmark copy: never launches")

        def signal(self, job: Any, signum: int) -> bool:
            return False

        def exit_record(self, job: Any, job_dir: Any) -> None:
            return None

        def is_alive(self, job: Any) -> bool:
            return True

        def find_orphan(self, job: Any, job_dir: Any) -> None:
            return None

        def collect(self) -> None:
            pass

    with tempfile.TemporaryDirectory(prefix="bench-qs-copy-") as tmp:
        home = Path(tmp)
        copy = home / "gpugate.db"
        src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        src.backup(dst)
        src.close()
        dst.close()
        paths = StatePaths(home)
        paths.ensure()
        started = time.perf_counter()
        store = SqliteStore(copy)
        monitor = SimMonitor(parse_sim_spec(gpus), paths.sim_channel)
        engine = Engine(store, NoLaunchRunner(), monitor, load_config(None), paths)
        engine.observe(monitor.snapshot())
        load_s = time.perf_counter() - started
        active = len(engine.active)
        ticks, schedules, requests = [], [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            engine.tick()
            ticks.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            request = engine._request(time.time())
            requests.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            reply = schedule(request)
            schedules.append(time.perf_counter() - t0)
        starts = len(reply.starts)
        store.close()
        monitor.close()
    return {
        "active_jobs": active,
        "starts_decided": starts,
        "load_s": load_s,
        "tick": summary_ms(ticks),
        "build_request": summary_ms(requests),
        "schedule": summary_ms(schedules),
    }


def wait_quiet(daemon: BenchDaemon, poll_s: float = 0.05) -> float:
    """Poll the daemon's CPU time until it stops growing (its pass is over); return it."""
    last = daemon.cpu_seconds()
    while True:
        time.sleep(poll_s)
        now = daemon.cpu_seconds()
        if now == last:
            return now
        last = now


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="samples of each latency")
    parser.add_argument("--idle-s", type=float, default=10.0, help="idle CPU window (s)")
    parser.add_argument("--drain-s", type=float, default=10.0, help="drain window (s)")
    args = parser.parse_args()
    info = machine_info()
    header(f"queue scale: {args.jobs} queued jobs", info)
    res: dict[str, Any] = {"benchmark": "queue_scale", "machine": info, "jobs": args.jobs}

    gpus = "sim:1x24GiB"
    daemon = BenchDaemon(gpus, name="qs").start()
    client, env, work = daemon.client, daemon.env, str(daemon.workdir)
    blocker = client.submit_command("sleep 3600", cwd=work, env=env, exclusive=True).id
    while client.show(blocker).job.state not in ("starting", "running"):
        time.sleep(0.02)
    res["env_vars_per_job"] = len(env)
    res["env_bytes_per_job"] = sum(len(k) + len(v) + 2 for k, v in env.items())
    res["rss_mib_before"] = rss_mib(daemon)

    # ---- submit 100k in batches
    batch_s = []
    bar = Progress(f"submitting {args.jobs} jobs in batches of {args.batch}", args.jobs, args.batch)
    submitted = 0
    while submitted < args.jobs:
        size = min(args.batch, args.jobs - submitted)
        jobs = [
            JobSubmission(command="true", cwd=work, env=env, mem_bytes=1024 * MiB)
            for _ in range(size)
        ]
        t0 = time.perf_counter()
        client.submit(jobs)
        batch_s.append(time.perf_counter() - t0)
        submitted += size
        bar.step(submitted)
    wait_quiet(daemon)
    counts = daemon.active_counts()
    res["active_counts"] = counts
    res["submit_batch"] = {
        "batch": args.batch,
        "first_s": batch_s[0],
        "last_s": batch_s[-1],
        "median_s": statistics.median(batch_s),
        "total_s": sum(batch_s),
    }
    res["rss_mib_queued"] = rss_mib(daemon)
    progress(f"queued: {counts}; daemon RSS {res['rss_mib_queued']:.0f} MiB")

    # ---- idle CPU with the queue full (monitor every 1 s, fallback pass every 10 s)
    progress(f"idle daemon CPU with the queue full, over {args.idle_s:.0f} s")
    c0, t0 = daemon.cpu_seconds(), time.perf_counter()
    time.sleep(args.idle_s)
    res["idle_cpu_pct_of_core"] = (daemon.cpu_seconds() - c0) / (time.perf_counter() - t0) * 100

    # ---- (a) one pass, from outside: the CPU a one-job submit costs the daemon, pass included
    pass_cpu, pass_wall, submit_client, reported = [], [], [], []
    for i in range(args.repeat):
        c0 = wait_quiet(daemon)
        t0 = time.perf_counter()
        client.submit_command("true", cwd=work, env=env, mem_bytes=1024 * MiB)
        t1 = time.perf_counter()
        c1 = wait_quiet(daemon, poll_s=0.02)
        t2 = time.perf_counter() - 0.02  # the last, unchanged poll
        submit_client.append(t1 - t0)
        pass_cpu.append(c1 - c0)
        pass_wall.append(t2 - t0)
        last_pass = getattr(client.health(), "last_pass_s", None)  # newer daemons report it
        if last_pass is not None:
            reported.append(last_pass)
        progress(
            f"pass from outside {i + 1}/{args.repeat}: submit call {(t1 - t0) * 1000:.0f} ms, "
            f"daemon CPU {(c1 - c0) * 1000:.0f} ms, daemon-reported pass "
            f"{'-' if last_pass is None else f'{last_pass * 1000:.0f} ms'}"
        )
    res["pass_reported"] = summary_ms(reported) if reported else None
    res["pass_from_outside"] = {
        "method": "daemon CPU time (psutil, 10 ms ticks) from before a one-job submit until "
        "the daemon's CPU time stops growing (20 ms polls)",
        "daemon_cpu": summary_ms(pass_cpu),
        "wall_until_quiet": summary_ms(pass_wall),
    }
    res["submit_one_client"] = summary_ms(submit_client)

    def cli_submit() -> None:
        daemon.cli("submit", "--mem", "1GiB", "--", "true")

    res["submit_one_cli"] = summary_ms(
        timed_calls(
            "gpugate submit (CLI, cold)", args.repeat, cli_submit, lambda: wait_quiet(daemon)
        )
    )

    # ---- ls with 100k jobs
    def cli_ls(*flags: str) -> Any:
        def run() -> None:
            subprocess.run(
                [str(GPUGATE), "ls", *flags],
                env=env,
                cwd=work,
                check=True,
                stdout=subprocess.DEVNULL,
            )

        return run

    res["ls_cli_table"] = summary_ms(timed_calls("gpugate ls", args.repeat, cli_ls()))
    res["ls_cli_json"] = summary_ms(timed_calls("gpugate ls --json", args.repeat, cli_ls("--json")))
    res["ls_client"] = summary_ms(timed_calls("Client.jobs()", args.repeat, lambda: client.jobs()))
    res["ls_json_bytes"] = len(
        subprocess.run(
            [str(GPUGATE), "ls", "--json"], env=env, cwd=work, check=True, capture_output=True
        ).stdout
    )
    res["rss_mib_after_ls"] = rss_mib(daemon)

    # ---- restart with the queue full (the blocker keeps running and is re-adopted)
    progress("restarting the daemon with the queue full")
    daemon.stop()
    t0 = time.perf_counter()
    daemon.start()
    res["restart_s"] = time.perf_counter() - t0
    wait_quiet(daemon)
    res["rss_mib_after_restart"] = rss_mib(daemon)
    progress(f"restart took {res['restart_s']:.1f} s")

    # ---- (b) one pass, in process, on a copy of the database
    progress("in-process pass: copying the database and loading it into an Engine")
    try:
        res["pass_in_process"] = in_process_pass(daemon.home / "gpugate.db", gpus, args.repeat)
    except Exception as exc:  # the engine's internals move; say so rather than crash
        res["pass_in_process"] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"in-process pass not measured: {exc}")

    # ---- drain rate with the queue full: cancel the blocker, count jobs ending
    progress(f"drain: cancelling the blocker, counting jobs that end over {args.drain_s:.0f} s")
    client.cancel(blocker)
    while client.show(blocker).job.ended_at is None:
        time.sleep(0.05)
    left0, t0 = sum(daemon.active_counts().values()), time.perf_counter()
    time.sleep(args.drain_s)
    left1, t1 = sum(daemon.active_counts().values()), time.perf_counter()
    res["drain_jobs_per_s"] = (left0 - left1) / (t1 - t0)
    res["drain_last_pass_ms"] = (getattr(client.health(), "last_pass_s", None) or 0) * 1000
    daemon.close()

    q = res
    pip = q["pass_in_process"]
    outside = q["pass_from_outside"]
    rows = [
        ("jobs queued (active)", sum(counts.values()), ""),
        ("daemon RSS before (1 running job)", q["rss_mib_before"], "MiB"),
        ("daemon RSS with the jobs queued", q["rss_mib_queued"], "MiB"),
        ("daemon RSS after the ls runs", q["rss_mib_after_ls"], "MiB"),
        ("daemon RSS after a restart", q["rss_mib_after_restart"], "MiB"),
        (f"submit: first {args.batch} batch (client)", q["submit_batch"]["first_s"], "s"),
        (f"submit: last {args.batch} batch (client)", q["submit_batch"]["last_s"], "s"),
        ("submit: all batches", q["submit_batch"]["total_s"], "s"),
        ("idle daemon CPU, queue full", q["idle_cpu_pct_of_core"], "% core"),
        (
            "pass: daemon-reported (health last_pass_s), median",
            q["pass_reported"]["median_ms"] if q["pass_reported"] else None,
            "ms",
        ),
        ("pass (a): daemon CPU per 1-job submit, median", outside["daemon_cpu"]["median_ms"], "ms"),
        ("pass (a): wall until quiet, median", outside["wall_until_quiet"]["median_ms"], "ms"),
    ]
    if "tick" in pip:
        rows += [
            ("pass (b): Engine.tick() in process, median", pip["tick"]["median_ms"], "ms"),
            ("pass (b): schedule() alone, median", pip["schedule"]["median_ms"], "ms"),
            ("pass (b): building the request, median", pip["build_request"]["median_ms"], "ms"),
            (f"pass (b): loading {pip['active_jobs']} jobs", pip["load_s"] * 1000, "ms"),
        ]
    rows += [
        ("gpugate ls (table, cold CLI), median", q["ls_cli_table"]["median_ms"], "ms"),
        ("gpugate ls --json (cold CLI), median", q["ls_cli_json"]["median_ms"], "ms"),
        ("Client.jobs() in process, median", q["ls_client"]["median_ms"], "ms"),
        ("ls --json output size", q["ls_json_bytes"] / MiB, "MiB"),
        ("submit one more job (client), median", q["submit_one_client"]["median_ms"], "ms"),
        ("submit one more job (CLI, cold), median", q["submit_one_cli"]["median_ms"], "ms"),
        ("daemon restart until it answers", q["restart_s"], "s"),
        ("drain with the queue full (blocker cancelled)", q["drain_jobs_per_s"], "jobs/s"),
    ]
    print()
    print(table(["figure", "value", "unit"], rows))
    print(
        f"\nnotes: {args.repeat} samples per latency; each job carries the caller's environment "
        f"({res['env_vars_per_job']} variables, {res['env_bytes_per_job']} bytes) as the CLI "
        "sends it;\n  pass (a) and (b) cross-check the daemon's own figure;\n"
        "  tsp has no equivalent of this run (no GPU-aware queue, and "
        "each queued tsp job is a waiting client process), so no peer figures here."
    )
    write_json("queue_scale", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
