"""powermetrics parsing on a real M4 Max sample (tests/data/gpu-output) and the monitor."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gpugate.gpu.apple import (
    POWERMETRICS_ARGS,
    PowermetricsMonitor,
    parse_powermetrics,
    system_memory,
)
from gpugate.gpu.base import MonitorUnavailable
from gpugate.units import GiB

DATA = Path(__file__).resolve().parents[1] / "data" / "gpu-output"
SAMPLE = (
    DATA / "powermetrics-text__BinSquare-powermetrics-go__powermetrics_sample.log"
).read_text()
CPU_SUMMARY_POWER = "CPU Power: 954 mW\nGPU Power: 28 mW\n"  # the first of the two "GPU Power"


def test_real_sample_gives_one_gpu() -> None:
    snap = parse_powermetrics(SAMPLE, mem_total_bytes=64 * GiB, mem_used_bytes=20 * GiB)

    assert snap.backend == "apple"
    [gpu] = snap.gpus
    assert (gpu.index, gpu.uuid, gpu.name) == (0, "apple-gpu-0", "Apple GPU (Mac16,6)")
    # "GPU HW active residency:   1.63% (338 MHz: 1.6% 618 MHz:   0% ...)"
    assert gpu.util_pct == 1.63
    assert gpu.power_w == pytest.approx(0.028)  # "GPU Power: 28 mW"
    assert (gpu.mem_total_bytes, gpu.mem_used_bytes) == (64 * GiB, 20 * GiB)
    assert (gpu.processes, gpu.temperature_c) == ((), None)


def test_sample_time_stamps_the_snapshot() -> None:
    snap = parse_powermetrics(SAMPLE, mem_total_bytes=1, mem_used_bytes=0)

    # "*** Sampled system activity (Sat Nov  8 15:54:21 2025 +0900) ..."
    expected = datetime(2025, 11, 8, 15, 54, 21, tzinfo=timezone(timedelta(hours=9)))
    assert snap.taken_at == expected.timestamp()
    assert (
        parse_powermetrics(SAMPLE, mem_total_bytes=1, mem_used_bytes=0, taken_at=7.0).taken_at
        == 7.0
    )


def test_power_comes_from_the_gpu_section_not_the_cpu_summary() -> None:
    assert CPU_SUMMARY_POWER in SAMPLE
    text = SAMPLE.replace(CPU_SUMMARY_POWER, "CPU Power: 954 mW\nGPU Power: 999 mW\n")

    [gpu] = parse_powermetrics(text, mem_total_bytes=1, mem_used_bytes=0).gpus

    assert gpu.power_w == pytest.approx(0.028)


def test_residency_is_the_first_percentage_not_a_frequency_bin() -> None:
    line = "GPU HW active residency:   1.63% (338 MHz: 1.6%"
    assert line in SAMPLE
    text = SAMPLE.replace(line, "GPU HW active residency:  42.50% (338 MHz: 10%")

    [gpu] = parse_powermetrics(text, mem_total_bytes=1, mem_used_bytes=0).gpus

    assert gpu.util_pct == 42.5


def test_the_last_of_several_samples_wins() -> None:
    later = SAMPLE[SAMPLE.index("*** Sampled") :].replace("  1.63% (", " 55.00% (")

    [gpu] = parse_powermetrics(SAMPLE + "\n" + later, mem_total_bytes=1, mem_used_bytes=0).gpus

    assert gpu.util_pct == 55.0


def test_idle_residency_stands_in_for_a_missing_active_line() -> None:
    text = "\n".join(line for line in SAMPLE.splitlines() if "active residency" not in line)

    [gpu] = parse_powermetrics(text, mem_total_bytes=1, mem_used_bytes=0).gpus

    assert gpu.util_pct == pytest.approx(1.63)  # 100 - "GPU idle residency:  98.37%"


def test_text_without_gpu_section_is_rejected() -> None:
    text = SAMPLE[: SAMPLE.index("**** GPU usage ****")]

    with pytest.raises(ValueError, match="GPU usage"):
        parse_powermetrics(text, mem_total_bytes=1, mem_used_bytes=0)


class FakePowermetrics:
    def __init__(self, text: str = SAMPLE) -> None:
        self.text = text
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str], timeout_s: float) -> str:
        self.calls.append(tuple(argv))
        return self.text


def test_monitor_samples_powermetrics_and_system_memory() -> None:
    runner = FakePowermetrics()
    monitor = PowermetricsMonitor(
        run=runner, memory_probe=lambda: (48 * GiB, 30 * GiB), clock=lambda: 123.0
    )

    snap = monitor.snapshot()

    assert (snap.backend, snap.taken_at) == ("apple", 123.0)
    [gpu] = snap.gpus
    assert (gpu.mem_total_bytes, gpu.mem_used_bytes, gpu.util_pct) == (48 * GiB, 30 * GiB, 1.63)
    assert len(runner.calls) == 2  # the probe in the constructor, then the snapshot
    assert runner.calls[0][-len(POWERMETRICS_ARGS) :] == POWERMETRICS_ARGS
    assert monitor.job_env({"PATH": "/usr/bin"}) == {}


def test_monitor_is_unavailable_when_powermetrics_cannot_run() -> None:
    def refuse(argv: Sequence[str], timeout_s: float) -> str:
        raise MonitorUnavailable("sudo -n powermetrics exited with 1: a password is required")

    with pytest.raises(MonitorUnavailable, match="password"):
        PowermetricsMonitor(run=refuse, memory_probe=lambda: (1, 0))


def test_monitor_turns_unreadable_output_into_unavailable() -> None:
    runner = FakePowermetrics()
    monitor = PowermetricsMonitor(run=runner, memory_probe=lambda: (1, 0))
    runner.text = "powermetrics: unrecognized sampler\n"

    with pytest.raises(MonitorUnavailable, match="cannot read powermetrics output"):
        monitor.snapshot()


def test_system_memory_is_total_and_used_bytes() -> None:
    total, used = system_memory()

    assert 0 < used <= total
