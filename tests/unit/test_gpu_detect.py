"""detect_monitor: the first backend that starts wins; otherwise every reason is reported."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from gpugate.gpu.base import GpuMonitor, MonitorUnavailable
from gpugate.gpu.detect import default_candidates, detect_monitor
from gpugate.model import MachineSnapshot


class StubMonitor:
    backend = "stub"

    def snapshot(self) -> MachineSnapshot:
        return MachineSnapshot(self.backend, 0.0, ())

    def job_env(self, base: Mapping[str, str]) -> dict[str, str]:
        return {}

    def close(self) -> None:
        pass


def unavailable(reason: str) -> GpuMonitor:
    raise MonitorUnavailable(reason)


def test_first_backend_that_starts_is_returned_and_later_ones_are_not_tried() -> None:
    tried: list[str] = []
    stub = StubMonitor()

    def start(name: str, monitor: GpuMonitor | None) -> GpuMonitor:
        tried.append(name)
        return monitor if monitor is not None else unavailable(f"{name} is missing")

    found = detect_monitor(
        [
            ("nvml", lambda: start("nvml", None)),
            ("nvidia-smi", lambda: start("nvidia-smi", stub)),
            ("amd", lambda: start("amd", StubMonitor())),
        ]
    )

    assert found is stub
    assert tried == ["nvml", "nvidia-smi"]


def test_when_nothing_works_every_backend_and_reason_is_named() -> None:
    with pytest.raises(MonitorUnavailable) as raised:
        detect_monitor(
            [
                ("nvml", lambda: unavailable("pynvml is not installed")),
                ("amd", lambda: unavailable("no AMD GPU in /sys/class/drm")),
            ]
        )

    message = str(raised.value)
    assert "nvml: pynvml is not installed" in message
    assert "amd: no AMD GPU in /sys/class/drm" in message


def test_powermetrics_is_only_tried_on_macos() -> None:
    linux = [name for name, _ in default_candidates("linux")]
    macos = [name for name, _ in default_candidates("darwin")]

    assert linux == ["nvml", "nvidia-smi", "amd"]
    assert macos == ["nvml", "nvidia-smi", "amd", "powermetrics"]


def test_detect_on_this_machine_finds_a_gpu_or_explains_why_not() -> None:
    try:
        monitor = detect_monitor()
    except MonitorUnavailable as err:
        for name in ("nvml:", "nvidia-smi:", "amd:"):
            assert name in str(err)
    else:
        try:
            assert monitor.snapshot().gpus
        finally:
            monitor.close()
