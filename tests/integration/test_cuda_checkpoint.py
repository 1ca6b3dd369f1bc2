"""Transparent suspend through cuda-checkpoint, on simulated GPUs with a stand-in binary
(the real one needs an NVIDIA driver >= 550: see the `gpu`-marked test at the end)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gpugate.runner.cuda_checkpoint import CudaCheckpoint
from gpugate.units import GiB
from tests.integration.conftest import RunningDaemon, wait_for

pytestmark = pytest.mark.integration

# Like the real utility, `--toggle --pid P` moves process P's GPU memory to host memory
# and back, and `--get-state --pid P` prints "running" or "checkpointed". On simulated
# GPUs a process's memory is its proc-P.json in the channel.
STAND_IN = """#!{python}
import sys
from pathlib import Path
channel = Path({channel!r})
pid = sys.argv[sys.argv.index("--pid") + 1]
on_gpu, on_host = channel / f"proc-{{pid}}.json", channel / f"proc-{{pid}}.on-host"
if "--get-state" in sys.argv:
    if not {get_state}:
        print("unrecognized option --get-state", file=sys.stderr)
        sys.exit(2)
    if not (on_gpu.exists() or on_host.exists()):
        print(f"pid {{pid}} is not a CUDA process", file=sys.stderr)
        sys.exit(1)
    print("checkpointed" if on_host.exists() else "running")
    sys.exit(0)
with open({log!r}, "a") as log:
    if on_gpu.exists():
        on_gpu.rename(on_host)
        log.write(f"checkpoint {{pid}}\\n")
    elif on_host.exists():
        on_host.rename(on_gpu)
        log.write(f"restore {{pid}}\\n")
    else:
        print(f"pid {{pid}} is not a CUDA process", file=sys.stderr)
        sys.exit(1)
"""


def stand_in(home: Path, log: Path, get_state: bool = True) -> Path:
    """``get_state=False``: like the driver-550 utility, which has only --toggle."""
    path = home.parent / f"cuda-checkpoint-{home.name}"
    path.write_text(
        STAND_IN.format(
            python=sys.executable, channel=str(home / "sim"), log=str(log), get_state=get_state
        )
    )
    path.chmod(0o755)
    return path


def test_a_transparently_suspended_job_gives_its_memory_to_an_urgent_one(
    make_daemon: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """Job 1 (16 GiB, --preempt suspend) runs; an urgent job needs 10 GiB (16 + 10 >
    21.6). Suspend frees memory here, so job 1 is suspended with its memory moved to host;
    the urgent job runs; then job 1's memory comes back and it resumes."""
    log = tmp_path / "toggles.log"
    home = tmp_path / "d0"  # make_daemon's first home
    binary = stand_in(home, log)
    daemon = make_daemon(ramp_timeout_s=0.5, top_config=f'cuda_checkpoint = "{binary}"\n')
    held = daemon.submit_using(16, 30, preempt="suspend")
    daemon.wait_state(held, "running")
    wait_for(lambda: daemon.client.gpus().gpus[0].mem_used_bytes >= 16 * GiB)
    urgent = daemon.submit("sleep 1", mem_bytes=10 * GiB, util_pct=30, priority=5)

    suspended = daemon.wait_state(held, "suspended", timeout_s=20)
    assert "GPU memory moved to host memory by cuda-checkpoint" in suspended.reason
    daemon.wait_state(urgent, "running", "succeeded", timeout_s=20)
    daemon.wait_state(urgent, "succeeded", timeout_s=20)
    daemon.wait_state(held, "running", timeout_s=20)
    assert [line.split()[0] for line in log.read_text().splitlines()] == [
        "checkpoint",
        "restore",
    ]
    wait_for(lambda: daemon.client.gpus().gpus[0].mem_used_bytes >= 16 * GiB)
    daemon.client.cancel(held)


@pytest.mark.parametrize("get_state", [True, False], ids=["get-state", "toggle-only"])
def test_after_a_daemon_restart_resume_restores_only_what_was_moved(
    make_daemon: Callable[..., RunningDaemon], tmp_path: Path, get_state: bool
) -> None:
    """The daemon is killed while job 1 is suspended with its memory on host, so the
    pids it toggled are forgotten. At resume it asks cuda-checkpoint which of the job's
    processes are checkpointed and toggles only those: the shell around the GPU process
    is left alone (toggling it would fail, or move a running process's memory away)."""
    log = tmp_path / "toggles.log"
    binary = stand_in(tmp_path / "d0", log, get_state)
    daemon = make_daemon(ramp_timeout_s=0.5, top_config=f'cuda_checkpoint = "{binary}"\n')
    held = daemon.submit_using(16, 30, preempt="suspend")
    daemon.wait_state(held, "running")
    wait_for(lambda: daemon.client.gpus().gpus[0].mem_used_bytes >= 16 * GiB)
    urgent = daemon.submit("sleep 4", mem_bytes=10 * GiB, util_pct=30, priority=5)
    daemon.wait_state(held, "suspended", timeout_s=20)
    daemon.stop(signal.SIGKILL)
    daemon.start()

    daemon.wait_state(urgent, "succeeded", timeout_s=30)
    resumed = daemon.wait_state(held, "running", timeout_s=20)
    assert "cuda-checkpoint" not in resumed.reason  # no toggle failed
    moves = [line.split() for line in log.read_text().splitlines()]
    assert [m[0] for m in moves] == ["checkpoint", "restore"]
    assert moves[0][1] == moves[1][1]  # the same process, and only it
    wait_for(lambda: daemon.client.gpus().gpus[0].mem_used_bytes >= 16 * GiB)
    daemon.client.cancel(held)


def test_without_it_suspend_keeps_memory_and_cannot_help_a_memory_bound_job(
    make_daemon: Callable[..., RunningDaemon],
) -> None:
    daemon = make_daemon(ramp_timeout_s=0.5, top_config='cuda_checkpoint = "off"\n')
    held = daemon.submit_using(16, 30, preempt="suspend")
    daemon.wait_state(held, "running")
    urgent = daemon.submit("sleep 1", mem_bytes=10 * GiB, util_pct=30, priority=5)
    # the pass that refused it (with the reason) is the one that would have preempted
    wait_for(lambda: "GPU0 mem" in daemon.client.show(urgent).job.reason)
    assert daemon.state(held) == "running"
    assert daemon.state(urgent) == "queued"
    daemon.client.cancel(held)


@pytest.mark.gpu
def test_the_real_cuda_checkpoint_is_found_where_the_driver_allows() -> None:
    """On a machine with an NVIDIA driver >= 550 and cuda-checkpoint on PATH."""
    if shutil.which("cuda-checkpoint") is None or shutil.which("nvidia-smi") is None:
        pytest.skip("no cuda-checkpoint or no NVIDIA driver here")
    found = CudaCheckpoint.from_setting("auto")
    assert found is not None
    bogus = max(1, int(subprocess.check_output(["sh", "-c", "echo $$"]).decode()))
    assert found.toggle([bogus])[bogus] is not None  # not a CUDA process: an error, no crash
