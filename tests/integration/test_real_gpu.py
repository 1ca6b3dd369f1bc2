"""The daemon on the machine's real NVIDIA GPUs (NVML). Skipped where there is none."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gpugate.gpu.base import MonitorUnavailable
from gpugate.units import GiB
from tests.integration.conftest import RunningDaemon


def _nvml_gpus() -> int:
    try:
        from gpugate.gpu.nvml import NvmlMonitor

        monitor = NvmlMonitor()
    except MonitorUnavailable:
        return 0
    try:
        return len(monitor.snapshot().gpus)
    finally:
        monitor.close()


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.integration,
    pytest.mark.skipif(_nvml_gpus() == 0, reason="no NVIDIA GPU visible through NVML"),
]


def test_a_job_runs_on_a_real_gpu_named_by_its_uuid(
    make_daemon: Callable[..., RunningDaemon],
) -> None:
    daemon = make_daemon("nvml")
    gpus = daemon.client.gpus()
    assert gpus.backend == "nvml" and gpus.gpus
    job = daemon.submit('echo "$CUDA_VISIBLE_DEVICES"', mem_bytes=1 * GiB)
    done = daemon.wait_state(job, "succeeded", timeout_s=30)
    assert daemon.client.logs(job).decode().strip() in {g.uuid for g in gpus.gpus}
    assert done.gpu_indices and 0 <= done.gpu_indices[0] < len(gpus.gpus)
