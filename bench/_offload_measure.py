"""Measuring the offload runtime, for bench/offload.py: the oracle table and its chooser,
one run of the task stream with utilization sampled, and the figures scored from it."""

from __future__ import annotations

import contextlib
import gc
import os
import random
import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import Progress, percentile, psutil

from gpugate.offload.builtin import TASKS
from gpugate.offload.devices import CpuDevice
from gpugate.offload.policy import Measurement, Option
from gpugate.offload.runtime import RunRecord, Runtime
from gpugate.offload.store import ModelStore, machine_description
from gpugate.offload.task import CallFeatures

SAMPLE_S = 0.1  # utilization sampling period
BASELINE = "baseline: CPU parallel loops (numba)"
FIXED = (BASELINE, "cpu:numpy", "always-gpu")  # the fixed policies "never worse than" counts
NOT_RUN = "gpu"  # the mark of a figure that needs a GPU machine

Call = tuple[str, int]  # (kind, size)
Inputs = dict[Call, tuple[Any, ...]]  # the arguments of one call of each (kind, size)


def option_label(variant: str, device: str) -> str:
    return variant if device == "cpu" else f"{variant}@{device}"


def open_runtime(model: Path, policy: Any) -> Runtime:
    """A runtime that starts from the calibrated model and never writes it back."""
    store = ModelStore(model, machine_description(CpuDevice().label), read_only=True)
    return Runtime(store=store, policy=policy, state=None)


# ------------------------------------------------------------------------ the oracle
@dataclass
class Cell:
    """One (kind, size) of the oracle table: measured seconds (compute + transfer) per option."""

    kind: str
    size: int
    work: float = 0.0
    times: dict[str, list[float]] = field(default_factory=dict)

    @property
    def median(self) -> dict[str, float]:
        return {label: statistics.median(t) for label, t in self.times.items()}

    @property
    def best(self) -> str:
        medians = self.median
        return min(medians, key=medians.__getitem__)


def measure_table(runtime: Runtime, inputs: Inputs, repeats: int, seed: int) -> dict[Call, Cell]:
    """Warm up each option once, then ``repeats`` rounds over the options in a rotating
    order, so a drift of the machine does not fall on one variant."""
    cells, order = {}, list(inputs)
    random.Random(seed).shuffle(order)
    counter = Progress("oracle table", len(order))
    runtime.trace = []
    for done, (kind, size) in enumerate(order, 1):
        cell = cells[kind, size] = Cell(kind, size)
        options = runtime.placements(TASKS[kind])
        for variant, device in options:  # warm-up: fresh pages, caches, thread pools
            run_option(runtime, kind, inputs[kind, size], variant, device)
        for r in range(repeats):
            for variant, device in options[r % len(options) :] + options[: r % len(options)]:
                record = run_option(runtime, kind, inputs[kind, size], variant, device)
                cell.work = record.work
                cell.times.setdefault(option_label(variant, device), []).append(
                    record.compute_s + record.transfer_s
                )
        counter.step(done)
    return cells


def run_option(
    runtime: Runtime, kind: str, args: tuple[Any, ...], variant: str, device: str
) -> RunRecord:
    assert runtime.trace is not None
    runtime.run_variant(TASKS[kind], variant, args, {}, device=device, learn=False)
    return runtime.trace[-1]


class OracleChooser:
    """Picks the oracle table's fastest option for the call's (kind, work)."""

    name = "oracle"

    def __init__(self, cells: dict[Call, Cell]) -> None:
        self.best = {(c.kind, c.work): c.best for c in cells.values()}

    def choose(self, call: CallFeatures, options: Sequence[Option]) -> int:
        wanted = self.best[call.kind, call.work]
        for i, option in enumerate(options):
            if option_label(option.variant.name, option.device.name) == wanted:
                return i
        raise LookupError(f"the oracle's {wanted} is not an option for {call.kind}")

    def observe(self, m: Measurement) -> None:
        pass


# ------------------------------------------------------------------------ utilization
class UtilSampler:
    """Every SAMPLE_S: CPU utilization of the whole machine and of this process (both in
    percent of all cores, psutil) and GPU utilization (NVML, if it started; else None)."""

    def __init__(self, gpu_monitor: Any) -> None:
        self.gpu_monitor = gpu_monitor
        self.samples: list[tuple[float, float, float | None, float]] = []
        self._me = psutil.Process()
        self._cores = os.cpu_count() or 1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-util", daemon=True)

    def __enter__(self) -> UtilSampler:
        psutil.cpu_percent(interval=None)  # the first call only starts the interval
        self._me.cpu_percent(interval=None)
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()  # the tail, and the only sample of a stream shorter than SAMPLE_S

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def _sample(self) -> None:
        cpu = psutil.cpu_percent(interval=None)
        mine = self._me.cpu_percent(interval=None) / self._cores
        at = time.perf_counter() - self._started
        self.samples.append((at, cpu, self._gpu_pct(), mine))

    def _gpu_pct(self) -> float | None:
        if self.gpu_monitor is None:
            return None
        with contextlib.suppress(Exception):
            utils = [g.util_pct for g in self.gpu_monitor.snapshot().gpus if g.util_pct is not None]
            return statistics.fmean(utils) if utils else None
        return None


def open_gpu_monitor() -> tuple[Any, str]:
    try:
        from gpugate.gpu.nvml import NvmlMonitor

        return NvmlMonitor(), "nvml"
    except Exception as exc:  # no pynvml, no driver, no GPU: no GPU utilization
        return None, f"no GPU utilization ({type(exc).__name__}: {exc})"


# ------------------------------------------------------------------------ the stream
@dataclass
class StreamRun:
    policy: str
    round: int
    total_s: float
    records: list[RunRecord]
    util: list[tuple[float, float, float | None, float]]  # (s, machine %, GPU %, ours %)
    explored: int | None
    shifts: int | None  # lasting changes the learned models followed in the stream
    cpu_runnable_seen: tuple[float, float]  # the runtime's own view at the start and end


def run_stream(
    runtime: Runtime,
    stream: Sequence[Call],
    inputs: Inputs,
    gpu_monitor: Any,
    *,
    use_submit: bool,
    settle_s: float,
) -> tuple[float, list[RunRecord], UtilSampler, tuple[float, float]]:
    """Run the stream through ``runtime`` (``run`` one call at a time, or ``submit`` all)."""
    time.sleep(settle_s)  # the runtime's CPU sampler is an average over ~0.5 s
    seen_at_start = runtime.state.current.cpu_runnable_others
    runtime.trace = []
    gc.collect()
    with UtilSampler(gpu_monitor) as sampler:
        started = time.perf_counter()
        if use_submit:
            futures = [runtime.submit(TASKS[k], inputs[k, s], {}) for k, s in stream]
            for future in futures:
                future.result()
        else:
            for kind, size in stream:
                runtime.run(TASKS[kind], inputs[kind, size], {})
        total_s = time.perf_counter() - started
    seen = (seen_at_start, runtime.state.current.cpu_runnable_others)
    return total_s, list(runtime.trace), sampler, seen


def score(runs: Sequence[StreamRun], cells: dict[Call, Cell]) -> dict[str, Any]:
    """One policy's figures over all its rounds (total time: the median round's)."""
    by_work = {(c.kind, c.work): c for c in cells.values()}
    records = [r for run in runs for r in run.records]
    strict = within = 0
    chosen_s = best_s = 0.0
    for r in records:
        cell = by_work[r.kind, r.work]
        medians, label = cell.median, option_label(r.variant, r.device)
        best = medians[cell.best]
        strict += label == cell.best
        within += medians[label] <= 1.05 * best
        chosen_s, best_s = chosen_s + medians[label], best_s + best
    decide_us = [r.decide_ns / 1000 for r in records]
    calls = Counter(option_label(r.variant, r.device) for r in records)
    totals = [run.total_s for run in runs]
    return {
        "total_s": statistics.median(totals),
        "total_s_rounds": totals,
        "work_s": statistics.median(
            sum(r.compute_s + r.transfer_s for r in run.records) for run in runs
        ),
        "calls": len(records),
        "accuracy_strict": strict / len(records),
        "accuracy_within_5pct": within / len(records),
        "regret": chosen_s / best_s - 1,
        "decide_p50_us": percentile(decide_us, 50),
        "decide_p99_us": percentile(decide_us, 99),
        "overhead_us": statistics.fmean(
            (r.wall_s - r.compute_s - r.transfer_s) * 1e6 for r in records
        ),
        "calls_per_option": dict(sorted(calls.items())),
        "explored": sum(run.explored or 0 for run in runs)
        if runs[0].explored is not None
        else None,
        "shifts": sum(run.shifts or 0 for run in runs) if runs[0].shifts is not None else None,
        "cpu_runnable_seen": [run.cpu_runnable_seen for run in runs],
    }


def decision_cost(
    model: Path, stream: Sequence[Call], inputs: Inputs, n: int, sweep_bytes: int = 0
) -> dict[str, float]:
    """``decide`` alone, in this process, with the learned policy: n decisions. With
    ``sweep_bytes``, a buffer that large is written between decisions, evicting the CPU
    caches as a kernel's data does (what a decision costs inside a stream)."""
    import numpy as np

    buffer = np.ones(max(sweep_bytes // 8, 1))
    runtime = open_runtime(model, "learned")
    try:
        calls = [(TASKS[k], inputs[k, s]) for k, s in stream]
        for task, args in calls[:200]:  # warm the code paths
            runtime.decide(task, args, {})
        took = []
        for i in range(n):
            task, args = calls[i % len(calls)]
            if sweep_bytes:
                buffer += 1.0
            took.append(runtime.decide(task, args, {}).decide_ns / 1000)
    finally:
        runtime.close()
    return {
        "n": n,
        "sweep_bytes": sweep_bytes,
        "p50_us": percentile(took, 50),
        "p99_us": percentile(took, 99),
        "p999_us": percentile(took, 99.9),
        "max_us": max(took),
    }


def oracle_check(runs: dict[str, list[StreamRun]], cells: dict[Call, Cell]) -> dict[str, int]:
    """How far the oracle table can be trusted: in how many (task, size) its pick is also
    the faster on average in the stream itself, as the policies that always run one
    option measured it (under load, rare very slow runs make the two differ)."""
    seen: dict[tuple[str, float, str], list[float]] = {}
    for policy_runs in runs.values():
        records = [r for run in policy_runs for r in run.records]
        labels = {option_label(r.variant, r.device) for r in records}
        if len(labels) != 1:
            continue  # a policy that chooses: its times are not one option's
        (label,) = labels
        for r in records:
            seen.setdefault((r.kind, r.work, label), []).append(r.compute_s + r.transfer_s)
    agree = compared = 0
    for cell in cells.values():
        means = {
            label: statistics.fmean(seen[cell.kind, cell.work, label])
            for label in cell.times
            if (cell.kind, cell.work, label) in seen
        }
        if len(means) == len(cell.times) > 1:
            compared += 1
            agree += min(means, key=means.__getitem__) == cell.best
    return {"agree": agree, "compared": compared}


def majority_picks(runs: Sequence[StreamRun], cells: dict[Call, Cell]) -> dict[Call, str]:
    to_call = {(c.kind, c.work): (c.kind, c.size) for c in cells.values()}
    votes: dict[Call, Counter[str]] = {}
    for r in (r for run in runs for r in run.records):
        votes.setdefault(to_call[r.kind, r.work], Counter())[option_label(r.variant, r.device)] += 1
    return {call: v.most_common(1)[0][0] for call, v in votes.items()}
