"""A runner that starts nothing: it records what the daemon asked and lets a test (or a
simulator) decide when each job ends. First-class, like supervisor's recording fakes."""

from __future__ import annotations

import signal as signals
from dataclasses import dataclass, field
from pathlib import Path

from gpugate.model import Job
from gpugate.runner.base import ExitRecord, Launched, LaunchError


@dataclass
class FakeRunner:
    launched: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # (job id, env)
    signals: list[tuple[int, int]] = field(default_factory=list)  # (job id, signal number)
    fail_launch: dict[int, str] = field(default_factory=dict)  # job id -> LaunchError text
    ignores_sigterm: set[int] = field(default_factory=set)
    _exits: dict[int, ExitRecord] = field(default_factory=dict)
    _alive: set[int] = field(default_factory=set)
    _next_pid: int = 10_000

    def launch(self, job: Job, env: dict[str, str], job_dir: Path) -> Launched:
        if job.id in self.fail_launch:
            raise LaunchError(self.fail_launch[job.id])
        self.launched.append((job.id, env))
        self._exits.pop(job.id, None)  # as the real shim's exit file is started afresh
        self._alive.add(job.id)
        self._next_pid += 1
        return Launched(self._next_pid, float(self._next_pid))

    def signal(self, job: Job, signum: int) -> bool:
        if job.id not in self._alive:
            return False
        self.signals.append((job.id, signum))
        if signum == signals.SIGKILL:
            self._alive.discard(job.id)  # the shim dies with its group: no exit record
        elif signum == signals.SIGTERM and job.id not in self.ignores_sigterm:
            self.finish(job.id, 128 + signals.SIGTERM, 0.0)
        return True

    def exit_record(self, job: Job, job_dir: Path) -> ExitRecord | None:
        return self._exits.get(job.id)

    def is_alive(self, job: Job) -> bool:
        return job.id in self._alive

    def find_orphan(self, job: Job, job_dir: Path) -> Launched | None:
        return None

    def collect(self) -> None:
        pass

    # ------------------------------------------------------------- test controls
    def finish(self, job_id: int, code: int, at: float) -> None:
        """The job exits with ``code``; its shim records it."""
        self._alive.discard(job_id)
        self._exits[job_id] = ExitRecord(code, at)

    def vanish(self, job_id: int) -> None:
        """The job and its shim disappear without a record (e.g. killed with the daemon)."""
        self._alive.discard(job_id)

    def running(self) -> set[int]:
        return set(self._alive)
