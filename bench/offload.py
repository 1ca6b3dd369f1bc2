#!/usr/bin/env python3
"""Offload: each compute task run where it finishes first, against fixed policies and the oracle.

A mixed stream of the built-in tasks (matmul, Gaussian blur, Sobel, an n-body step) at
many sizes, float32, runs once per policy, each on a fresh runtime loaded from the same
freshly calibrated model file (never written back, so every policy starts from the same
knowledge; each learns only during its own run, as in use):

* baseline: CPU parallel loops (numba), the OpenMP-style CPU-only program;
* cpu:numpy; always-gpu (with a GPU);
* threshold: an MKL-automatic-offload-style size threshold fitted on the calibration;
* history: StarPU-style per-size history with power-law regression (``dmda``);
* learned: gpugate's cost model (and, with a GPU, ``learned (async)``: the whole stream
  submitted at once, so CPU and GPU work at the same time);
* oracle: the fastest option for each (task, size), from a table measured beforehand in
  the same scenario (R timed runs per option after a warm-up, variants interleaved).

Scenarios: idle; ``cpu-load`` (one busy process per core, the whole scenario); and, with
a GPU, ``gpu-load`` (a process keeping the GPU about 60% busy). Calibration sizes are
deliberately not the benchmark's, so the model is judged on sizes it has not seen.

Reported per policy: total wall time of the stream; accuracy against the oracle (strict:
the oracle's own option; within 5%: an option whose measured time is within 5% of the
best); regret (time of the chosen options over the best, from the table, minus one);
decision time p50/p99 (from the runtime's trace); overhead per task (wall minus compute
and transfer: dispatch, queue, bookkeeping, learning; the decision not included); the
calls per option. Also the cost of a decision alone (a tight loop of ``decide``).
Writes bench/out/offload.json and three charts (offload-utilization.png,
offload-totals.png, offload-sizes.png). Timings are reported, never asserted.

Without a GPU (no CuPy or no CUDA device) the CPU-variant decisions and the overhead are
measured; every GPU figure is marked ``gpu`` (to be run on a GPU machine).

The measuring lives in bench/_offload_measure.py, the tables, bars, charts and JSON in
bench/_offload_report.py.

Usage: bench/offload.py [--quick] [--repeats 5] [--times 10] [--rounds 5] [--decisions 20000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Progress, header, machine_info, progress, write_json
from _offload_measure import (
    BASELINE,
    NOT_RUN,
    Call,
    Inputs,
    OracleChooser,
    StreamRun,
    decision_cost,
    measure_table,
    open_gpu_monitor,
    open_runtime,
    option_label,
    oracle_check,
    run_stream,
    score,
)
from _offload_report import bars, charts, print_results, print_table, scenario_json

from gpugate.offload.builtin import CALIBRATION, DTYPES, TASKS
from gpugate.offload.calibrate import calibrate, phases
from gpugate.offload.devices import CpuDevice, find_cuda_devices
from gpugate.offload.loadgen import cpu_load, gpu_load
from gpugate.offload.policy import LearnedChooser
from gpugate.offload.runtime import Runtime
from gpugate.offload.store import ModelStore, machine_description

COLD_SWEEP_BYTES = 64 << 20  # written between decisions: caches as cold as after a kernel
# Benchmark sizes (matrix side, image height with width h*16//9, bodies): not calibration's.
SIZES = {
    "matmul": (32, 64, 128, 256, 512, 1024),
    "gaussian_blur": (48, 120, 360, 720, 1440, 2160),
    "sobel": (48, 120, 360, 720, 1440, 2160),
    "nbody": (128, 320, 1024, 2048, 4096),
}
QUICK_SIZES = {kind: sizes[:3] for kind, sizes in SIZES.items()}
GPU_DUTY = 0.6


# ------------------------------------------------------------------------ calibration
def run_calibration(model: Path, quick: bool) -> dict[str, Any]:
    store = ModelStore(model, machine_description(CpuDevice().label))
    runtime = Runtime(store=store, state=None)
    busy_gpus = [g.index for g in runtime.gpus.values()]
    conditions = phases([os.cpu_count() or 1], GPU_DUTY if busy_gpus else None, busy_gpus)
    counter: list[Progress] = []

    def report(done: int, total: int, what: str) -> None:
        if not counter:
            counter.append(Progress("calibration runs", total))
        counter[0].step(done + 1)

    try:
        result = calibrate(runtime, quick=quick, conditions=conditions, progress=report)
    finally:
        runtime.close()
    return {
        "seconds": result.seconds,
        "runs": result.runs,
        "by_variant": result.by_variant,
        "conditions": [p.name for p in conditions],
        "sizes": {k: list(s.quick_sizes if quick else s.sizes) for k, s in CALIBRATION.items()},
        "model_bytes": model.stat().st_size,
    }


# ------------------------------------------------------------------------ a scenario
def policy_plan(has_gpu: bool) -> list[tuple[str, str, bool]]:
    """(label, policy name, submit the whole stream at once)."""
    plan = [(BASELINE, "cpu:numba", False), ("cpu:numpy", "cpu:numpy", False)]
    plan += [("always-gpu", "always-gpu", False)] if has_gpu else []
    plan += [
        ("threshold (MKL-style)", "threshold", False),
        ("history (StarPU-style)", "history", False),
        ("learned", "learned", False),
    ]
    plan += [("learned (async)", "learned", True)] if has_gpu else []
    return [*plan, ("oracle", "oracle", False)]


def model_picks(model: Path, inputs: Inputs) -> dict[Call, str]:
    """What the calibrated model would choose now (``explain``: no exploration draw)."""
    runtime = open_runtime(model, "learned")
    try:
        time.sleep(1.0)  # let the CPU sampler see the scenario's load
        picks = {}
        for (kind, size), args in inputs.items():
            choice = runtime.explain(TASKS[kind], args, {}).choice
            picks[kind, size] = option_label(choice.variant, choice.device)
    finally:
        runtime.close()
    return picks


def run_scenario(
    name: str,
    model: Path,
    inputs: Inputs,
    args: argparse.Namespace,
    gpu_monitor: Any,
) -> dict[str, Any]:
    """The oracle table, then every policy over the same stream, ``args.rounds`` times
    (policies interleaved, each on a fresh runtime), then the ``decide`` loop."""
    probe = open_runtime(model, "always-cpu")
    has_gpu = bool(probe.gpus)
    time.sleep(args.settle_s)
    cells = measure_table(probe, inputs, args.repeats, args.seed)
    probe.close()
    picks = model_picks(model, inputs)
    stream = [call for call in inputs for _ in range(args.times)]
    random.Random(args.seed).shuffle(stream)
    plan = policy_plan(has_gpu)
    runs: dict[str, list[StreamRun]] = {label: [] for label, _, _ in plan}
    counter = Progress(f"{name}: policy streams", len(plan) * args.rounds, every=1)
    for round_ in range(args.rounds):
        for label, policy, use_submit in plan:
            chooser = OracleChooser(cells) if policy == "oracle" else policy
            runtime = open_runtime(model, chooser)
            try:
                total, records, sampler, seen = run_stream(
                    runtime,
                    stream,
                    inputs,
                    gpu_monitor,
                    use_submit=use_submit,
                    settle_s=args.settle_s,
                )
                explored = shifts = None
                if isinstance(runtime.chooser, LearnedChooser):
                    explored = runtime.chooser.explored
                    shifts = sum(m.shifts for m in runtime.book.models.values())
            finally:
                runtime.close()
            runs[label].append(
                StreamRun(label, round_, total, records, sampler.samples, explored, shifts, seen)
            )
            counter.step(sum(len(v) for v in runs.values()))
    results = {label: score(r, cells) for label, r in runs.items()}
    results["oracle"]["decide_p50_us"] = results["oracle"]["decide_p99_us"] = None
    return {
        "cells": cells,
        "picks": picks,
        "stream_calls": len(stream),
        "policies": results,
        "oracle_check": oracle_check(runs, cells),
        "runs": runs,
        "decisions": decision_cost(model, stream, inputs, args.decisions),
        "decisions_cold": decision_cost(
            model, stream, inputs, max(args.decisions // 10, 100), sweep_bytes=COLD_SWEEP_BYTES
        ),
    }


@contextlib.contextmanager
def condition(name: str) -> Iterator[None]:
    """The scenario's competing load, for the whole scenario."""
    if name == "cpu-load":
        with cpu_load(os.cpu_count() or 1):
            yield
    elif name == "gpu-load":
        with gpu_load(GPU_DUTY, [g.index for g in find_cuda_devices()[0]]):
            yield
    else:
        yield


# ------------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer runs (~1 min)")
    parser.add_argument("--repeats", type=int, help="oracle runs per option (default 5; 3 quick)")
    parser.add_argument(
        "--times", type=int, help="each (task, size) in the stream (default 10; 3 quick)"
    )
    parser.add_argument("--rounds", type=int, help="streams per policy (default 5; 1 quick)")
    parser.add_argument("--decisions", type=int, help="decide() loop (default 20000; 5000 quick)")
    parser.add_argument(
        "--settle-s",
        type=float,
        default=1.0,
        help="wait after making a runtime, for its CPU sampler (default 1)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.times = args.times or (3 if args.quick else 10)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.decisions = args.decisions or (5000 if args.quick else 20000)
    info = machine_info()
    header("offload: where each task runs, per call" + (" (quick)" if args.quick else ""), info)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-offload-") as tmp:
        model = Path(tmp) / "model.json"
        results = run_all(model, args, info)
    results["seconds"] = time.perf_counter() - started
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"\ntook {results['seconds']:.0f} s; load average at the end: "
        f"{results['machine']['loadavg_at_end']}"
    )
    write_json("offload", results)
    return 0


def run_all(model: Path, args: argparse.Namespace, info: dict[str, Any]) -> dict[str, Any]:
    progress("calibrating a fresh model file (idle, then beside busy processes)")
    calibration = run_calibration(model, args.quick)
    runtime = open_runtime(model, "learned")
    has_gpu, no_gpu = bool(runtime.gpus), runtime.no_gpu_reason
    gpu_names = [g.label for g in runtime.gpus.values()]
    runtime.close()
    print(
        f"calibration: {calibration['runs']} runs in {calibration['seconds']:.1f} s "
        f"({', '.join(calibration['conditions'])}); model file {calibration['model_bytes']} B"
    )
    print(f"GPU: {', '.join(gpu_names) if has_gpu else f'none ({no_gpu}); GPU figures marked gpu'}")
    gpu_monitor, gpu_util_note = open_gpu_monitor()
    sizes = QUICK_SIZES if args.quick else SIZES
    inputs = {(k, s): CALIBRATION[k].inputs(s, DTYPES["float32"]) for k in sizes for s in sizes[k]}
    names = ["idle", "cpu-load"] + (["gpu-load"] if has_gpu else [])
    if not has_gpu:
        print(f"scenario gpu-load: skipped ({no_gpu})")
    scenarios = {}
    for name in names:
        progress(f"scenario {name}")
        with condition(name):
            scenarios[name] = run_scenario(name, model, inputs, args, gpu_monitor)
        print_table(name, scenarios[name])
        print_results(name, scenarios[name], has_gpu)
    checks = bars(scenarios, has_gpu)
    print("\nbars (learned policy):")
    for c in checks:
        print(f"  [{c['scenario']}] {c['bar']}: {'met' if c['met'] else 'NOT met'}, {c['figure']}")
    if not has_gpu:
        print(f"  [gpu-load] and every GPU option: {NOT_RUN} (not run: {no_gpu})")
    if gpu_monitor is not None:
        gpu_monitor.close()
    paths = charts(scenarios)
    print("charts: " + ", ".join(str(p) for p in paths))
    return {
        "benchmark": "offload",
        "machine": info,
        "args": vars(args),
        "gpu": {"devices": gpu_names, "no_gpu_reason": no_gpu, "utilization": gpu_util_note},
        "sizes": {k: list(v) for k, v in sizes.items()},
        "calibration": calibration,
        "scenarios": {name: scenario_json(s) for name, s in scenarios.items()},
        "bars": checks,
        "not_run": [] if has_gpu else ["gpu-load", "always-gpu", "learned (async)"],
        "charts": [str(p) for p in paths],
    }


if __name__ == "__main__":
    sys.exit(main())
