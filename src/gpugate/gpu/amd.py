"""AMD GPUs: through ``amdsmi`` when it is installed, else through the amdgpu driver's sysfs files.

sysfs (``<root>/class/drm/cardN/device/``) gives, per GPU: ``gpu_busy_percent``,
``mem_info_vram_total`` and ``mem_info_vram_used`` (bytes), ``unique_id`` (on boards that have
one, else the PCI address is the id), and ``hwmon/hwmon*/`` with ``temp1_input`` (millidegrees
Celsius) and ``power1_average`` or ``power1_input`` (microwatts). It has no per-process data;
``amdsmi`` (extra ``gpugate[amd]``, imported lazily) adds the processes and their VRAM.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gpugate.gpu.base import MonitorUnavailable
from gpugate.model import GpuProcess, GpuSnapshot, MachineSnapshot

AMD_VENDOR_ID = "0x1002"
_CARD_RE = re.compile(r"^card(\d+)$")  # not "card0-DP-1" (connectors) nor "renderD128"
_PCI_ADDRESS_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
_POWER_FILES = ("power1_average", "power1_input")  # older boards average, newer ones instant
_AMDSMI_POWER_KEYS = ("socket_power", "current_socket_power", "average_socket_power")
_MAX_PLAUSIBLE_C = 200.0  # above this an amdsmi temperature is in millidegrees


class AmdMonitor:
    """Every AMD GPU of the machine.

    ``sysfs_root`` is where sysfs is mounted (tests point it at a recorded tree). With
    ``use_amdsmi`` and amdsmi installed and working, amdsmi is used and sysfs is not read.
    Raises MonitorUnavailable when neither finds an AMD GPU.
    """

    backend = "amd"

    def __init__(
        self,
        sysfs_root: Path = Path("/sys"),
        *,
        use_amdsmi: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sysfs_root = sysfs_root
        self._clock = clock
        self._amdsmi: Any = None  # the amdsmi module once started
        self._handles: list[Any] = []
        if use_amdsmi:
            self._amdsmi, self._handles = _start_amdsmi()
        if self._amdsmi is None and not read_sysfs(sysfs_root):
            raise MonitorUnavailable(f"no AMD GPU with the amdgpu driver in {sysfs_root}/class/drm")

    def snapshot(self) -> MachineSnapshot:
        """Every AMD GPU now; MonitorUnavailable if a GPU's memory cannot be read."""
        taken_at = self._clock()
        if self._amdsmi is not None:
            gpus = tuple(_amdsmi_gpu(self._amdsmi, i, h) for i, h in enumerate(self._handles))
            return MachineSnapshot(backend=self.backend, taken_at=taken_at, gpus=gpus)
        note = "sysfs: no per-process data (install amdsmi for it)"
        gpus = read_sysfs(self._sysfs_root)
        return MachineSnapshot(backend=self.backend, taken_at=taken_at, gpus=gpus, note=note)

    def job_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Nothing to add to a job's environment ``base``: the GPUs are real."""
        return {}

    def close(self) -> None:
        """Shut amdsmi down if it was started; safe to call twice."""
        amdsmi, self._amdsmi = self._amdsmi, None
        if amdsmi is not None:
            _amdsmi_optional(amdsmi, amdsmi.amdsmi_shut_down)


# ---------------------------------------------------------------------------------------
# sysfs
# ---------------------------------------------------------------------------------------
def read_sysfs(sysfs_root: Path) -> tuple[GpuSnapshot, ...]:
    """Every AMD GPU under ``<sysfs_root>/class/drm``, indexed in card-number order.

    A card counts when its vendor is AMD and it reports VRAM (the amdgpu driver is bound).
    """
    devices = _amd_devices(sysfs_root / "class" / "drm")
    return tuple(_sysfs_gpu(index, device) for index, device in enumerate(devices))


def _amd_devices(drm: Path) -> list[Path]:
    cards: list[tuple[int, Path]] = []
    for entry in drm.glob("card*"):
        match = _CARD_RE.match(entry.name)
        device = entry / "device"
        if match and _read(device / "vendor") == AMD_VENDOR_ID and _has_vram_files(device):
            cards.append((int(match.group(1)), device))
    return [device for _, device in sorted(cards)]


def _has_vram_files(device: Path) -> bool:
    return (device / "mem_info_vram_total").is_file() and (device / "mem_info_vram_used").is_file()


def _sysfs_gpu(index: int, device: Path) -> GpuSnapshot:
    hwmon = _hwmon(device)
    return GpuSnapshot(
        index=index,
        uuid=_read(device / "unique_id") or _pci_address(device),
        name=_read(device / "product_name") or f"AMD GPU {_read(device / 'device') or ''}".strip(),
        mem_total_bytes=_required_int(device / "mem_info_vram_total"),
        mem_used_bytes=_required_int(device / "mem_info_vram_used"),
        util_pct=_scaled(device / "gpu_busy_percent", 1),
        temperature_c=None if hwmon is None else _scaled(hwmon / "temp1_input", 1000),
        power_w=None if hwmon is None else _first_power_w(hwmon),
    )


def _hwmon(device: Path) -> Path | None:
    return next(iter(sorted((device / "hwmon").glob("hwmon*"))), None)


def _first_power_w(hwmon: Path) -> float | None:
    watts = (_scaled(hwmon / name, 1_000_000) for name in _POWER_FILES)
    return next((value for value in watts if value is not None), None)


def _pci_address(device: Path) -> str:
    """The PCI address ("0000:03:00.0") that ``device`` links to, else the card's name."""
    target = device.resolve().name
    return target if _PCI_ADDRESS_RE.match(target) else device.parent.name


def _read(path: Path) -> str | None:
    """A sysfs value, stripped; None if absent, empty or unreadable (EIO on a sleeping GPU)."""
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _scaled(path: Path, per_unit: float) -> float | None:
    """The integer in ``path`` divided by ``per_unit`` (e.g. 1000 for millidegrees)."""
    text = _read(path)
    try:
        return None if text is None else int(text) / per_unit
    except ValueError:
        return None


def _required_int(path: Path) -> int:
    text = _read(path)
    if text is None or not text.isdigit():
        raise MonitorUnavailable(f"cannot read {path}")
    return int(text)


# ---------------------------------------------------------------------------------------
# amdsmi
# ---------------------------------------------------------------------------------------
def _start_amdsmi() -> tuple[Any, list[Any]]:
    """(amdsmi module, GPU handles), or (None, []) when it is missing, fails or sees no GPU."""
    try:
        import amdsmi
    except ImportError:
        return None, []
    try:
        amdsmi.amdsmi_init()
        handles = list(amdsmi.amdsmi_get_processor_handles())
    except amdsmi.AmdSmiException:
        return None, []
    if not handles:
        _amdsmi_optional(amdsmi, amdsmi.amdsmi_shut_down)
        return None, []
    return amdsmi, handles


def _amdsmi_gpu(amdsmi: Any, index: int, handle: Any) -> GpuSnapshot:
    vram = amdsmi.AmdSmiMemoryType.VRAM
    mem_total = _amdsmi_required(amdsmi, amdsmi.amdsmi_get_gpu_memory_total, handle, vram)
    mem_used = _amdsmi_required(amdsmi, amdsmi.amdsmi_get_gpu_memory_usage, handle, vram)
    asic = _amdsmi_optional(amdsmi, amdsmi.amdsmi_get_gpu_asic_info, handle) or {}
    activity = _amdsmi_optional(amdsmi, amdsmi.amdsmi_get_gpu_activity, handle) or {}
    power = _amdsmi_optional(amdsmi, amdsmi.amdsmi_get_power_info, handle) or {}
    uuid = _amdsmi_optional(amdsmi, amdsmi.amdsmi_get_gpu_device_uuid, handle)
    return GpuSnapshot(
        index=index,
        uuid=str(uuid or _amdsmi_optional(amdsmi, amdsmi.amdsmi_get_gpu_device_bdf, handle)),
        name=str(asic.get("market_name") or "AMD GPU"),
        mem_total_bytes=int(mem_total),
        mem_used_bytes=int(mem_used),
        util_pct=_number(activity.get("gfx_activity")),
        processes=_amdsmi_processes(amdsmi, handle),
        temperature_c=_amdsmi_temperature_c(amdsmi, handle),
        power_w=_first_number(power, _AMDSMI_POWER_KEYS),
    )


def _amdsmi_processes(amdsmi: Any, handle: Any) -> tuple[GpuProcess, ...]:
    """Processes with the VRAM they hold. amdsmi reports engine time, not a percentage, so
    ``util_pct`` stays None. Releases before ROCm 6.1 return bare handles: those are skipped."""
    listed = _amdsmi_optional(amdsmi, amdsmi.amdsmi_get_gpu_process_list, handle) or []
    return tuple(_amdsmi_process(info) for info in listed if isinstance(info, Mapping))


def _amdsmi_process(info: Mapping[str, Any]) -> GpuProcess:
    usage = info.get("memory_usage")
    vram = _number(usage.get("vram_mem")) if isinstance(usage, Mapping) else None
    memory = vram if vram is not None else _number(info.get("mem"))
    name = info.get("name")
    return GpuProcess(
        pid=int(info["pid"]),
        mem_bytes=None if memory is None else int(memory),
        name="" if name in (None, "N/A") else str(name),
    )


def _amdsmi_temperature_c(amdsmi: Any, handle: Any) -> float | None:
    raw = _number(
        _amdsmi_optional(
            amdsmi,
            amdsmi.amdsmi_get_temp_metric,
            handle,
            amdsmi.AmdSmiTemperatureType.EDGE,
            amdsmi.AmdSmiTemperatureMetric.CURRENT,
        )
    )
    # The docs say millidegrees while releases return degrees: accept both.
    return raw / 1000 if raw is not None and raw > _MAX_PLAUSIBLE_C else raw


def _amdsmi_optional(amdsmi: Any, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, or None where the GPU or driver does not support it."""
    try:
        return function(*args)
    except amdsmi.AmdSmiException:
        return None


def _amdsmi_required(amdsmi: Any, function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except amdsmi.AmdSmiException as err:
        raise MonitorUnavailable(f"amdsmi {function.__name__} failed: {err}") from err


def _number(value: object) -> float | None:
    """A number from amdsmi, which writes "N/A" where a metric is not supported."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _first_number(values: Mapping[str, object], keys: tuple[str, ...]) -> float | None:
    return next((v for v in (_number(values.get(key)) for key in keys) if v is not None), None)
