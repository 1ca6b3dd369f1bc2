"""gpugate.offload: run each compute task where it finishes first, CPU or GPU.

    from gpugate import offload

    @offload.task(kind="matmul")
    def matmul(a, b): ...            # CPU implementation
    @matmul.gpu
    def _(a, b): ...                 # GPU implementation (CUDA)

    c = matmul(a, b)                 # runs where the cost model says
    f = matmul.submit(a, b)          # a Future: CPU and GPU work at the same time
    print(offload.explain(matmul, a, b))

See ``runtime`` for how a call is decided, ``costmodel`` for what is learned and
``policy`` for the baselines it is measured against.
"""

from __future__ import annotations

from typing import Any

from gpugate.offload import threads

# before anything below imports NumPy (see gpugate.offload.threads)
threads.NOTE = threads.configure_thread_pools()

from gpugate.offload.default import configure, default_runtime  # noqa: E402
from gpugate.offload.devices import SimulatedGpu  # noqa: E402
from gpugate.offload.explain import Explanation  # noqa: E402
from gpugate.offload.runtime import POLICIES, Runtime  # noqa: E402
from gpugate.offload.task import OffloadTask, task  # noqa: E402


def explain(task: OffloadTask, *args: Any, **kwargs: Any) -> Explanation:
    """Predicted time per option, the system state, and the choice, for this call."""
    return default_runtime().explain(task, args, kwargs)


__all__ = [
    "POLICIES",
    "Explanation",
    "OffloadTask",
    "Runtime",
    "SimulatedGpu",
    "configure",
    "default_runtime",
    "explain",
    "task",
]
