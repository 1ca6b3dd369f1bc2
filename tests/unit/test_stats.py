"""The daemon's counters for /metrics: histogram buckets and reason kinds."""

from __future__ import annotations

import pytest

from gpugate.daemon.stats import Histogram, reason_kind


def test_histogram_buckets_are_cumulative_with_inf_last() -> None:
    histogram = Histogram((1.0, 10.0))
    for seconds in (0.5, 1.0, 5.0, 50.0):
        histogram.observe(seconds)
    assert histogram.cumulative() == [("1.0", 2), ("10.0", 3), ("+Inf", 4)]
    assert histogram.total == pytest.approx(56.5)


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("GPU0 mem 16.0 GiB + 10.0 GiB > 21.6 GiB", "memory"),
        ("GPU1 util 93% > 90%", "utilization"),
        ("quota: its owner's jobs hold 4 of the 4 GPUs a user may hold at once", "quota"),
        ("after job 12 (running)", "dependency"),
        ("held: `gpugate release` to queue it", "held"),
        ("made room for job 7: waits until it starts", "preempted"),
        ("GPU0 free memory 1.0 GiB < 4.0 GiB", "memory"),
        ("GPU0 held exclusively by job 3", "exclusive"),
        ("GPU1 kept free for job 9 (waited past backfill bound)", "drained"),
        ("something new", "other"),
    ],
)
def test_waiting_reasons_fall_into_a_few_kinds(reason: str, kind: str) -> None:
    assert reason_kind(reason) == kind
