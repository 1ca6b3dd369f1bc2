"""Helpers for the offload tests: tasks with synthetic costs and hand-made options."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from gpugate.offload.costmodel import ModelBook
from gpugate.offload.devices import CpuDevice, SimulatedGpu
from gpugate.offload.policy import Option, compute_key
from gpugate.offload.task import CallFeatures, Variant

CPU = CpuDevice()
GPU = SimulatedGpu(index=0)


def cpu_cost(work: float) -> float:
    """A CPU variant: 2 us to start, a nanosecond per unit of work."""
    return 2e-6 + 1e-9 * work


def gpu_cost(work: float) -> float:
    """A GPU variant: 80 us to launch, 100 times the CPU's throughput."""
    return 80e-6 + 1e-11 * work


def true_crossover() -> float:
    """The work at which the two cost functions above are equal."""
    return (80e-6 - 2e-6) / (1e-9 - 1e-11)


def call(work: float, kind: str = "synthetic") -> CallFeatures:
    """A call whose data lives on the GPU already (no transfers), so that only the
    compute models decide."""
    return CallFeatures(kind, work, "float32", 0, 0, 0, {GPU.name: 1}, GPU.name)


def options(cpu_z: float = 0.0, gpu_z: float = 0.0) -> list[Option]:
    return [
        Option(Variant("cpu", False, lambda: None), CPU, 0.0, cpu_z),
        Option(Variant("gpu", True, lambda: None), GPU, 0.0, gpu_z),
    ]


def teach(
    book: ModelBook,
    variant: str,
    label: str,
    cost: Callable[[float], float],
    n: int,
    seed: int = 1,
    contention: Callable[[random.Random], float] = lambda rng: 0.0,
    slowdown: Callable[[float], float] = lambda z: 1.0,
    noise_sd: float = 0.1,
) -> None:
    """Feed ``n`` measurements at log-uniform work in [1e2, 1e9], with lognormal noise."""
    rng = random.Random(seed)
    key = compute_key("synthetic", variant, "float32", label)
    for _ in range(n):
        work = 10 ** rng.uniform(2, 9)
        z = contention(rng)
        seconds = cost(work) * slowdown(z) * math.exp(rng.gauss(0.0, noise_sd))
        book.observe(key, work, z, seconds)
