#!/usr/bin/env python3
"""Cold-process latency of the CLI: a fresh ``gpugate`` process per call, as a user types it.

Measures, N times each (after 3 discarded warm-up runs), the wall time from fork to exit of:

* ``python -c pass`` with the venv's interpreter: the floor any Python CLI pays;
* ``gpugate submit --gpus 0 -- true`` (CPU-only job) and ``gpugate submit -- true``
  (default request: one whole simulated GPU);
* ``gpugate ls`` and ``gpugate ls --json`` (the daemon then holds 2N finished jobs; ls shows
  the active ones plus the 50 most recent);
* the peer, task-spooler: ``tsp true`` and ``tsp -l`` on a private server (same N).

Also prints the slowest imports of one ``gpugate submit`` (``python -X importtime``).

Usage: bench/cli_latency.py [-n 100]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    GPUGATE,
    VENV_PY,
    BenchDaemon,
    BenchTsp,
    Progress,
    have_tsp,
    header,
    machine_info,
    skip_peer_message,
    summary_ms,
    table,
    write_json,
)

WARMUP = 3


def time_command(
    label: str,
    argv: list[str],
    n: int,
    env: dict[str, str],
    cwd: Path,
    settle: Callable[[], object] = lambda: None,
) -> list[float]:
    """Run ``argv`` WARMUP + n times; ``settle`` (untimed) runs after each, e.g. to let the
    job just submitted finish so that it does not compete with the next sample for CPU."""
    samples: list[float] = []
    bar = Progress(label, n, every=max(1, n // 4))
    for i in range(WARMUP + n):
        started = time.perf_counter()
        result = subprocess.run(
            argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        took = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()}")
        settle()
        if i >= WARMUP:
            samples.append(took)
            bar.step(len(samples))
    return samples


def slowest_imports(env: dict[str, str], cwd: Path, top: int = 8) -> list[tuple[str, float]]:
    """Cumulative import time (ms) of the top-level modules of one ``gpugate submit``."""
    result = subprocess.run(
        [str(VENV_PY), "-X", "importtime", str(GPUGATE), "submit", "--gpus", "0", "--", "true"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    rows = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(3)) <= 1:  # top-level imports only
            rows.append((match.group(4), int(match.group(2)) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=100, help="runs per command (default 100)")
    args = parser.parse_args()
    n = args.n
    info = machine_info()
    header(f"CLI cold-process latency, N={n} per command", info)

    results: dict[str, object] = {"benchmark": "cli_latency", "machine": info, "n": n, "rows": {}}
    rows: dict[str, dict[str, float]] = {}

    daemon = BenchDaemon("sim:2x24GiB", name="cli").start()
    env, cwd = daemon.env, daemon.workdir
    gg = str(GPUGATE)
    cases = [
        ("python -c pass (floor)", [str(VENV_PY), "-c", "pass"]),
        ("gpugate submit --gpus 0 -- true", [gg, "submit", "--gpus", "0", "--", "true"]),
        ("gpugate submit -- true (1 sim GPU)", [gg, "submit", "--", "true"]),
    ]
    for label, argv in cases:
        rows[label] = summary_ms(time_command(label, argv, n, env, cwd, daemon.wait_idle))
    daemon.wait_idle()
    for label, argv in [("gpugate ls", [gg, "ls"]), ("gpugate ls --json", [gg, "ls", "--json"])]:
        rows[label] = summary_ms(time_command(label, argv, n, env, cwd))
    imports = slowest_imports(env, cwd)
    daemon.close()

    if have_tsp():
        tsp = BenchTsp()
        settle = lambda: tsp.run("-w", check=False)  # noqa: E731  (waits for the last job)
        rows["tsp true"] = summary_ms(
            time_command("tsp true", ["tsp", "true"], n, tsp.env, tsp.workdir, settle)
        )
        rows["tsp -l"] = summary_ms(time_command("tsp -l", ["tsp", "-l"], n, tsp.env, tsp.workdir))
        tsp.wait_idle()
        tsp.close()
    else:
        print(skip_peer_message())
        results["peer_skipped"] = skip_peer_message()

    print()
    print(
        table(
            ["command", "median ms", "p99 ms", "min ms", "max ms"],
            [(k, v["median_ms"], v["p99_ms"], v["min_ms"], v["max_ms"]) for k, v in rows.items()],
        )
    )
    print("\nslowest top-level imports of one `gpugate submit` (cumulative ms, -X importtime):")
    print(table(["module", "ms"], imports))
    print(
        "\nnotes: wall time from spawning the process to its exit, measured by the parent; "
        f"{WARMUP} warm-up runs discarded;\n  after each submit the job is left to finish "
        "(untimed) so it does not compete with the next sample;\n"
        f"  ls ran with {2 * n + 2 * WARMUP} finished jobs "
        "in the daemon (it shows the 50 most recent); sim GPUs sim:2x24GiB; "
        f"{os.cpu_count()} cores."
    )
    results["rows"] = rows
    results["slowest_imports_ms"] = imports
    write_json("cli_latency", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
