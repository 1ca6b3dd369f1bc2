"""What the daemon needs from a runner; the real one and the fake one both provide it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gpugate.model import Job


class LaunchError(RuntimeError):
    """The job could not be started at all (missing cwd, no shell): it fails at once."""


@dataclass(frozen=True, slots=True)
class Launched:
    pid: int  # the shim: session and process-group leader of the job
    start_time: float  # the process's start time, to tell it from a later reuse of the pid


@dataclass(frozen=True, slots=True)
class ExitRecord:
    code: int  # the shell's status: 0-125 from exit(), 128+N when killed by signal N
    ended_at: float


class Runner(Protocol):
    def launch(self, job: Job, env: dict[str, str], job_dir: Path) -> Launched: ...

    def signal(self, job: Job, signum: int) -> bool:
        """Send ``signum`` to the job's process group; False if it is already gone."""
        ...

    def exit_record(self, job: Job, job_dir: Path) -> ExitRecord | None:
        """The exit the shim recorded, or None while the job runs (or if it left none)."""
        ...

    def is_alive(self, job: Job) -> bool:
        """Is the job's shim still running (the same process, not a reused pid)?"""
        ...

    def find_orphan(self, job: Job, job_dir: Path) -> Launched | None:
        """A shim of this job running without the daemon knowing its pid (the daemon died
        between launching it and storing the pid), or None."""
        ...

    def collect(self) -> None:
        """Reap the runner's own exited children (their exit codes are in the records)."""
        ...
