"""Thread-pool settings for CPU variants of different libraries sharing the cores.

Both OpenBLAS (NumPy) and libgomp (Numba's parallel loops) keep their idle threads
spinning after each call by default, so the next call of the *other* library runs with a
core taken: in a stream mixing NumPy and Numba tasks on 2 cores, Numba kernels took
twice as long and the whole stream 2.4x (bench/offload_threads.py, docs/benchmarks.md §11). Waiting
passively costs a few microseconds per call. These are defaults only (a variable set by
the user wins), and each takes effect only if set before its library loads: OpenBLAS
reads its own when NumPy is first imported.
"""

from __future__ import annotations

import os
import sys

NOTE = ""  # what could not be set, for explain()


def configure_thread_pools() -> str:
    """Set the defaults that can still take effect; return a note on what could not."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return ""
    if "numpy" in sys.modules:
        return (
            "NumPy was imported before gpugate.offload, so OpenBLAS's idle threads spin and"
            " slow the next Numba task: export OPENBLAS_THREAD_TIMEOUT=4 (or import"
            " gpugate.offload first)"
        )
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
    return ""
