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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gpugate.offload.builtin import CALIBRATION, DTYPES, Sweep
from gpugate.offload.runtime import Runtime

Progress = Callable[[int, int, str], None]  # done, total, what is running


@dataclass(frozen=True)
class Phase:
    """One machine condition: a name, and a context manager that makes it."""

    name: str
    condition: Callable[[], contextlib.AbstractContextManager[None]]


def phases(cpu_loads: Sequence[int], gpu_duty: float | None) -> list[Phase]:
    from gpugate.offload.loadgen import cpu_load, gpu_load

    made = [Phase("idle", contextlib.nullcontext)]
    for n in cpu_loads:
        if n > 0:
            made.append(Phase(f"{n} busy CPU processes", functools.partial(cpu_load, n)))
    if gpu_duty:
        made.append(Phase(f"GPU {gpu_duty:.0%} busy", functools.partial(gpu_load, gpu_duty)))
    return made


@dataclass
class CalibrationResult:
    runs: int = 0
    by_variant: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def plan(
    sweeps: Sequence[Sweep], quick: bool, dtypes: Sequence[str], seed: int
) -> list[tuple[Sweep, int, str]]:
    """Every (task, size, dtype) once, shuffled so that a trend in the machine does not
    line up with size."""
    items = [
        (s, size, dt)
        for s in sweeps
        for size in (s.quick_sizes if quick else s.sizes)
        for dt in dtypes
    ]
    random.Random(seed).shuffle(items)
    return items


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
    the runtime learns from every run (the first run of a variant is its warm-up)."""
    import time

    sweeps = list(CALIBRATION.values()) if sweeps is None else list(sweeps)
    conditions = conditions or phases([os.cpu_count() or 1], None)
    items = plan(sweeps, quick, dtypes, seed)
    per_item = [len(_options(runtime, s, size, dt)) * repeats for s, size, dt in items]
    total = sum(per_item) * len(conditions)
    result = CalibrationResult()
    started = time.perf_counter()
    for phase in conditions:
        with phase.condition():
            for sweep, size, dtype in items:
                for variant, device in _options(runtime, sweep, size, dtype):
                    args = sweep.inputs(size, DTYPES[dtype])
                    # A first run at a size is often several times slower (fresh pages,
                    # cold caches, a thread pool waking): measured but not learned.
                    runtime.run_variant(sweep.task, variant, args, {}, device=device, learn=False)
                    for _ in range(repeats):
                        if progress:
                            what = f"{phase.name}: {sweep.describe(size)} {dtype} {variant}"
                            progress(result.runs, total, what)
                        runtime.run_variant(sweep.task, variant, args, {}, device=device)
                        result.runs += 1
                        result.by_variant[variant] = result.by_variant.get(variant, 0) + 1
    result.seconds = time.perf_counter() - started
    runtime.save()
    return result


def _options(runtime: Runtime, sweep: Sweep, size: int, dtype: str) -> list[tuple[str, str]]:
    devices = [g.name for g in runtime.gpus.values()]
    pairs = []
    for variant in sweep.task.variants:
        for device in devices if variant.on_gpu else ["cpu"]:
            pairs.append((variant.name, device))
    return pairs
