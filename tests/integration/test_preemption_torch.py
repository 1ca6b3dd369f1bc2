"""The PyTorch example under a real daemon: preempted by an urgent job, it checkpoints,
resumes from its checkpoint, and ends with the same weights as an uninterrupted run.
Skipped where torch is not installed (`pip install torch==2.13.0`, or `.[examples]`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gpugate.units import GiB
from tests.integration.conftest import RunningDaemon, wait_for

pytest.importorskip("torch")
pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "preemptible_torch.py"
ARGS = ["--steps", "1500", "--step-sleep", "0.002"]


def test_a_preempted_torch_run_resumes_and_ends_bit_identical(
    make_daemon: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    daemon = make_daemon(ramp_timeout_s=0.5)
    alone = tmp_path / "alone"
    alone.mkdir()
    env = {**daemon.env, "GPUGATE_CHECKPOINT": str(alone / "ckpt.pt")}
    subprocess.run(
        [sys.executable, str(EXAMPLE), *ARGS], cwd=alone, env=env, check=True,
        capture_output=True, timeout=300,
    )  # fmt: skip
    expected = json.loads((alone / "result.json").read_text())

    saved = tmp_path / "under-gpugate"
    saved.mkdir()
    training = daemon.submit(
        " ".join([sys.executable, str(EXAMPLE), *ARGS]),
        mem_bytes=16 * GiB,
        util_pct=30,
        preempt="checkpoint",
        checkpoint_path=str(saved / "ckpt.pt"),
    )
    wait_for(
        lambda: "step 200" in daemon.client.logs(training).decode(),
        timeout_s=60,
        what="training to be under way",
    )
    urgent = daemon.submit("sleep 1", mem_bytes=10 * GiB, util_pct=30, priority=5)
    daemon.wait_state(urgent, "succeeded", timeout_s=60)
    done = daemon.wait_state(training, "succeeded", "failed", timeout_s=120)
    assert done.state == "succeeded", done.reason

    output = daemon.client.logs(training).decode().splitlines()
    saved_at = [line.split()[-1] for line in output if line.startswith("checkpointed at")]
    resumed_at = [line.split()[-1] for line in output if line.startswith("resumed at")]
    assert saved_at and saved_at == resumed_at  # resumed from where it saved
    assert json.loads((saved / "result.json").read_text()) == expected
