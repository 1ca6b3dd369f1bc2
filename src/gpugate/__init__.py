"""gpugate: a scheduler for the GPUs of one machine.

Kept import-light on purpose: the CLI must start in well under 150 ms, so nothing heavy is
imported here. ``gpugate.Client`` is loaded on first use, and so are the job-side preemption
helpers (``gpugate.preempt_requested()`` and friends, from :mod:`gpugate.preempt`), which a
training loop uses without importing anything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from gpugate.client import Client
    from gpugate.preempt import (
        REQUEUE_EXIT_CODE,
        checkpoint_path,
        exit_for_requeue,
        preempt_requested,
        preemptible,
        resuming,
    )

__all__ = [
    "REQUEUE_EXIT_CODE",
    "Client",
    "__version__",
    "checkpoint_path",
    "exit_for_requeue",
    "preempt_requested",
    "preemptible",
    "resuming",
]

# Names served from gpugate.preempt on first access. Importing gpugate must not touch signal
# handling, and the helpers are only needed inside jobs, so they are loaded lazily.
_PREEMPT_EXPORTS = frozenset(
    {
        "REQUEUE_EXIT_CODE",
        "checkpoint_path",
        "exit_for_requeue",
        "preempt_requested",
        "preemptible",
        "resuming",
    }
)


def __getattr__(name: str) -> Any:
    if name == "Client":
        from gpugate.client import Client

        return Client
    if name in _PREEMPT_EXPORTS:
        from gpugate import preempt

        value = getattr(preempt, name)
        # Cache it: preempt_requested() is polled every training step, and a module attribute
        # lookup is cheaper than a trip through this function.
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gpugate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
