"""What the daemon counts for its metrics, as plain numbers (rendered by daemon.metrics).

Counters only grow; histograms keep cumulative bucket counts, as Prometheus wants them.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

# seconds: a pass is milliseconds; a queue wait is seconds to days
PASS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
WAIT_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0)


@dataclass(slots=True)
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; +Inf last
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, count of observations at or under it), +Inf last."""
        out, running = [], 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass(slots=True)
class DaemonStats:
    admissions: int = 0  # jobs started on GPUs or CPU
    preemptions: Counter[str] = field(default_factory=Counter)  # by rung
    ended: Counter[str] = field(default_factory=Counter)  # by final state
    pass_seconds: Histogram = field(default_factory=lambda: Histogram(PASS_BUCKETS))
    queue_wait_seconds: Histogram = field(default_factory=lambda: Histogram(WAIT_BUCKETS))


def reason_kind(reason: str) -> str:
    """A waiting reason as a label: the few kinds a dashboard or an alert cares for."""
    text = reason.lower()
    for needle, kind in (
        ("quota", "quota"),
        ("held:", "held"),  # by its user (a GPU "held for" or "held exclusively" is not)
        ("after job", "dependency"),
        ("made room for", "preempted"),
        ("kept free for", "drained"),
        ("backfill stopped", "drained"),
        ("held for job", "drained"),
        ("behind job", "behind_head"),
        (" mem ", "memory"),
        ("free memory", "memory"),
        (" util ", "utilization"),
        ("held exclusively", "exclusive"),
        ("reserved for job", "exclusive"),
        ("runs job", "exclusive"),
        ("not idle", "exclusive"),
    ):
        if needle in text:
            return kind
    return "other"
