#!/usr/bin/env python3
"""Submit-to-start latency when a GPU (or slot) is free.

Each job is ``date +%s.%N > start-I`` (run through ``sh -c`` by both tools). Latency = the
timestamp the job wrote minus ``time.time()`` taken just before the submit call. Jobs run
one after the other: the next is submitted only once the previous has ended and its GPU is
free again (that wait is not timed). Variants, N jobs each:

* gpugate, Python client ``Client.submit_command(...)``, default request (1 whole sim GPU);
* gpugate, CLI ``gpugate submit -- CMD`` (includes the CLI's cold start);
* gpugate, Python client, ``gpus=0`` (CPU-only job);
* tsp, ``tsp sh -c CMD`` (its CLI, a C program);
* for reference, gpugate's per-job shim (``/bin/sh shim.sh EXIT CMD``) spawned
  directly, without a daemon: the floor of gpugate's start path.

The daemon runs with its defaults (monitor_interval_s = 1.0, tick_fallback_s = 5.0) on
``sim:2x24GiB``.

Usage: bench/submit_to_start.py [-n 100]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    GPUGATE,
    BenchDaemon,
    BenchTsp,
    Progress,
    have_tsp,
    header,
    machine_info,
    read_stamp,
    skip_peer_message,
    summary_ms,
    table,
    write_json,
)

WARMUP = 3


Submit = Callable[[str, int], object]  # (shell command, index) -> job handle
Wait = Callable[[object], None]


def measure(
    label: str, n: int, workdir: Path, submit: Submit, wait_done: Wait
) -> tuple[list[float], list[float]]:
    """Returns (submit-to-start, submit-call) seconds for n jobs after WARMUP discarded."""
    latencies: list[float] = []
    calls: list[float] = []
    bar = Progress(label, n, every=max(1, n // 4))
    tag = label.split()[0] + str(abs(hash(label)) % 10000)
    for i in range(WARMUP + n):
        stamp = workdir / f"start-{tag}-{i}"
        command = f"date +%s.%N > {stamp}"
        t0 = time.time()
        handle = submit(command, i)
        t1 = time.time()
        started = read_stamp(stamp)
        wait_done(handle)
        if i >= WARMUP:
            latencies.append(started - t0)
            calls.append(t1 - t0)
            bar.step(len(latencies))
    return latencies, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=100, help="jobs per variant (default 100)")
    args = parser.parse_args()
    n = args.n
    info = machine_info()
    header(f"submit-to-start latency, N={n} sequential jobs per variant", info)
    rows: dict[str, dict[str, object]] = {}

    daemon = BenchDaemon("sim:2x24GiB", name="s2s").start()
    client, env, work = daemon.client, daemon.env, daemon.workdir

    def via_client(gpus: int) -> Submit:
        return lambda cmd, i: client.submit_command(cmd, cwd=str(work), env=env, gpus=gpus).id

    def via_cli(cmd: str, i: int) -> int:
        out = subprocess.run(
            [str(GPUGATE), "submit", "--json", "--", cmd],
            env=env,
            cwd=work,
            capture_output=True,
            check=True,
        ).stdout
        import json

        return int(json.loads(out)[0]["id"])

    def gg_wait(job_id: object) -> None:
        job = client.wait(int(job_id))  # type: ignore[call-overload]
        if job.state != "succeeded":
            raise RuntimeError(f"job {job_id} ended {job.state}: {job.reason}")

    variants = [
        ("gpugate client, 1 sim GPU", via_client(1)),
        ("gpugate CLI, 1 sim GPU", via_cli),
        ("gpugate client, --gpus 0", via_client(0)),
    ]
    for label, submit in variants:
        lat, calls = measure(label, n, work, submit, gg_wait)
        rows[label] = {"latency": summary_ms(lat), "submit_call": summary_ms(calls)}
    daemon.close()

    # the floor of gpugate's start path: its per-job shim spawned directly, no daemon
    from gpugate.runner.local import SHELL, SHIM_PATH

    shim_dir = Path(tempfile.mkdtemp(prefix="bench-shim-"))
    try:

        def via_shim(cmd: str, i: int) -> subprocess.Popen[bytes]:
            argv = [SHELL, str(SHIM_PATH), str(shim_dir / f"exit-{i}"), cmd]
            return subprocess.Popen(argv, cwd=shim_dir, env=env, start_new_session=True)

        def shim_wait(proc: object) -> None:
            proc.wait()  # type: ignore[attr-defined]

        lat, calls = measure("shim alone", n, shim_dir, via_shim, shim_wait)
        rows["floor: gpugate's shim alone, no daemon"] = {
            "latency": summary_ms(lat),
            "submit_call": summary_ms(calls),
        }
    finally:
        shutil.rmtree(shim_dir, ignore_errors=True)

    peer_note = None
    if have_tsp():
        tsp = BenchTsp()

        def tsp_submit(cmd: str, i: int) -> str:
            return tsp.run("sh", "-c", cmd).strip()

        def tsp_wait(job_id: object) -> None:
            tsp.run("-w", str(job_id), check=False)

        lat, calls = measure("tsp sh -c CMD", n, tsp.workdir, tsp_submit, tsp_wait)
        rows["tsp (CLI), 1 slot"] = {"latency": summary_ms(lat), "submit_call": summary_ms(calls)}
        tsp.close()
    else:
        peer_note = skip_peer_message()
        print(peer_note)

    print()
    print(
        table(
            ["variant", "median ms", "p99 ms", "min ms", "max ms", "submit call median ms"],
            [
                (
                    k,
                    v["latency"]["median_ms"],  # type: ignore[index]
                    v["latency"]["p99_ms"],  # type: ignore[index]
                    v["latency"]["min_ms"],  # type: ignore[index]
                    v["latency"]["max_ms"],  # type: ignore[index]
                    v["submit_call"]["median_ms"],  # type: ignore[index]
                )
                for k, v in rows.items()
            ],
        )
    )
    print(
        "\nnotes: latency = job's own `date +%s.%N` minus time.time() just before the submit "
        "call;\n  'submit call' = how long the submit call itself took (returns before the job "
        f"starts, or not); {WARMUP} warm-up jobs discarded;\n  next job submitted only after "
        "the previous one ended (untimed); daemon defaults, sim:2x24GiB."
    )
    write_json(
        "submit_to_start",
        {
            "benchmark": "submit_to_start",
            "machine": info,
            "n": n,
            "rows": rows,
            "peer_skipped": peer_note,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
