"""/metrics, parsed with the Prometheus client's own parser, against what the API says."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gpugate.client import ApiError
from gpugate.units import GiB
from tests.integration.conftest import RunningDaemon, wait_for

pytestmark = pytest.mark.integration


def scrape(daemon: RunningDaemon) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = daemon.client._call("GET", "/metrics").decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str
) -> float:
    matches = [v for got, v in samples[name] if all(got.get(k) == x for k, x in labels.items())]
    assert len(matches) == 1, (name, labels, samples.get(name))
    return matches[0]


def test_metrics_show_the_gpus_the_jobs_and_the_counters(daemon: RunningDaemon) -> None:
    held = daemon.submit_using(16, 40, seconds=60)
    daemon.wait_state(held, "running", timeout_s=20)
    wait_for(lambda: daemon.client.gpus().gpus[0].mem_used_bytes >= 16 * GiB)
    waits = daemon.submit("sleep 1", mem_bytes=10 * GiB, util_pct=10)  # 16 + 10 > 21.6
    wait_for(lambda: "mem" in daemon.client.show(waits).job.reason)
    samples = scrape(daemon)
    gpu = daemon.client.gpus().gpus[0]
    assert value(samples, "gpugate_gpu_memory_total_bytes", gpu="0") == gpu.mem_total_bytes
    assert value(samples, "gpugate_gpu_memory_used_bytes", gpu="0") >= 16 * GiB
    assert value(samples, "gpugate_gpu_memory_headroom_percent", gpu="0") == 90
    assert value(samples, "gpugate_gpu_jobs", gpu="0") == 1
    assert value(samples, "gpugate_jobs", state="running") == 1
    assert value(samples, "gpugate_jobs", state="queued") == 1
    assert value(samples, "gpugate_waiting_jobs", reason="memory") == 1
    assert value(samples, "gpugate_admissions_total") == 1
    assert value(samples, "gpugate_queue_wait_seconds_count") == 1
    assert value(samples, "gpugate_scheduler_pass_seconds_count") >= 1
    assert value(samples, "gpugate_scheduler_pass_seconds_bucket", le="+Inf") == value(
        samples, "gpugate_scheduler_pass_seconds_count"
    )
    daemon.client.cancel(held)
    daemon.wait_state(waits, "succeeded", timeout_s=30)
    after = scrape(daemon)
    assert value(after, "gpugate_admissions_total") == 2
    assert value(after, "gpugate_jobs_ended_total", state="succeeded") == 1
    assert value(after, "gpugate_jobs_ended_total", state="cancelled") == 1


def test_gpu_history_follows_the_load(daemon: RunningDaemon) -> None:
    """The chart data: injected outside load shows in the recent points, with the lines."""
    daemon.cli("sim", "load", "--gpu", "0", "--mem", "6GiB", "--util", "55", check=True)
    wait_for(
        lambda: any(
            util == 55 and mem >= 6 * GiB
            for _, util, mem in daemon.client.gpu_history(60).gpus[0].points
        ),
        what="the load in the history",
    )
    series = daemon.client.gpu_history(60).gpus[0]
    assert (series.util_headroom_pct, series.mem_headroom_pct) == (90, 90)
    assert series.points == sorted(series.points)  # in time order
    with pytest.raises(ApiError, match="between 0 and 86400"):  # a day at most
        daemon.client.gpu_history(90000)


def test_a_jobs_gpu_use_is_kept_for_its_chart(daemon: RunningDaemon) -> None:
    job = daemon.submit_using(6, 35, seconds=30)
    wait_for(
        lambda: any(mem >= 6 * GiB for _, _, mem in daemon.client.job_usage(job).usage.points),
        what="the job's use in its history",
    )
    points = daemon.client.job_usage(job).usage.points
    assert points == sorted(points)
    assert points[-1][1] == 35  # utilization as the simulated GPU reports it
    daemon.client.cancel(job)
