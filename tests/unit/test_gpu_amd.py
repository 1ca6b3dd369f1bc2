"""AmdMonitor on a recorded amdgpu sysfs tree (built in tmp_path) and on a fake amdsmi."""

from __future__ import annotations

import sys
import types
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from gpugate.gpu.amd import AmdMonitor, read_sysfs
from gpugate.gpu.base import MonitorUnavailable
from gpugate.model import GpuProcess
from gpugate.units import GiB

# Values as an amdgpu driver writes them: bytes, percent, millidegrees C, microwatts.
RX_7900_XTX = {
    "vendor": "0x1002",
    "device": "0x744c",
    "mem_info_vram_total": "25753026560",
    "mem_info_vram_used": "1234567168",
    "gpu_busy_percent": "37",
}
MI210 = {
    "vendor": "0x1002",
    "device": "0x740f",
    "product_name": "Instinct MI210",
    "unique_id": "9c3b2f7a1d5e4b21",
    "mem_info_vram_total": "68702699520",
    "mem_info_vram_used": "10737418240",
    "gpu_busy_percent": "100",
}
INTEL_IGPU = {"vendor": "0x8086", "device": "0x4680"}


def write_files(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (directory / name).write_text(value + "\n")


def add_card(
    sysfs: Path, card: str, pci: str, files: dict[str, str], hwmon: dict[str, str]
) -> Path:
    """cardN/device is a symlink to the PCI device, as in a real /sys."""
    device = sysfs / "devices" / "pci0000:00" / pci
    write_files(device, files)
    write_files(device / "hwmon" / "hwmon3", hwmon)
    (sysfs / "class" / "drm" / card).mkdir(parents=True)
    (sysfs / "class" / "drm" / card / "device").symlink_to(device)
    return device


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    add_card(root, "card0", "0000:00:02.0", INTEL_IGPU, {})
    add_card(
        root, "card2", "0000:c3:00.0", MI210, {"temp1_input": "62000", "power1_input": "280000000"}
    )
    add_card(
        root,
        "card1",
        "0000:03:00.0",
        RX_7900_XTX,
        {"temp1_input": "45000", "power1_average": "52000000"},
    )
    (root / "class" / "drm" / "card1-DP-1").mkdir()  # a connector, not a GPU
    (root / "class" / "drm" / "renderD128").mkdir()
    return root


def test_sysfs_gpus_in_card_order_with_their_values(sysfs: Path) -> None:
    rx, mi210 = read_sysfs(sysfs)

    assert (rx.index, rx.uuid, rx.name) == (0, "0000:03:00.0", "AMD GPU 0x744c")
    assert (rx.mem_total_bytes, rx.mem_used_bytes) == (25753026560, 1234567168)
    assert (rx.util_pct, rx.temperature_c, rx.power_w) == (37.0, 45.0, 52.0)
    assert (mi210.index, mi210.uuid, mi210.name) == (1, "9c3b2f7a1d5e4b21", "Instinct MI210")
    assert (mi210.mem_total_bytes, mi210.mem_used_bytes) == (68702699520, 10 * GiB)
    assert (mi210.util_pct, mi210.temperature_c, mi210.power_w) == (100.0, 62.0, 280.0)
    assert rx.processes == mi210.processes == ()


def test_unreadable_optional_files_become_none(sysfs: Path) -> None:
    device = sysfs / "devices" / "pci0000:00" / "0000:03:00.0"
    (device / "gpu_busy_percent").unlink()
    (device / "gpu_busy_percent").mkdir()  # reading it fails like EIO on a sleeping GPU
    for hwmon_file in (device / "hwmon" / "hwmon3").iterdir():
        hwmon_file.unlink()

    rx = read_sysfs(sysfs)[0]

    assert (rx.util_pct, rx.temperature_c, rx.power_w) == (None, None, None)
    assert rx.mem_used_bytes == 1234567168


def test_monitor_on_sysfs(sysfs: Path) -> None:
    monitor = AmdMonitor(sysfs, use_amdsmi=False, clock=lambda: 5.0)

    snap = monitor.snapshot()
    monitor.close()

    assert (snap.backend, snap.taken_at) == ("amd", 5.0)
    assert snap.gpus == read_sysfs(sysfs)
    assert "sysfs" in snap.note
    assert monitor.job_env({"PATH": "/usr/bin"}) == {}


def test_monitor_without_amd_gpu_is_unavailable(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    add_card(root, "card0", "0000:00:02.0", INTEL_IGPU, {})

    with pytest.raises(MonitorUnavailable, match="no AMD GPU"):
        AmdMonitor(root, use_amdsmi=False)


def test_vram_that_vanishes_is_unavailable(sysfs: Path) -> None:
    monitor = AmdMonitor(sysfs, use_amdsmi=False)
    (sysfs / "devices" / "pci0000:00" / "0000:03:00.0" / "mem_info_vram_used").write_text("")

    with pytest.raises(MonitorUnavailable, match="mem_info_vram_used"):
        monitor.snapshot()


# ---------------------------------------------------------------------------------------
# amdsmi, faked with the names of its Python API
# ---------------------------------------------------------------------------------------
class AmdSmiException(Exception):
    pass


class MemoryType(Enum):
    VRAM = 0


class TemperatureType(Enum):
    EDGE = 0


class TemperatureMetric(Enum):
    CURRENT = 0


def fake_amdsmi(calls: list[str], *, init_fails: bool = False) -> types.ModuleType:
    """One MI300X with one process; temperature not supported."""
    handle = object()
    amdsmi = types.ModuleType("amdsmi")

    def init() -> None:
        calls.append("init")
        if init_fails:
            raise AmdSmiException("AMDSMI_STATUS_DRIVER_NOT_LOADED")

    def unsupported(*args: Any) -> Any:
        raise AmdSmiException("AMDSMI_STATUS_NOT_SUPPORTED")

    memory = {MemoryType.VRAM: (205822885888, 25769803776)}
    process = {
        "name": "python3",
        "pid": 4242,
        "mem": 1 << 20,
        "engine_usage": {"gfx": 123456789, "enc": 0},
        "memory_usage": {"gtt_mem": 0, "cpu_mem": 0, "vram_mem": 24 * GiB},
    }
    members: dict[str, Any] = {
        "AmdSmiException": AmdSmiException,
        "AmdSmiMemoryType": MemoryType,
        "AmdSmiTemperatureType": TemperatureType,
        "AmdSmiTemperatureMetric": TemperatureMetric,
        "amdsmi_init": init,
        "amdsmi_shut_down": lambda: calls.append("shut_down"),
        "amdsmi_get_processor_handles": lambda: [handle],
        "amdsmi_get_gpu_device_uuid": lambda h: "1fff74a1-0000-1000-8000-000000000000",
        "amdsmi_get_gpu_device_bdf": lambda h: "0000:05:00.0",
        "amdsmi_get_gpu_asic_info": lambda h: {"market_name": "AMD Instinct MI300X"},
        "amdsmi_get_gpu_memory_total": lambda h, kind: memory[kind][0],
        "amdsmi_get_gpu_memory_usage": lambda h, kind: memory[kind][1],
        "amdsmi_get_gpu_activity": lambda h: {"gfx_activity": 73, "umc_activity": "N/A"},
        "amdsmi_get_power_info": lambda h: {"socket_power": "N/A", "current_socket_power": 512},
        "amdsmi_get_temp_metric": unsupported,
        "amdsmi_get_gpu_process_list": lambda h: [process],
    }
    for name, value in members.items():
        setattr(amdsmi, name, value)
    return amdsmi


def test_amdsmi_gives_processes_and_replaces_sysfs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi(calls))
    monitor = AmdMonitor(tmp_path / "empty-sys")  # sysfs is not needed when amdsmi works

    [gpu] = monitor.snapshot().gpus
    monitor.close()
    monitor.close()

    assert (gpu.uuid, gpu.name) == ("1fff74a1-0000-1000-8000-000000000000", "AMD Instinct MI300X")
    assert (gpu.mem_total_bytes, gpu.mem_used_bytes) == (205822885888, 24 * GiB)
    assert (gpu.util_pct, gpu.power_w, gpu.temperature_c) == (73.0, 512.0, None)
    assert gpu.processes == (GpuProcess(4242, 24 * GiB, name="python3"),)
    assert calls == ["init", "shut_down"]


def test_amdsmi_that_fails_to_start_falls_back_to_sysfs(
    monkeypatch: pytest.MonkeyPatch, sysfs: Path
) -> None:
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "amdsmi", fake_amdsmi(calls, init_fails=True))

    snap = AmdMonitor(sysfs).snapshot()

    assert calls == ["init"]
    assert [g.name for g in snap.gpus] == ["AMD GPU 0x744c", "Instinct MI210"]
