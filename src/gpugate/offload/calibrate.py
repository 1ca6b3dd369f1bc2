"""``gpugate offload calibrate``: measure every variant of the built-in tasks over a
sweep of sizes, on an idle machine and beside busy CPU processes (and a busy GPU where
there is one), and teach the runtime's model from it.

The sizes are deliberately not the benchmark's (bench/offload.py): the model is judged
on sizes it was not calibrated on.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpugate.offload.builtin import CALIBRATION, DTYPES, Sweep
from gpugate.offload.runtime import Runtime

Progress = Callable[[int, int, str], None]  # done, total, what is running


@dataclass(frozen=True)
class Phase:
    """One machine condition: a name, a context manager that makes it, and which
    variants it measures: busy CPUs teach the CPU variants' contention term, a busy GPU
    the GPU variants' (a GPU variant's model has no CPU-load term to put a slowdown
    from busy CPUs in, so it would only learn noise there)."""

    name: str
    condition: Callable[[], contextlib.AbstractContextManager[None]]
    measures: str = "all"  # "all", "cpu" or "gpu"

    def wants(self, run: Run) -> bool:
        return self.measures == "all" or (run.device == "cpu") == (self.measures == "cpu")


def phases(
    cpu_loads: Sequence[int], gpu_duty: float | None, gpus: Sequence[int] = (0,)
) -> list[Phase]:
    """Idle, then each CPU load, then (with ``gpu_duty``) every GPU in ``gpus`` busy."""
    from gpugate.offload.loadgen import cpu_load, gpu_load

    made = [Phase("idle", contextlib.nullcontext)]
    for n in cpu_loads:
        if n > 0:
            made.append(Phase(f"{n} busy CPU processes", functools.partial(cpu_load, n), "cpu"))
    if gpu_duty:
        busy_gpus = functools.partial(gpu_load, gpu_duty, gpus)
        made.append(Phase(f"GPUs {gpu_duty:.0%} busy", busy_gpus, "gpu"))
    return made


@dataclass
class CalibrationResult:
    runs: int = 0
    by_variant: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class Run:
    """One measured run of the calibration: a variant on a device at one size."""

    sweep: Sweep
    size: int
    dtype: str
    variant: str
    device: str

    def describe(self) -> str:
        return f"{self.sweep.describe(self.size)} {self.dtype} {self.variant}"


def plan(
    runtime: Runtime, sweeps: Sequence[Sweep], quick: bool, dtypes: Sequence[str]
) -> list[Run]:
    """Every (task, size, dtype, variant, device) once."""
    return [
        Run(s, size, dt, variant, device)
        for s in sweeps
        for size in (s.quick_sizes if quick else s.sizes)
        for dt in dtypes
        for variant, device in runtime.placements(s.task)
    ]


def calibrate(
    runtime: Runtime,
    sweeps: Sequence[Sweep] | None = None,
    *,
    quick: bool = False,
    repeats: int = 3,
    dtypes: Sequence[str] = ("float32",),
    conditions: Sequence[Phase] | None = None,
    progress: Progress | None = None,
    seed: int = 0,
) -> CalibrationResult:
    """Run each variant on each device ``repeats`` times at each size, in each condition;
    the runtime learns from every run.

    The runs are shuffled, tasks and variants mixed as in a real stream: measured back
    to back, a variant runs with warm caches and awake thread pools, and the model would
    learn times that a mixed program never sees. Each (variant, size) first runs once
    unlearned: a first run is often several times slower (fresh pages, JIT)."""
    sweeps = list(CALIBRATION.values()) if sweeps is None else list(sweeps)
    conditions = conditions or phases([os.cpu_count() or 1], None)
    runs = plan(runtime, sweeps, quick, dtypes)
    total = sum(len([r for r in runs if phase.wants(r)]) for phase in conditions) * repeats
    args: dict[tuple[str, int, str], Any] = {}
    for r in runs:  # each size's inputs once, shared by its variants
        key = (r.sweep.task.kind, r.size, r.dtype)
        if key not in args:
            args[key] = r.sweep.inputs(r.size, DTYPES[r.dtype])
    rng = random.Random(seed)
    result = CalibrationResult()
    started = time.perf_counter()
    for phase in conditions:
        measured = [r for r in runs if phase.wants(r)]
        with phase.condition():
            for run in measured:  # the warm-ups
                _run(runtime, run, args, learn=False)
            for _ in range(repeats):
                for run in rng.sample(measured, len(measured)):
                    if progress:
                        progress(result.runs, total, f"{phase.name}: {run.describe()}")
                    _run(runtime, run, args, learn=True)
                    result.runs += 1
                    result.by_variant[run.variant] = result.by_variant.get(run.variant, 0) + 1
    result.seconds = time.perf_counter() - started
    runtime.save()
    return result


def _run(runtime: Runtime, run: Run, args: dict[tuple[str, int, str], Any], learn: bool) -> None:
    call_args = args[run.sweep.task.kind, run.size, run.dtype]
    runtime.run_variant(run.sweep.task, run.variant, call_args, {}, device=run.device, learn=learn)
