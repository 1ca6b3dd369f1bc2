"""The policies the simulator compares, by name. Each is a plain ``core.Policy``: the
daemon could run any of them (``gpugate serve`` runs ``gpugate``)."""

from __future__ import annotations

from dataclasses import replace

from gpugate.core.policy import Admission, GpuLimits, Policy, QueueOrder

_PEER = Policy(order=QueueOrder.FIFO, aging_per_hour=0.0, hold_for_head=False, preemption=False)
_WHOLE = replace(_PEER, admission=Admission.WHOLE_GPU)
_MEMORY = replace(_PEER, admission=Admission.MEMORY_ONLY)
_GPUGATE = Policy()
NO_SHARE_LINE = GpuLimits(share_util_pct=100.0)  # co-locate up to the headroom line
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
    "fifo-backfill-easy": (
        replace(_WHOLE, hold_for_head=True),
        "as fifo-backfill, but backfill on the head's GPUs only for jobs expected (from"
        " history) to end before it can start: EASY backfill, as Slurm does",
    ),
    "fifo-backfill-bounded": (
        replace(_WHOLE, max_head_wait_s=BOUND_S),
        "as fifo-backfill, but a head that waited 30 min gets its GPUs drained",
    ),
    "whole-gpu-priority": (
        replace(_WHOLE, order=QueueOrder.PRIORITY, aging_per_hour=1.0, run_time_weight=0.0),
        "one job per GPU, priority with aging, backfill",
    ),
    "memory-only": (
        replace(_MEMORY, backfill=False),
        "starts a job where free memory now is enough (gpusched-like), strict order",
    ),
    "memory-only-backfill": (_MEMORY, "free-memory admission, submission order, backfill"),
    "memory-only-priority": (
        replace(_MEMORY, order=QueueOrder.PRIORITY, aging_per_hour=1.0, run_time_weight=0.0),
        "free-memory admission, priority with aging, backfill",
    ),
    "gpugate-fifo": (
        replace(_GPUGATE, order=QueueOrder.FIFO, aging_per_hour=0.0, backfill=False),
        "gpugate admission, strict submission order",
    ),
    "gpugate-no-aging": (
        replace(_GPUGATE, aging_per_hour=0.0),
        "as gpugate, with fixed priorities (no aging)",
    ),
    "gpugate-no-backfill": (
        replace(_GPUGATE, backfill=False),
        "as gpugate, without backfill",
    ),
    "gpugate-no-runtime": (
        replace(_GPUGATE, run_time_weight=0.0),
        "as gpugate, without the expected run time in the order (priority with aging only)",
    ),
    "gpugate-hold": (
        replace(_GPUGATE, hold_for_head=True),
        "as gpugate, but backfill on the head's GPUs only for jobs expected to end before"
        " it can start (EASY backfill; opt-in in the daemon: `hold_for_head`)",
    ),
    "gpugate-no-share-line": (
        replace(_GPUGATE, limits=NO_SHARE_LINE),
        "as gpugate, co-locating up to the 90% headroom line (no 50% share line)",
    ),
    "gpugate-first-cut": (
        replace(
            _GPUGATE,
            limits=NO_SHARE_LINE,
            run_time_weight=0.0,
            aging_per_hour=1.0,
            hold_for_head=False,
        ),
        "gpugate as first built: headroom only, priority with aging of 1 point per hour",
    ),
    "gpugate": (
        _GPUGATE,
        "gpugate admission (utilization + memory headroom, 50% share line, reservations),"
        " priority with aging and expected run time from history, greedy backfill:"
        " what `gpugate serve` runs",
    ),
    "gpugate-no-preemption": (
        replace(_GPUGATE, preemption=False),
        "as gpugate, never preempting (as when every job keeps the default --preempt never)",
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
# The one policy the simulator tells true run times; every other sees what history says.
ORACLE_POLICIES = frozenset({"sjf-oracle"})


class UnknownPolicy(ValueError):
    pass


def policy_named(name: str) -> Policy:
    try:
        return POLICIES[name][0]
    except KeyError:
        known = ", ".join(POLICIES)
        raise UnknownPolicy(f"unknown policy {name!r}; known: {known}") from None
