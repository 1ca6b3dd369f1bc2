"""Pick the first GPU monitor that works on this machine."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from gpugate.gpu.amd import AmdMonitor
from gpugate.gpu.apple import PowermetricsMonitor
from gpugate.gpu.base import GpuMonitor, MonitorUnavailable
from gpugate.gpu.nvidia_smi import NvidiaSmiMonitor
from gpugate.gpu.nvml import NvmlMonitor

Candidate = tuple[str, Callable[[], GpuMonitor]]


def default_candidates(platform: str = sys.platform) -> list[Candidate]:
    """NVML first (cheapest, per-process utilization), then nvidia-smi, AMD sysfs/amdsmi, and
    powermetrics on macOS only (it needs root and takes a second per sample)."""
    candidates: list[Candidate] = [
        ("nvml", NvmlMonitor),
        ("nvidia-smi", NvidiaSmiMonitor),
        ("amd", AmdMonitor),
    ]
    if platform == "darwin":
        candidates.append(("powermetrics", PowermetricsMonitor))
    return candidates


def detect_monitor(candidates: Sequence[Candidate] | None = None) -> GpuMonitor:
    """The first candidate whose constructor succeeds.

    Raises MonitorUnavailable naming every backend tried and why each one failed.
    """
    failures: list[str] = []
    for name, start in default_candidates() if candidates is None else candidates:
        try:
            return start()
        except MonitorUnavailable as err:
            failures.append(f"{name}: {err}")
    raise MonitorUnavailable("no GPU monitor works here; tried " + "; ".join(failures))


def open_backend(name: str) -> GpuMonitor:
    """One named backend (``nvml``, ``nvidia-smi``, ``amd``, ``apple``), or a clear error."""
    aliases = {"apple": "powermetrics"}
    wanted = aliases.get(name, name)
    for candidate, start in default_candidates(platform="darwin"):
        if candidate == wanted:
            return start()
    raise MonitorUnavailable(
        f"unknown GPU backend {name!r} (auto, sim:NxSIZE, nvml, nvidia-smi, amd, apple)"
    )
