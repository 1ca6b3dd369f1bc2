"""A job that dies of GPU out-of-memory is requeued with more memory reserved, a bounded
number of times, through a real daemon on a simulated 24 GiB GPU (whose allocations fail
with CUDA's message when they do not fit, as a real device's do)."""

from __future__ import annotations

import pytest

from gpugate.units import GiB
from tests.integration.conftest import RunningDaemon, wait_for

pytestmark = pytest.mark.integration


def allocating(gib: int) -> str:
    """A job that allocates ``gib`` GiB on its GPU (failing like CUDA if it cannot)."""
    return f"gpugate sim use --mem {gib}GiB --util 10 && sleep 0.3"


def test_a_job_that_overruns_its_declaration_is_retried_with_more_until_it_fits(
    daemon: RunningDaemon,
) -> None:
    """Job 1 holds 10 GiB. Job 2 declares 4 GiB but allocates 16: 10 + 16 > 24, CUDA out
    of memory. Retried expecting 8 GiB (starts at once, fails again), then 16 GiB (waits:
    10 + 16 is over the 21.6 GiB line). Once job 1 is gone it starts, allocates its 16 GiB
    and succeeds."""
    holder = daemon.submit_using(10, 10)
    daemon.wait_state(holder, "running")
    job = daemon.submit(allocating(16), mem_bytes=4 * GiB, util_pct=10)

    waiting = wait_for(
        lambda: (v := daemon.client.show(job).job).oom_retries == 2 and v.state == "queued" and v,
        what="two out-of-memory retries",
    )
    assert waiting.mem_bytes == 16 * GiB
    assert waiting.expectation == "raised after out-of-memory"
    assert waiting.reason == "GPU0 mem 10.0 GiB + 16.0 GiB > 90% of 24.0 GiB"  # why it waits
    last_requeue = daemon.client.show(job).history[-1].reason
    assert "requeued expecting 16.0 GiB per GPU (retry 2 of 2)" in last_requeue
    assert "CUDA out of memory" in last_requeue

    daemon.client.cancel(holder)
    done = daemon.wait_state(job, "succeeded", "failed", timeout_s=20)
    assert done.state == "succeeded", done.reason
    reasons = [t.reason for t in daemon.client.show(job).history]
    assert any("(retry 1 of 2)" in r and "expecting 8.0 GiB" in r for r in reasons)


def test_retries_are_bounded_then_the_job_fails_saying_why(daemon: RunningDaemon) -> None:
    """30 GiB can never be allocated on a 24 GiB GPU: two retries, then failed."""
    job = daemon.submit(allocating(30), mem_bytes=4 * GiB, util_pct=10)
    done = daemon.wait_state(job, "failed", "succeeded", timeout_s=30)
    assert done.state == "failed"
    assert done.oom_retries == 2
    assert "out of GPU memory" in done.reason and "2 of 2 retries used" in done.reason


def test_an_ordinary_failure_is_not_retried(daemon: RunningDaemon) -> None:
    job = daemon.submit("echo 'ValueError: bad input' >&2; exit 1", mem_bytes=GiB, util_pct=5)
    done = daemon.wait_state(job, "failed", timeout_s=15)
    assert (done.oom_retries, done.reason) == (0, "exited 1")
