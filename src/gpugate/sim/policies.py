"""The policies the simulator compares, by name. Each is a plain ``core.Policy``: the
daemon could run any of them (``gpugate serve`` runs ``gpugate``)."""

from __future__ import annotations

from dataclasses import replace

from gpugate.core.policy import Admission, Policy, QueueOrder

_WHOLE = Policy(admission=Admission.WHOLE_GPU, order=QueueOrder.FIFO, aging_per_hour=0.0)
_MEMORY = Policy(admission=Admission.MEMORY_ONLY, order=QueueOrder.FIFO, aging_per_hour=0.0)
_GPUGATE = Policy()
BOUND_S = 1800.0  # the backfill bound of the *-bounded variants

POLICIES: dict[str, tuple[Policy, str]] = {
    "fifo": (
        replace(_WHOLE, backfill=False),
        "one job per GPU, strict submission order (task-spooler and simple queues)",
    ),
    "fifo-backfill": (
        _WHOLE,
        "one job per GPU, submission order; later jobs start around a blocked head",
    ),
    "fifo-backfill-bounded": (
        replace(_WHOLE, max_head_wait_s=BOUND_S),
        "as fifo-backfill, but a head that waited 30 min gets its GPUs drained",
    ),
    "whole-gpu-priority": (
        replace(_WHOLE, order=QueueOrder.PRIORITY, aging_per_hour=1.0),
        "one job per GPU, priority with aging, backfill",
    ),
    "memory-only": (
        replace(_MEMORY, backfill=False),
        "starts a job where free memory now is enough (gpusched-like), strict order",
    ),
    "memory-only-backfill": (_MEMORY, "free-memory admission, submission order, backfill"),
    "memory-only-priority": (
        replace(_MEMORY, order=QueueOrder.PRIORITY, aging_per_hour=1.0),
        "free-memory admission, priority with aging, backfill",
    ),
    "gpugate-fifo": (
        replace(_GPUGATE, order=QueueOrder.FIFO, aging_per_hour=0.0, backfill=False),
        "gpugate admission, strict submission order",
    ),
    "gpugate-no-aging": (
        replace(_GPUGATE, aging_per_hour=0.0),
        "gpugate admission, fixed priorities (no aging), backfill",
    ),
    "gpugate-no-backfill": (
        replace(_GPUGATE, backfill=False),
        "gpugate admission, priority with aging, no backfill",
    ),
    "gpugate": (
        _GPUGATE,
        "gpugate admission (utilization + memory headroom, reservations), priority with"
        " aging, backfill: what `gpugate serve` runs",
    ),
    "gpugate-bounded": (
        replace(_GPUGATE, max_head_wait_s=BOUND_S),
        "as gpugate, but a head that waited 30 min gets its GPUs drained (opt-in in the daemon)",
    ),
    "sjf-oracle": (
        replace(_GPUGATE, order=QueueOrder.SHORTEST_FIRST),
        "gpugate admission, shortest job first by its TRUE run time: an upper bound",
    ),
}

DEFAULT_COMPARISON = ("fifo", "fifo-backfill", "memory-only-backfill", "gpugate", "sjf-oracle")


class UnknownPolicy(ValueError):
    pass


def policy_named(name: str) -> Policy:
    try:
        return POLICIES[name][0]
    except KeyError:
        known = ", ".join(POLICIES)
        raise UnknownPolicy(f"unknown policy {name!r}; known: {known}") from None
