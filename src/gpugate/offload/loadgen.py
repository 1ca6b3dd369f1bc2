"""Competing load, for calibration and benchmarks: busy CPU processes, a busy GPU.

The calibration measures each variant on an idle machine and again beside busy
processes, so that the learned model has seen what load does before it meets it.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence

_SPIN = "while True: pass"
# A CuPy loop that keeps the GPU's SMs busy about `duty` of the time: a matmul burst, then
# a sleep of the same length scaled, so the utilization NVML reports sits near duty.
_GPU_SPIN = """
import sys, time, cupy
duty = float(sys.argv[1])
cupy.cuda.Device(int(sys.argv[2])).use()
a = cupy.random.rand(4096, 4096, dtype=cupy.float32)
while True:
    t = time.perf_counter()
    for _ in range(4):
        a = a @ a; a /= cupy.abs(a).max() + 1
    cupy.cuda.Device().synchronize()
    busy = time.perf_counter() - t
    time.sleep(busy * (1 - duty) / max(duty, 1e-3))
"""


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """``processes`` busy Python processes for the duration of the block."""
    procs = [
        subprocess.Popen([sys.executable, "-c", _SPIN], stdin=subprocess.DEVNULL)
        for _ in range(processes)
    ]
    try:
        yield
    finally:
        _stop(procs)


@contextlib.contextmanager
def gpu_load(duty: float, devices: Sequence[int] = (0,)) -> Iterator[None]:
    """A process per CUDA device index in ``devices`` keeping it busy about ``duty`` (0-1)
    of the time (needs CuPy; the indices are as this process's CUDA sees them)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _GPU_SPIN, str(duty), str(index)], stdin=subprocess.DEVNULL
        )
        for index in devices
    ]
    try:
        yield
    finally:
        _stop(procs)


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()
