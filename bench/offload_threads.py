#!/usr/bin/env python3
"""Thread pools of two libraries on the same cores: a mixed stream of NumPy (OpenBLAS)
and Numba (libgomp) kernels, with the libraries' own defaults and with gpugate.offload's.

OpenBLAS and libgomp both keep idle threads spinning after each call, so the next call
of the *other* library starts with a core taken. ``gpugate.offload`` sets
``OMP_WAIT_POLICY=PASSIVE`` and ``OPENBLAS_THREAD_TIMEOUT=4`` (gpugate/offload/threads.py)
unless the user set them. Each configuration runs in its own process (both libraries
read these variables when they load): every kernel alone (median of N runs, back to
back), then a seeded random stream of all of them, reporting each kernel's median time
inside the stream and the stream's total. Timings are reported, never asserted.

Usage: bench/offload_threads.py [--calls 300] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, machine_info, table, write_json

# Run in a child: {name: (alone median s, in-stream median s)} and the stream's total.
CHILD = """
import json, random, statistics, sys, time
import gpugate.offload  # applies gpugate's defaults, unless the variables are set already
from gpugate.offload.kernels import filters, matmul as mm, nbody
calls = int(sys.argv[1])
big, small = mm.matmul_inputs(512), mm.matmul_inputs(64)
image, thumb = filters.image_input(1440, 2560), filters.image_input(120, 213)
bodies = nbody.nbody_inputs(2048)
kernels = {
    "matmul 512 (NumPy)": lambda: mm.matmul_numpy(*big),
    "matmul 64 (NumPy)": lambda: mm.matmul_numpy(*small),
    "sobel 120 (NumPy)": lambda: filters.sobel_numpy(thumb),
    "blur 1440 (Numba)": lambda: filters.gaussian_blur_numba(image),
    "blur 120 (Numba)": lambda: filters.gaussian_blur_numba(thumb),
    "nbody 2048 (Numba)": lambda: nbody.nbody_step_numba(*bodies),
}
def timed(f):
    start = time.perf_counter(); f(); return time.perf_counter() - start
for f in kernels.values():
    f()
alone = {k: statistics.median(timed(f) for _ in range(15)) for k, f in kernels.items()}
rng, names, mixed = random.Random(0), list(kernels), {k: [] for k in kernels}
for _ in range(calls):
    name = rng.choice(names)
    mixed[name].append(timed(kernels[name]))
print(json.dumps({"alone": alone, "mixed": {k: statistics.median(v) for k, v in mixed.items()},
                  "total_s": sum(map(sum, mixed.values()))}))
"""

CONFIGS = {
    # an empty value is ignored by both libraries (their defaults apply) but counts as
    # "set by the user" for gpugate, which then leaves it alone
    "libraries' defaults": {"OMP_WAIT_POLICY": "", "OPENBLAS_THREAD_TIMEOUT": ""},
    "gpugate.offload's defaults": {},
}


def run_config(env_overrides: dict[str, str], calls: int) -> dict[str, Any]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")
    }
    env.update(env_overrides)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(calls)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="calls in the stream (300)")
    parser.add_argument("--quick", action="store_true", help="60 calls: checks that it runs")
    args = parser.parse_args()
    calls = 60 if args.quick else args.calls
    info = machine_info()
    header("Offload: thread pools of NumPy and Numba sharing the cores", info)
    results = {name: run_config(env, calls) for name, env in CONFIGS.items()}
    first, second = results.values()
    rows = [
        [k, 1e3 * first["alone"][k], 1e3 * first["mixed"][k], 1e3 * second["mixed"][k]]
        for k in first["alone"]
    ]
    rows.append(["stream total (s)", float("nan"), first["total_s"], second["total_s"]])
    print(table(["kernel (ms, median)", "alone", "mixed: libraries'", "mixed: gpugate's"], rows))
    print(
        f"\nthe stream of {calls} calls: {first['total_s'] / second['total_s']:.2f}x faster"
        " with gpugate.offload's defaults"
    )
    write_json("offload_threads", {"machine": info, "calls": calls, "results": results})


if __name__ == "__main__":
    main()
