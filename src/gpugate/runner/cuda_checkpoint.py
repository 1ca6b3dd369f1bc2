"""Transparent suspend through NVIDIA's ``cuda-checkpoint`` utility (driver 550 or newer).

``cuda-checkpoint --toggle --pid P`` moves a CUDA process's GPU memory to host memory and
releases the device (the process stays alive; a CUDA call it makes meanwhile blocks), and
the same call brings it back. With it, suspending a job frees its GPU *memory* as well as
its compute: gpugate toggles each of the job's GPU processes before SIGSTOP, and after
SIGCONT on resume (the restore runs on a thread inside the process, which must be running).

Used when ``cuda_checkpoint = "auto"`` (the default) finds the binary on PATH and the
driver is 550 or newer, or when the setting names the binary (then no driver check: how
the tests drive a stand-in on simulated GPUs). ``"off"`` never uses it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

MIN_DRIVER_MAJOR = 550  # the first driver whose cuda-checkpoint has --toggle
TIMEOUT_S = 60.0  # moving tens of GiB to host memory takes seconds


@dataclass(frozen=True, slots=True)
class CudaCheckpoint:
    binary: str

    @classmethod
    def from_setting(cls, setting: str) -> CudaCheckpoint | None:
        """``off``: None; ``auto``: the binary on PATH if the driver allows; else a path."""
        if setting == "off":
            return None
        if setting != "auto":
            return cls(setting)
        found = shutil.which("cuda-checkpoint")
        if found is None or (driver_major() or 0) < MIN_DRIVER_MAJOR:
            return None
        return cls(found)

    def toggle(self, pids: Iterable[int]) -> dict[int, str | None]:
        """Toggle each process (GPU memory to host, or back): pid -> None, or the error."""
        return {pid: self._toggle_one(pid) for pid in pids}

    def checkpointed(self, pids: Iterable[int]) -> list[int]:
        """Those of ``pids`` whose GPU memory is on host memory now (``--get-state`` says
        "checkpointed"): after a daemon restart, the processes a resume must toggle back
        (toggling any other would move a running process's memory *off* the GPU)."""
        return [pid for pid in pids if self.state(pid) == "checkpointed"]

    def state(self, pid: int) -> str | None:
        """running, locked, checkpointed or failed; None for a process without CUDA."""
        done = self._run("--get-state", pid)
        if isinstance(done, str) or done.returncode != 0:
            return None
        return done.stdout.strip().lower() or None

    def _toggle_one(self, pid: int) -> str | None:
        done = self._run("--toggle", pid)
        if isinstance(done, str):
            return f"pid {pid}: {done}"
        if done.returncode != 0:
            return f"pid {pid}: {(done.stderr or done.stdout).strip()[:200] or 'failed'}"
        return None

    def _run(self, action: str, pid: int) -> subprocess.CompletedProcess[str] | str:
        """The utility's answer for one process, or why it could not be run."""
        try:
            return subprocess.run(
                [self.binary, action, "--pid", str(pid)],
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)


def driver_major() -> int | None:
    """The NVIDIA driver's major version from ``nvidia-smi``, or None without one."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        return int(out.split()[0].split(".")[0])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
