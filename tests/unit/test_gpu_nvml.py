"""NvmlMonitor against a fake ``pynvml`` that mimics the real API (and one real-GPU test)."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gpugate.gpu.base import MonitorUnavailable
from gpugate.gpu.nvml import NvmlMonitor
from gpugate.units import GiB, MiB

SRC = Path(__file__).resolve().parents[2] / "src" / "gpugate"
NOT_AVAILABLE_ULL = (1 << 64) - 1


class NVMLError(Exception):
    """Like pynvml.NVMLError: one subclass per NVML return code."""


class NVMLError_NotSupported(NVMLError):  # pynvml's names
    pass


class NVMLError_NotFound(NVMLError):
    pass


class NVMLError_DriverNotLoaded(NVMLError):
    pass


def _record(**fields: Any) -> types.SimpleNamespace:
    return types.SimpleNamespace(**fields)


@dataclass
class FakeDevice:
    """What one GPU answers; an exception instance is raised instead of returned."""

    uuid: str | bytes
    name: str | bytes
    memory: Any
    utilization: Any
    temperature: Any
    power_mw: Any
    compute: Any = ()
    graphics: Any = ()
    samples: Any = ()


@dataclass
class FakeNvml:
    devices: list[FakeDevice]
    init_error: Exception | None = None
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def module(self) -> types.ModuleType:
        """A module with pynvml's names, bound to this fake's devices."""
        nvml = types.ModuleType("pynvml")
        nvml.NVMLError = NVMLError  # type: ignore[attr-defined]
        nvml.NVMLError_NotSupported = NVMLError_NotSupported  # type: ignore[attr-defined]
        nvml.NVMLError_NotFound = NVMLError_NotFound  # type: ignore[attr-defined]
        nvml.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
        functions = {
            "nvmlInit": self._init,
            "nvmlShutdown": lambda: None,
            "nvmlDeviceGetCount": lambda: len(self.devices),
            "nvmlDeviceGetHandleByIndex": lambda i: self.devices[i],
            "nvmlDeviceGetUUID": lambda d: d.uuid,
            "nvmlDeviceGetName": lambda d: d.name,
            "nvmlDeviceGetMemoryInfo": lambda d: _answer(d.memory),
            "nvmlDeviceGetUtilizationRates": lambda d: _answer(d.utilization),
            "nvmlDeviceGetTemperature": lambda d, sensor: _answer(d.temperature),
            "nvmlDeviceGetPowerUsage": lambda d: _answer(d.power_mw),
            "nvmlDeviceGetComputeRunningProcesses": lambda d: _answer(d.compute),
            "nvmlDeviceGetGraphicsRunningProcesses": lambda d: _answer(d.graphics),
            "nvmlDeviceGetProcessUtilization": lambda d, since: _answer(d.samples),
        }
        for name, function in functions.items():
            setattr(nvml, name, self._recorded(name, function))
        return nvml

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [args for called, args in self.calls if called == name]

    def _init(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def _recorded(self, name: str, function: Any) -> Any:
        def call(*args: Any) -> Any:
            self.calls.append((name, args))
            return function(*args)

        return call


def _answer(value: Any) -> Any:
    if isinstance(value, Exception):
        raise value
    return value


def a100() -> FakeDevice:
    """A fully supported GPU: one C+G process, one WDDM-like process without memory."""
    return FakeDevice(
        uuid="GPU-513536b6-7d19-9063-b049-1e69664bb298",
        name=b"NVIDIA A100-SXM4-80GB",  # older pynvml returns bytes
        memory=_record(total=80 * GiB, used=40 * GiB, free=40 * GiB),
        utilization=_record(gpu=87, memory=35),
        temperature=61,
        power_mw=312_450,
        compute=[
            _record(pid=1001, usedGpuMemory=30 * GiB),
            _record(pid=1002, usedGpuMemory=None),
        ],
        graphics=[
            _record(pid=1001, usedGpuMemory=30 * GiB),  # the same process, listed again as G
            _record(pid=2000, usedGpuMemory=200 * MiB),
        ],
        samples=[
            _record(pid=1001, timeStamp=100, smUtil=40, memUtil=10, encUtil=0, decUtil=0),
            _record(pid=1001, timeStamp=200, smUtil=75, memUtil=12, encUtil=0, decUtil=0),
            _record(pid=1002, timeStamp=150, smUtil=5, memUtil=1, encUtil=0, decUtil=0),
            _record(pid=2000, timeStamp=160, smUtil=4294967295, memUtil=0, encUtil=0, decUtil=0),
        ],
    )


def mig_gpu() -> FakeDevice:
    """A GPU in MIG mode: most optional metrics are NOT_SUPPORTED, no samples in the window."""
    return FakeDevice(
        uuid="GPU-00000000-0000-0000-0000-000000000001",
        name="NVIDIA H100 80GB HBM3",
        memory=_record(total=81559 * MiB, used=11125 * MiB, free=70434 * MiB),
        utilization=NVMLError_NotSupported(),
        temperature=NVMLError_NotSupported(),
        power_mw=NVMLError_NotSupported(),
        compute=[_record(pid=21198, usedGpuMemory=NOT_AVAILABLE_ULL)],
        graphics=NVMLError_NotSupported(),
        samples=NVMLError_NotFound(),
    )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    nvml = FakeNvml(devices=[a100(), mig_gpu()])
    monkeypatch.setitem(sys.modules, "pynvml", nvml.module())
    return nvml


def test_snapshot_reads_every_metric_of_a_supported_gpu(fake: FakeNvml) -> None:
    monitor = NvmlMonitor(clock=lambda: 1000.0)
    snap = monitor.snapshot()
    monitor.close()

    assert snap.backend == "nvml"
    assert snap.taken_at == 1000.0
    gpu = snap.gpus[0]
    assert (gpu.index, gpu.uuid, gpu.name) == (
        0,
        "GPU-513536b6-7d19-9063-b049-1e69664bb298",
        "NVIDIA A100-SXM4-80GB",
    )
    assert (gpu.mem_total_bytes, gpu.mem_used_bytes) == (80 * GiB, 40 * GiB)
    assert gpu.util_pct == 87.0
    assert gpu.temperature_c == 61.0
    assert gpu.power_w == pytest.approx(312.45)


def test_processes_are_deduplicated_with_the_latest_sm_sample(fake: FakeNvml) -> None:
    monitor = NvmlMonitor(clock=lambda: 1000.0)
    processes = {p.pid: p for p in monitor.snapshot().gpus[0].processes}
    monitor.close()

    assert sorted(processes) == [1001, 1002, 2000]
    assert processes[1001].mem_bytes == 30 * GiB  # not doubled by the graphics list
    assert processes[1001].util_pct == 75.0  # the sample at t=200, not the one at t=100
    assert processes[1002].mem_bytes is None  # usedGpuMemory None: the driver would not say
    assert processes[1002].util_pct == 5.0
    assert processes[2000].mem_bytes == 200 * MiB
    assert processes[2000].util_pct is None  # an out-of-range sample is no measurement


def test_unsupported_metrics_become_none(fake: FakeNvml) -> None:
    monitor = NvmlMonitor()
    gpu = monitor.snapshot().gpus[1]
    monitor.close()

    assert (gpu.index, gpu.uuid) == (1, "GPU-00000000-0000-0000-0000-000000000001")
    assert (gpu.mem_total_bytes, gpu.mem_used_bytes) == (81559 * MiB, 11125 * MiB)
    assert gpu.util_pct is None
    assert gpu.temperature_c is None
    assert gpu.power_w is None
    [process] = gpu.processes
    assert (process.pid, process.mem_bytes, process.util_pct) == (21198, None, None)


def test_process_samples_are_asked_for_the_recent_window_only(fake: FakeNvml) -> None:
    monitor = NvmlMonitor(clock=lambda: 1000.0, util_window_s=5.0)
    monitor.snapshot()
    monitor.close()

    since = {args[1] for args in fake.called("nvmlDeviceGetProcessUtilization")}
    assert since == {995_000_000}  # microseconds, like NVML's sample stamps


def test_init_happens_once_and_close_shuts_down_once(fake: FakeNvml) -> None:
    monitor = NvmlMonitor()
    monitor.snapshot()
    monitor.snapshot()
    monitor.close()
    monitor.close()

    assert len(fake.called("nvmlInit")) == 1
    assert len(fake.called("nvmlShutdown")) == 1
    assert monitor.job_env({"PATH": "/usr/bin"}) == {}


def test_missing_pynvml_is_unavailable_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes "import pynvml" fail

    with pytest.raises(MonitorUnavailable, match="pynvml is not installed"):
        NvmlMonitor()


def test_failing_init_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml(devices=[], init_error=NVMLError_DriverNotLoaded("Driver Not Loaded"))
    monkeypatch.setitem(sys.modules, "pynvml", nvml.module())

    with pytest.raises(MonitorUnavailable, match="Driver Not Loaded"):
        NvmlMonitor()


def test_no_gpu_is_unavailable_and_nvml_is_shut_down(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = FakeNvml(devices=[])
    monkeypatch.setitem(sys.modules, "pynvml", nvml.module())

    with pytest.raises(MonitorUnavailable, match="no NVIDIA GPU"):
        NvmlMonitor()
    assert len(nvml.called("nvmlShutdown")) == 1


def test_a_gpu_that_stops_answering_memory_is_unavailable(fake: FakeNvml) -> None:
    monitor = NvmlMonitor()
    fake.devices[0].memory = NVMLError("GPU is lost")

    with pytest.raises(MonitorUnavailable, match="GPU 0"):
        monitor.snapshot()
    monitor.close()


def test_only_the_nvml_module_imports_pynvml() -> None:
    importers = sorted(
        path.relative_to(SRC).as_posix()
        for path in SRC.rglob("*.py")
        if "import pynvml" in path.read_text() or "from pynvml" in path.read_text()
    )
    assert importers == ["gpu/nvml.py"]


@pytest.mark.gpu
def test_real_nvml_monitor_sees_consistent_gpus() -> None:
    try:
        monitor = NvmlMonitor()
    except MonitorUnavailable as err:
        pytest.skip(f"NVML unavailable here: {err}")
    try:
        first, second = monitor.snapshot(), monitor.snapshot()
    finally:
        monitor.close()

    assert first.gpus
    assert [g.uuid for g in first.gpus] == [g.uuid for g in second.gpus]
    for gpu in first.gpus:
        assert gpu.uuid.startswith(("GPU-", "MIG-"))
        assert 0 <= gpu.mem_used_bytes <= gpu.mem_total_bytes
        assert gpu.util_pct is None or 0 <= gpu.util_pct <= 100
        for process in gpu.processes:
            assert process.pid > 0
            assert process.mem_bytes is None or process.mem_bytes <= gpu.mem_total_bytes
