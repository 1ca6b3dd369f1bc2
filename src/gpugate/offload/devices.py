"""The devices a task variant can run on, and how data moves between them.

One door per kind of hardware, as for the monitors: CuPy is imported only here (and in
the GPU kernels), and only when a GPU is looked for. ``SimulatedGpu`` is a first-class
stand-in for machines without one: its "device memory" is host memory behind a marker
type and its transfers take the time a PCIe link would, so the runtime's queues,
transfers and choices run and are tested everywhere.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class Device(Protocol):
    """``name`` is unique in a runtime (``cpu``, ``cuda:0``); ``label`` names the model of
    hardware (what learned models are keyed by); ``uuid`` matches the GPU monitors'."""

    name: str
    label: str
    is_gpu: bool
    index: int
    uuid: str | None

    def holds(self, value: object) -> bool:
        """Whether ``value`` is an array living in this device's memory."""
        ...

    def to_device(self, value: Any) -> Any: ...

    def to_host(self, value: Any) -> Any: ...

    def synchronize(self) -> None: ...

    def active(self) -> contextlib.AbstractContextManager[object]:
        """Make this device current for the calling thread while a variant runs."""
        ...

    def pooled_free_bytes(self) -> int:
        """Device memory this process holds in its allocator's pool but does not use:
        the driver counts it as used, yet our next call can have it."""
        ...


class _NothingToWaitFor:
    """Devices that compute in host memory: nothing to synchronize or make current, and
    no allocator pool of their own."""

    def synchronize(self) -> None:
        pass

    def active(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()

    def pooled_free_bytes(self) -> int:
        return 0


class CpuDevice(_NothingToWaitFor):
    name = "cpu"
    is_gpu = False
    index = 0
    uuid: str | None = None

    def __init__(self) -> None:
        self.label = f"{cpu_model()} x{os.cpu_count() or 1}"

    def holds(self, value: object) -> bool:
        return isinstance(value, np.ndarray)  # subclasses too (memmap, ...)

    def to_device(self, value: Any) -> Any:
        return value

    def to_host(self, value: Any) -> Any:
        return value


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine() or "cpu"


class CudaDevice:
    """One CUDA GPU through CuPy (the ``[offload-cuda]`` extra).

    Variants and transfers run on a stream of the runtime's own, so that waiting for
    them (to time them) does not wait for other CuPy work of the process as well; it is
    a blocking stream (ordered after the legacy default stream), so arrays a caller
    computed there are ready before a variant reads them."""

    is_gpu = True

    def __init__(self, index: int) -> None:
        import cupy

        self._cp = cupy
        self.index = index
        self.name = f"cuda:{index}"
        props = cupy.cuda.runtime.getDeviceProperties(index)
        self.label = _text(props.get("name", b"CUDA GPU"))
        self.uuid = format_uuid(props.get("uuid"))
        with cupy.cuda.Device(index):
            self._stream = cupy.cuda.Stream()

    def holds(self, value: object) -> bool:
        return isinstance(value, self._cp.ndarray) and int(value.device.id) == self.index

    def to_device(self, value: Any) -> Any:
        with self.active():
            return self._cp.asarray(value)

    def to_host(self, value: Any) -> Any:
        with self.active():
            return self._cp.asnumpy(value)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def active(self) -> contextlib.AbstractContextManager[object]:
        stack = contextlib.ExitStack()
        stack.enter_context(self._cp.cuda.Device(self.index))
        stack.enter_context(self._stream)
        return stack

    def pooled_free_bytes(self) -> int:
        with self._cp.cuda.Device(self.index):
            return int(self._cp.get_default_memory_pool().free_bytes())


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def format_uuid(raw: object) -> str | None:
    """CUDA's 16 raw UUID bytes as NVML writes them (``GPU-xxxxxxxx-xxxx-...``)."""
    if not isinstance(raw, bytes | bytearray) or len(raw) != 16:
        return None
    h = bytes(raw).hex()
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def find_cuda_devices() -> tuple[list[CudaDevice], str]:
    """Every CUDA GPU this process may use (``CUDA_VISIBLE_DEVICES`` applies), or none and
    why: the reason ``explain`` gives for not offloading."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return [], "CUDA_VISIBLE_DEVICES is empty (a CPU-only job)"
    try:
        import cupy
    except ImportError:
        return [], "CuPy is not installed (pip install 'gpugate[offload-cuda]')"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError: no driver, no device
        return [], f"no CUDA device ({exc})"
    if count == 0:
        return [], "no CUDA device"
    return [CudaDevice(i) for i in range(count)], ""


# ------------------------------------------------------------------------- simulated GPU
class SimulatedGpuArray(np.ndarray):
    """An array in a ``SimulatedGpu``'s memory (host memory, marked)."""


@dataclass
class SimulatedGpu(_NothingToWaitFor):
    """A GPU for machines without one (tests, trying the API). Variants given to it run
    on the host; only data movement is modelled, at ``link_bytes_per_s`` plus
    ``link_latency_s`` per transfer. ``uuid`` defaults to the simulated monitor's, so a
    daemon on ``--gpus sim:...`` reports this GPU's load."""

    index: int = 0
    uuid: str | None = None
    label: str = "Simulated GPU"
    link_bytes_per_s: float = 12e9
    link_latency_s: float = 10e-6
    is_gpu: bool = True

    def __post_init__(self) -> None:
        if self.uuid is None:
            from gpugate.gpu.sim import sim_uuid

            self.uuid = sim_uuid(self.index)
        self.name = f"sim-gpu:{self.index}"

    def holds(self, value: object) -> bool:
        return isinstance(value, SimulatedGpuArray)

    def to_device(self, value: Any) -> Any:
        self._move(value)
        return np.array(value, copy=True).view(SimulatedGpuArray)

    def to_host(self, value: Any) -> Any:
        self._move(value)
        return np.array(value, copy=True)

    def _move(self, value: Any) -> None:
        time.sleep(self.link_latency_s + int(getattr(value, "nbytes", 0)) / self.link_bytes_per_s)
