"""The expected run time rule, shared by the daemon and the simulator."""

from __future__ import annotations

import pytest

from gpugate.core.runtime import RECENT_RUNS, expected_run_s
from gpugate.sim.history import RunHistory


def test_no_run_no_estimate() -> None:
    assert expected_run_s([]) is None


def test_the_median_resists_one_odd_run() -> None:
    assert expected_run_s([100.0, 110.0, 9_000.0]) == 110.0
    assert expected_run_s([100.0, 120.0]) == pytest.approx(110.0)


def test_only_the_most_recent_runs_count() -> None:
    """A command that got slower: 30 old runs of 10 s, then 20 of 100 s."""
    runs = [10.0] * 30 + [100.0] * RECENT_RUNS
    assert expected_run_s(runs) == 100.0


def test_the_simulators_history_follows_the_same_rule() -> None:
    history = RunHistory(prior=[("train", 10.0), ("eval", 5.0), ("train", 30.0)])
    assert history.expected_run_s("train") == pytest.approx(20.0)
    assert history.expected_run_s("never run") is None
    for _ in range(RECENT_RUNS):
        history.record("train", 50.0)
    assert history.expected_run_s("train") == 50.0
