"""NVIDIA GPUs through NVML: the only module in gpugate that imports ``pynvml``.

``pynvml`` (package ``nvidia-ml-py``, extra ``gpugate[nvidia]``) is imported inside
``NvmlMonitor.__init__``, so importing this module costs nothing on machines without it. Every
metric a GPU or driver may not support (utilization under MIG, power on some boards, per-process
memory under Windows WDDM) goes through one helper that turns an ``NVMLError`` into ``None``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Any

from gpugate.gpu.base import MonitorUnavailable
from gpugate.model import GpuProcess, GpuSnapshot, MachineSnapshot

# NVML_VALUE_NOT_AVAILABLE for an unsigned long long; newer pynvml already maps it to None.
_NOT_AVAILABLE_ULL = (1 << 64) - 1
_PROCESS_LISTS = ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses")


class NvmlMonitor:
    """Every NVIDIA GPU of the machine, read through NVML.

    NVML is initialised once here and shut down by ``close()``. ``clock`` gives wall-clock
    seconds (``time.time``): it stamps snapshots and bounds the per-process utilization samples
    to the last ``util_window_s`` seconds (NVML keeps a ring of samples stamped in microseconds).
    Raises MonitorUnavailable when pynvml is missing, NVML does not start, or there is no GPU.
    """

    backend = "nvml"

    def __init__(
        self, *, clock: Callable[[], float] = time.time, util_window_s: float = 5.0
    ) -> None:
        self._nvml = _start_nvml()
        self._clock = clock
        self._util_window_s = util_window_s
        self._closed = False
        try:
            self._handles = _device_handles(self._nvml)
            self._uuids = [_text(self._nvml.nvmlDeviceGetUUID(h)) for h in self._handles]
            self._names = [_text(self._nvml.nvmlDeviceGetName(h)) for h in self._handles]
        except self._nvml.NVMLError as err:
            self.close()
            raise MonitorUnavailable(f"NVML cannot list the GPUs: {err}") from err
        if not self._handles:
            self.close()
            raise MonitorUnavailable("NVML found no NVIDIA GPU")

    def snapshot(self) -> MachineSnapshot:
        """Every GPU now. Raises MonitorUnavailable only if a GPU stops answering at all."""
        taken_at = self._clock()
        since_us = max(0, int((taken_at - self._util_window_s) * 1_000_000))
        gpus = tuple(self._gpu(index, since_us) for index in range(len(self._handles)))
        return MachineSnapshot(backend=self.backend, taken_at=taken_at, gpus=gpus)

    def job_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Nothing to add to a job's environment ``base``: the GPUs are real."""
        return {}

    def close(self) -> None:
        """Shut NVML down; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        # Shutting down a library that is already gone is not worth a crash.
        with contextlib.suppress(self._nvml.NVMLError):
            self._nvml.nvmlShutdown()

    def _gpu(self, index: int, since_us: int) -> GpuSnapshot:
        handle = self._handles[index]
        memory = self._required(index, "nvmlDeviceGetMemoryInfo", handle)
        utilization = self._optional("nvmlDeviceGetUtilizationRates", handle)
        temperature = self._optional(
            "nvmlDeviceGetTemperature", handle, self._nvml.NVML_TEMPERATURE_GPU
        )
        power_mw = self._optional("nvmlDeviceGetPowerUsage", handle)
        return GpuSnapshot(
            index=index,
            uuid=self._uuids[index],
            name=self._names[index],
            mem_total_bytes=int(memory.total),
            mem_used_bytes=int(memory.used),
            util_pct=None if utilization is None else float(utilization.gpu),
            processes=self._processes(handle, since_us),
            temperature_c=None if temperature is None else float(temperature),
            power_w=None if power_mw is None else power_mw / 1000,
        )

    def _processes(self, handle: Any, since_us: int) -> tuple[GpuProcess, ...]:
        """Compute then graphics processes, one entry per PID (a C+G process is in both lists
        with the same memory, so the first entry is kept rather than summed)."""
        sm_util = self._sm_util_by_pid(handle, since_us)
        found: dict[int, GpuProcess] = {}
        for getter in _PROCESS_LISTS:
            for info in self._optional(getter, handle) or ():
                pid = int(info.pid)
                if pid not in found:
                    memory = _process_memory(info.usedGpuMemory)
                    found[pid] = GpuProcess(pid=pid, mem_bytes=memory, util_pct=sm_util.get(pid))
        return tuple(found.values())

    def _sm_util_by_pid(self, handle: Any, since_us: int) -> dict[int, float]:
        """The latest SM utilization sample (percent) of each PID since ``since_us``.

        NVML raises NOT_FOUND when no process ran in the window, which reads as "no samples".
        """
        samples = self._optional("nvmlDeviceGetProcessUtilization", handle, since_us) or ()
        latest: dict[int, tuple[int, float]] = {}
        for sample in samples:
            # Values above 100 are the driver's "no data" marker, not a measurement.
            if sample.smUtil > 100:
                continue
            pid, stamp = int(sample.pid), int(sample.timeStamp)
            if pid not in latest or stamp >= latest[pid][0]:
                latest[pid] = (stamp, float(sample.smUtil))
        return {pid: util for pid, (_, util) in latest.items()}

    def _optional(self, function: str, *args: Any) -> Any:
        """``pynvml.<function>(*args)``, or None where the GPU or driver cannot say."""
        try:
            return getattr(self._nvml, function)(*args)
        except self._nvml.NVMLError:
            return None

    def _required(self, index: int, function: str, *args: Any) -> Any:
        try:
            return getattr(self._nvml, function)(*args)
        except self._nvml.NVMLError as err:
            raise MonitorUnavailable(f"NVML {function} failed on GPU {index}: {err}") from err


def _start_nvml() -> Any:
    """The pynvml module, initialised; MonitorUnavailable with the reason otherwise."""
    try:
        import pynvml
    except ImportError as err:
        raise MonitorUnavailable(
            "pynvml is not installed (pip install 'gpugate[nvidia]' for nvidia-ml-py)"
        ) from err
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        raise MonitorUnavailable(
            f"NVML did not start (is the NVIDIA driver loaded?): {err}"
        ) from err
    return pynvml


def _device_handles(nvml: Any) -> list[Any]:
    return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]


def _process_memory(used: int | None) -> int | None:
    """Bytes a process holds; None where NVML cannot tell (WDDM, some MIG setups)."""
    return None if used is None or used == _NOT_AVAILABLE_ULL else int(used)


def _text(value: str | bytes) -> str:
    """pynvml returns names as bytes in older releases and str in newer ones."""
    return value.decode() if isinstance(value, bytes) else value
