"""What every GPU monitor backend provides: a frozen snapshot on demand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from gpugate.model import MachineSnapshot


class MonitorUnavailable(RuntimeError):
    """This backend cannot run here (no driver, no tool, no device). Not a crash."""


class GpuMonitor(Protocol):
    """One door to one kind of hardware. ``snapshot()`` never raises for a metric the
    device does not support: that metric is ``None`` in the snapshot."""

    backend: str

    def snapshot(self) -> MachineSnapshot: ...

    def job_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Variables to add to a job's environment ``base`` ({} for real hardware)."""
        ...

    def close(self) -> None: ...
