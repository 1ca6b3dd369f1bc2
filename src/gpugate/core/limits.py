"""Checks at submit time: a job that could never fit, even on idle GPUs, is refused."""

from __future__ import annotations

from collections.abc import Sequence

from gpugate.core.policy import Admission, Policy
from gpugate.core.types import GpuView
from gpugate.model import Expectation
from gpugate.units import format_bytes


def never_fits(
    gpus_wanted: int, expected: Expectation, gpus: Sequence[GpuView], policy: Policy
) -> str | None:
    """Why a job asking for ``gpus_wanted`` GPUs with this expectation can never start."""
    if gpus_wanted == 0:
        return None
    if not gpus:
        return "this machine has no GPU: submit with --gpus 0, or run the daemon on simulated GPUs"
    if gpus_wanted > len(gpus):
        return f"asks for {gpus_wanted} GPUs; this machine has {len(gpus)}"
    if policy.admission is not Admission.HEADROOM:
        return _never_fits_plainly(gpus_wanted, expected, gpus)
    big_enough = [g for g in gpus if _fits_idle(g, expected, policy)]
    if len(big_enough) >= gpus_wanted:
        return None
    largest = max(gpus, key=lambda g: g.mem_total_bytes)
    limits = policy.limits_for(largest.uuid, largest.index)
    cap = largest.mem_total_bytes * limits.mem_headroom_pct / 100
    if expected.util_pct > limits.util_headroom_pct and not expected.whole_gpu:
        line = limits.util_headroom_pct
        return f"expects {expected.util_pct:.0f}% utilization; the headroom is {line:.0f}%"
    return (
        f"needs {format_bytes(expected.mem_bytes)} per GPU on {gpus_wanted} GPU(s); the largest"
        f" allows {format_bytes(int(cap))} ({limits.mem_headroom_pct:.0f}% of"
        f" {format_bytes(largest.mem_total_bytes)})"
    )


def _never_fits_plainly(
    gpus_wanted: int, expected: Expectation, gpus: Sequence[GpuView]
) -> str | None:
    """Rules without headroom (whole GPU, free memory) only need the memory to exist."""
    need = expected.mem_bytes or 0
    if sum(1 for g in gpus if g.mem_total_bytes >= need) >= gpus_wanted:
        return None
    return f"needs {format_bytes(need)} per GPU on {gpus_wanted} GPU(s); no GPU has that much"


def _fits_idle(gpu: GpuView, expected: Expectation, policy: Policy) -> bool:
    if expected.whole_gpu:
        return True
    limits = policy.limits_for(gpu.uuid, gpu.index)
    cap = gpu.mem_total_bytes * limits.mem_headroom_pct / 100
    return (expected.mem_bytes or 0) <= cap and expected.util_pct <= limits.util_headroom_pct
