"""What the machine is doing right now, as the offload chooser sees it.

A decision must cost microseconds, so nothing here is read on the decision path: a
background thread (``StateSampler``) samples the CPU ten times a second and the GPUs
twice a second, and publishes a frozen ``SystemState`` that a decision reads with one
attribute access.

* **CPU**: threads of *other* processes that are runnable (``procs_running`` in
  ``/proc/stat`` minus this process's own running threads), averaged over about half a
  second. Our own threads are left out: the chooser already knows what it queued.
* **GPUs**: utilization by others and free memory. From the gpugate daemon when one
  answers (its free memory also leaves out what it has reserved for jobs still ramping
  up, so that several processes on the machine do not all pile onto the same GPU);
  otherwise from gpugate's own monitors (NVML, nvidia-smi, ...). This process's own
  utilization is subtracted: from the driver's per-process figure where it has one, else
  from the share of time this runtime kept the GPU busy.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpugate.model import MachineSnapshot
from gpugate.offload.devices import Device

CPU_SAMPLE_S = 0.1
GPU_SAMPLE_S = 0.5
CPU_SMOOTHING = 0.2  # EMA weight of a new CPU sample: about half a second of memory
STALE_AFTER_FAILURES = 3  # GPU reads in a row; then the GPUs' state is unknown, not old


@dataclass(frozen=True, slots=True)
class GpuState:
    """One GPU as others use it. ``util_others_pct`` is None where unknown."""

    index: int
    uuid: str
    name: str
    util_others_pct: float | None
    mem_free_bytes: int | None


@dataclass(frozen=True, slots=True)
class SystemState:
    cpu_count: int
    cpu_runnable_others: float  # runnable threads of other processes (mean)
    gpus: tuple[GpuState, ...] = ()
    gpu_source: str = "none"  # "daemon", "nvml", "nvidia-smi", ..., "none"
    note: str = ""  # why a source is missing, for explain()
    taken_at: float = field(default_factory=time.monotonic)

    def gpu(self, uuid: str | None, index: int) -> GpuState | None:
        """The GPU with this UUID; by index only when UUIDs are unknown on either side."""
        for gpu in self.gpus:
            if uuid and gpu.uuid:
                if gpu.uuid == uuid:
                    return gpu
            elif gpu.index == index:
                return gpu
        return None


def idle_state(cpu_count: int | None = None) -> SystemState:
    """A machine doing nothing else (tests, and the start before the first sample)."""
    return SystemState(cpu_count or os.cpu_count() or 1, 0.0)


# ----------------------------------------------------------------------------------- CPU
def read_procs_running(stat_path: str = "/proc/stat") -> int | None:
    """Runnable threads on the whole machine, this instant; None off Linux."""
    try:
        with open(stat_path, "rb") as f:
            for line in f:
                if line.startswith(b"procs_running "):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def count_own_running_threads(task_dir: str = "/proc/self/task") -> int:
    """How many of this process's threads are running or runnable (state R)."""
    running = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(task_dir):
            with contextlib.suppress(OSError), open(f"{task_dir}/{tid}/stat", "rb") as f:
                text = f.read()
                # the state follows the command name, which may itself hold ") "
                if text[text.rfind(b")") + 2 : text.rfind(b")") + 3] == b"R":
                    running += 1
    return running


def runnable_others_now() -> float:
    """One sample of other processes' runnable threads (load average off Linux)."""
    total = read_procs_running()
    if total is None:
        return max(os.getloadavg()[0] - 1.0, 0.0) if hasattr(os, "getloadavg") else 0.0
    return float(max(total - count_own_running_threads(), 0))


# ---------------------------------------------------------------------------------- GPUs
class Own(Protocol):
    """What this process itself does on a GPU (named as the monitor names it: by UUID,
    by index where the UUID is unknown): the share of time it keeps it busy, and memory
    its allocator holds unused (the driver counts it as used)."""

    def busy_pct(self, uuid: str, index: int) -> float: ...

    def pooled_free_bytes(self, uuid: str, index: int) -> int: ...


class NothingOwn:
    def busy_pct(self, uuid: str, index: int) -> float:
        return 0.0

    def pooled_free_bytes(self, uuid: str, index: int) -> int:
        return 0


class GpuStateSource(Protocol):
    """Where GPU load comes from. ``read`` may block for milliseconds (it runs on the
    sampler's thread)."""

    name: str

    def read(self, own: Own) -> tuple[GpuState, ...]: ...

    def close(self) -> None: ...


class MonitorGpuSource:
    """gpugate's own monitors (NVML first), in this process."""

    def __init__(
        self, snapshot: Callable[[], MachineSnapshot], name: str, close: Callable[[], None]
    ) -> None:
        self._snapshot = snapshot
        self.name = name
        self._close = close

    def read(self, own: Own) -> tuple[GpuState, ...]:
        states = []
        for g in self._snapshot().gpus:
            others = _others_util(g.util_pct, g.processes, own.busy_pct(g.uuid, g.index))
            free = g.mem_free_bytes + own.pooled_free_bytes(g.uuid, g.index)
            states.append(GpuState(g.index, g.uuid, g.name, others, free))
        return tuple(states)

    def close(self) -> None:
        self._close()


class DaemonGpuSource:
    """The gpugate daemon's view (``GET /v1/gpus``): the same monitor, plus what it has
    reserved for jobs that are still ramping up."""

    name = "daemon"

    def __init__(self, client: object) -> None:
        from gpugate.client import Client

        assert isinstance(client, Client)
        self._client = client

    def read(self, own: Own) -> tuple[GpuState, ...]:
        states = []
        for g in self._client.gpus().gpus:
            util = g.util_pct if g.util_pct is not None else g.util_smoothed_pct
            others = _others_util(util, g.processes, own.busy_pct(g.uuid, g.index))
            free = g.mem_total_bytes - g.mem_used_bytes - g.reserved_mem_bytes
            free += own.pooled_free_bytes(g.uuid, g.index)
            states.append(GpuState(g.index, g.uuid, g.name, others, max(free, 0)))
        return tuple(states)

    def close(self) -> None:
        pass


def _others_util(
    util_pct: float | None, processes: Sequence[Any], own_busy_pct: float
) -> float | None:
    """The GPU's utilization less this process's: the driver's per-process figure where
    it gives one, else the share of time our own queue kept the GPU busy."""
    if util_pct is None:
        return None
    mine = [p.util_pct for p in processes if p.pid == os.getpid() and p.util_pct is not None]
    return max(util_pct - (mine[0] if mine else own_busy_pct), 0.0)


def find_gpu_source(devices: Sequence[Device]) -> tuple[GpuStateSource | None, str]:
    """Where to read the load of ``devices``: the daemon if one answers and watches them
    (same UUIDs), else a local monitor (which matches by index where a UUID is missing),
    else none; and a note saying why."""
    if not devices:
        return None, "no GPU device in this process"
    uuids = {d.uuid for d in devices if d.uuid}
    try:
        from gpugate.client import Client

        client = Client(timeout_s=0.5)
        watched = {g.uuid for g in client.gpus().gpus}
        if watched & uuids:
            return DaemonGpuSource(client), ""
        note = "the gpugate daemon watches other GPUs than this process's"
    except Exception as exc:  # no daemon, or one that does not answer: monitors instead
        note = f"no gpugate daemon answered ({type(exc).__name__})"
    from gpugate.gpu.base import MonitorUnavailable
    from gpugate.gpu.detect import detect_monitor

    try:
        monitor = detect_monitor()
    except MonitorUnavailable as exc:
        return None, f"{note}; {exc}"
    return MonitorGpuSource(monitor.snapshot, monitor.backend, monitor.close), note


# ------------------------------------------------------------------------------- sampler
class StateSampler:
    """Keeps ``current`` fresh from a background thread (see the module docstring)."""

    def __init__(
        self,
        gpu_source: GpuStateSource | None,
        own: Own | None = None,
        note: str = "",
        runnable_others: Callable[[], float] = runnable_others_now,
    ) -> None:
        self._gpu_source = gpu_source
        self._own = own or NothingOwn()
        self._runnable_others = runnable_others
        self._note = note
        self._cpu_mean: float | None = None
        self._gpus: tuple[GpuState, ...] = ()
        self._gpu_failures = 0
        self._stop = threading.Event()
        self.current = idle_state()
        self._sample(with_gpus=True)
        self._thread = threading.Thread(
            target=self._loop, name="gpugate-offload-state", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        every = max(1, round(GPU_SAMPLE_S / CPU_SAMPLE_S))
        tick = 0
        while not self._stop.wait(CPU_SAMPLE_S):
            tick += 1
            self._sample(with_gpus=tick % every == 0)

    def _sample(self, with_gpus: bool) -> None:
        sample = self._runnable_others()
        if self._cpu_mean is None:  # the first sample: not an average of zeros
            self._cpu_mean = sample
        self._cpu_mean += CPU_SMOOTHING * (sample - self._cpu_mean)
        if with_gpus and self._gpu_source is not None:
            try:
                self._gpus = self._gpu_source.read(self._own)
                self._note, self._gpu_failures = "", 0
            except Exception as exc:  # a monitor hiccup must not stop sampling
                self._note = f"{self._gpu_source.name}: {exc}"
                self._gpu_failures += 1
                if self._gpu_failures >= STALE_AFTER_FAILURES:
                    self._gpus = ()  # a GPU last seen full must not stay avoided for ever
        self.current = SystemState(
            cpu_count=os.cpu_count() or 1,
            cpu_runnable_others=self._cpu_mean,
            gpus=self._gpus,
            gpu_source=self._gpu_source.name if self._gpu_source else "none",
            note=self._note,
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        if self._gpu_source is not None:
            self._gpu_source.close()


class FixedState:
    """A state that never changes: tests and benchmarks that script the machine."""

    def __init__(self, state: SystemState) -> None:
        self.current = state

    def close(self) -> None:
        pass


class StateView(Protocol):
    @property
    def current(self) -> SystemState: ...

    def close(self) -> None: ...
