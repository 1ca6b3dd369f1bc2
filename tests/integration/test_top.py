"""`gpugate top --once`: one frame of the live view, against a real daemon."""

from __future__ import annotations

import subprocess

import pytest

from gpugate.units import GiB
from tests.integration.conftest import BIN, RunningDaemon, wait_for

pytestmark = pytest.mark.integration


def test_top_shows_the_gpus_against_their_lines_and_why_jobs_wait(
    daemon: RunningDaemon,
) -> None:
    held = daemon.submit_using(16, 40, seconds=60)
    daemon.wait_state(held, "running", timeout_s=20)
    wait_for(lambda: daemon.client.gpus().gpus[0].mem_used_bytes >= 16 * GiB)
    waits = daemon.submit("sleep 1", mem_bytes=10 * GiB, util_pct=10, priority=2)
    wait_for(lambda: "mem" in daemon.client.show(waits).job.reason)
    wide = {**daemon.env, "COLUMNS": "200"}  # not a terminal: rich reads the width here
    shown = subprocess.run(
        [str(BIN / "gpugate"), "top", "--once"], env=wide, capture_output=True, text=True
    ).stdout
    assert "simulated GPUs" in shown  # said clearly
    gpu_line = next(line for line in shown.splitlines() if "16.0 GiB / 24.0 GiB" in line)
    assert "#1" in gpu_line and "|" in gpu_line  # its job, and the headroom line
    queued_line = next(line for line in shown.splitlines() if "sleep 1" in line)
    assert "queued" in queued_line and "GPU0 mem" in queued_line
    daemon.client.cancel(held)


def test_top_refuses_a_bad_interval(daemon: RunningDaemon) -> None:
    refused = daemon.cli("top", "--interval", "0")
    assert refused.returncode != 0
    assert "--interval must be a positive number" in refused.stderr
