"""Each GPU's recent load for charts: every sample for an hour, a point a minute beyond."""

from __future__ import annotations

from gpugate.daemon.timeline import FINE_POINTS, GpuTimeline
from gpugate.model import GpuSnapshot, MachineSnapshot
from gpugate.units import GiB


def sample(at: float, util: float | None, mem_gib: float) -> MachineSnapshot:
    gpu = GpuSnapshot(0, "GPU-0", "sim", 24 * GiB, int(mem_gib * GiB), util, ())
    return MachineSnapshot("sim", at, (gpu,))


def test_recent_samples_come_back_whole() -> None:
    timeline = GpuTimeline()
    for t in range(10):
        timeline.add(sample(1000.0 + t, 10.0 * t, 1))
    points = timeline.series("GPU-0", 5, now=1009.0)
    assert [p[0] for p in points] == [1004.0, 1005.0, 1006.0, 1007.0, 1008.0, 1009.0]
    assert points[-1][1] == 90.0


def test_beyond_the_hour_each_minute_is_its_mean() -> None:
    """Two hours of samples, utilization = minute number: past the fine buffer, a day's
    view gives one point a minute, each the mean of its samples."""
    timeline = GpuTimeline()
    for t in range(2 * 3600):
        timeline.add(sample(float(t), float(t // 60), 2 if t % 2 else 4))
    assert len(timeline.fine["GPU-0"]) == FINE_POINTS
    day = timeline.series("GPU-0", 86400, now=7199.0)
    assert len(day) == 120
    assert day[0] == (0.0, 0.0, 3 * GiB)  # the first minute: util 0, memory 2 and 4 GiB
    assert day[-1][1] == 119.0  # the minute in progress, as it stands


def test_a_gpu_without_utilization_keeps_its_memory() -> None:
    timeline = GpuTimeline()
    for t in range(61):
        timeline.add(sample(float(t), None, 5))
    assert timeline.series("GPU-0", 86400, now=61.0)[0] == (0.0, None, 5 * GiB)
