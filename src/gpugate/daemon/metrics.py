"""``GET /metrics``: the daemon's state in Prometheus's text format.

A collector reads the engine at scrape time (nothing is kept twice): per-GPU utilization
and memory with the headroom lines, the load admission counts (reservations included),
jobs by state, waiting jobs by reason, and the counters and histograms of
``daemon.stats`` (admissions, preemptions, ended jobs, pass duration, queue wait).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from gpugate.daemon.engine import Engine
from gpugate.daemon.stats import Histogram, reason_kind
from gpugate.states import JobState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class EngineCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        yield from self._gpus()
        yield from self._jobs()
        yield from self._counters()

    def _gpus(self) -> Iterator[Metric]:
        engine = self.engine
        loads = engine.loads()
        labels = ["gpu", "uuid"]
        util = GaugeMetricFamily("gpugate_gpu_utilization_percent", "As seen", labels=labels)
        smooth = GaugeMetricFamily(
            "gpugate_gpu_utilization_smoothed_percent",
            "Averaged over util_window_s, reservations included: what admission compares",
            labels=labels,
        )
        used = GaugeMetricFamily("gpugate_gpu_memory_used_bytes", "As seen", labels=labels)
        total = GaugeMetricFamily("gpugate_gpu_memory_total_bytes", "Installed", labels=labels)
        counted = GaugeMetricFamily(
            "gpugate_gpu_memory_admitted_bytes",
            "Memory admission counts: seen plus reservations of jobs still ramping up",
            labels=labels,
        )
        util_line = GaugeMetricFamily(
            "gpugate_gpu_utilization_headroom_percent", "The admission line", labels=labels
        )
        mem_line = GaugeMetricFamily(
            "gpugate_gpu_memory_headroom_percent", "The admission line", labels=labels
        )
        jobs = GaugeMetricFamily("gpugate_gpu_jobs", "gpugate jobs on the GPU", labels=labels)
        for gpu in engine.snapshot.gpus:
            key = [str(gpu.index), gpu.uuid]
            load = loads[gpu.uuid]
            if gpu.util_pct is not None:
                util.add_metric(key, gpu.util_pct)
            smooth.add_metric(key, load.util_pct)
            used.add_metric(key, gpu.mem_used_bytes)
            total.add_metric(key, gpu.mem_total_bytes)
            counted.add_metric(key, load.mem_bytes)
            util_line.add_metric(key, load.limits.util_headroom_pct)
            mem_line.add_metric(key, load.limits.mem_headroom_pct)
            jobs.add_metric(key, len(load.job_ids))
        yield from (util, smooth, used, total, counted, util_line, mem_line, jobs)

    def _jobs(self) -> Iterator[Metric]:
        engine = self.engine
        by_state = Counter(j.state.value for j in engine.active.values())
        states = GaugeMetricFamily("gpugate_jobs", "Active jobs by state", labels=["state"])
        for state in JobState:
            if not state.is_terminal:
                states.add_metric([state.value], by_state.get(state.value, 0))
        yield states
        kinds = Counter(
            reason_kind(engine.reasons.get(j.id, j.reason))
            for j in engine.active.values()
            if j.state in (JobState.QUEUED, JobState.HELD)
        )
        waiting = GaugeMetricFamily(
            "gpugate_waiting_jobs", "Queued or held jobs by why they wait", labels=["reason"]
        )
        for kind, count in sorted(kinds.items()):
            waiting.add_metric([kind], count)
        yield waiting

    def _counters(self) -> Iterator[Metric]:
        stats = self.engine.stats
        yield CounterMetricFamily(
            "gpugate_admissions", "Jobs started (admitted)", value=stats.admissions
        )
        preempted = CounterMetricFamily(
            "gpugate_preemptions", "Running jobs made to yield, by rung", labels=["how"]
        )
        for how, count in sorted(stats.preemptions.items()):
            preempted.add_metric([how], count)
        yield preempted
        ended = CounterMetricFamily(
            "gpugate_jobs_ended", "Jobs that ended, by final state", labels=["state"]
        )
        for state, count in sorted(stats.ended.items()):
            ended.add_metric([state], count)
        yield ended
        yield _histogram(
            "gpugate_scheduler_pass_seconds", "Duration of a scheduling pass", stats.pass_seconds
        )
        yield _histogram(
            "gpugate_queue_wait_seconds",
            "From queued (or released) to started, per start",
            stats.queue_wait_seconds,
        )


def _histogram(name: str, documentation: str, histogram: Histogram) -> Metric:
    return HistogramMetricFamily(
        name, documentation, buckets=histogram.cumulative(), sum_value=histogram.total
    )


def render(engine: Engine) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(engine))
    return generate_latest(registry)
