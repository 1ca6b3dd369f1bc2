"""The real runner: each job in its own session under the shim, logs to files."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

import psutil

from gpugate.model import Job
from gpugate.runner.base import ExitRecord, Launched, LaunchError

SHIM_PATH = Path(__file__).with_name("shim.sh")
SHELL = "/bin/sh"
EXIT_FILE = "exit"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
START_TIME_TOLERANCE_S = 1.0


class LocalRunner:
    """Launches jobs as real processes on this machine."""

    def __init__(self) -> None:
        self._children: set[int] = set()

    def launch(self, job: Job, env: dict[str, str], job_dir: Path) -> Launched:
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / EXIT_FILE).unlink(missing_ok=True)
        if not os.path.isdir(job.spec.cwd):
            raise LaunchError(f"working directory {job.spec.cwd} does not exist")
        argv = [SHELL, str(SHIM_PATH), str(job_dir / EXIT_FILE), job.spec.command]
        with open(job_dir / STDOUT_FILE, "ab") as out, open(job_dir / STDERR_FILE, "ab") as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=job.spec.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                raise LaunchError(f"cannot start the job: {exc}") from exc
        # the daemon reaps its children itself (waitpid in the tick); Popen must not
        proc.returncode = 0
        self._children.add(proc.pid)
        return Launched(proc.pid, process_start_time(proc.pid) or 0.0)

    def signal(self, job: Job, signum: int) -> bool:
        if job.pid is None:
            return False
        try:
            os.killpg(job.pid, signum)
        except ProcessLookupError:
            return False  # a normal race: it ended on its own
        return True

    def find_orphan(self, job: Job, job_dir: Path) -> Launched | None:
        exit_path = str(job_dir / EXIT_FILE)  # the shim's first argument names its job
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if exit_path in (proc.info.get("cmdline") or []):
                pid = int(proc.info["pid"])
                return Launched(pid, process_start_time(pid) or 0.0)
        return None

    def collect(self) -> None:
        self._children -= reap(self._children)

    def exit_record(self, job: Job, job_dir: Path) -> ExitRecord | None:
        return read_exit_file(job_dir / EXIT_FILE)

    def is_alive(self, job: Job) -> bool:
        if job.pid is None:
            return False
        started = process_start_time(job.pid)
        if started is None:
            return False
        if job.pid_start_time and abs(started - job.pid_start_time) > START_TIME_TOLERANCE_S:
            return False  # the pid was reused by an unrelated process
        return not _is_zombie(job.pid)


def read_exit_file(path: Path) -> ExitRecord | None:
    """The shim's record: the job's shell status (128+N: killed by signal N); the file's
    mtime is when the job ended. None while absent or still being written."""
    try:
        text = path.read_text()
        ended_at = path.stat().st_mtime
        return ExitRecord(int(text.split()[0]), ended_at)
    except (OSError, ValueError, IndexError):
        return None


def process_start_time(pid: int) -> float | None:
    """When the process started (epoch seconds), or None if it is gone.

    On Linux straight from /proc (tens of microseconds: it is on every launch's path);
    elsewhere through psutil. Both give the same value, so either can check the other.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # the command name may hold spaces and parentheses: fields start after the last ')'
            fields = stat.read().rsplit(b")", 1)[1].split()
        return _boot_time() + int(fields[19]) / _CLOCK_TICKS
    except FileNotFoundError:
        return None
    except (OSError, IndexError, ValueError):
        pass
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@functools.cache
def _boot_time() -> float:
    return float(psutil.boot_time())


def _is_zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def reap(pids: set[int]) -> set[int]:
    """Collect those of our exited children (shims) so they do not linger as zombies.

    Only the given pids: ``waitpid(-1)`` would steal the status of other subprocesses
    (e.g. nvidia-smi). Their exit codes are in the exit files, not in the status.
    """
    reaped = set()
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid  # not our child (re-adopted after a restart) or already reaped
        if done:
            reaped.add(pid)
    return reaped


def session_of(pid: int) -> int | None:
    """The session id of a process (its job's shim pid, for gpugate's jobs)."""
    try:
        return os.getsid(pid)
    except OSError:
        return None
