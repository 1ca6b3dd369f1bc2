"""After a restart: reconcile stored jobs with the processes that are really there.

Jobs whose shim still runs are re-adopted; those that ended while the daemon was down
have their exit code in the shim's exit file (the next tick's reaper records it); a job
stored as starting without a pid (the daemon died while launching it) is looked for by
its shim's command line, else marked lost.
"""

from __future__ import annotations

from dataclasses import replace

import psutil

from gpugate.daemon.engine import Change, Engine
from gpugate.lifecycle import advance
from gpugate.model import Job
from gpugate.runner.local import EXIT_FILE, process_start_time
from gpugate.states import JobState


def recover(engine: Engine) -> list[str]:
    """Fix what a crash can leave behind; return what was done, for the log."""
    notes: list[str] = []
    changes: list[Change] = []
    for job in [j for j in engine.active.values() if j.state.holds_gpus and j.pid is None]:
        exit_path = str(engine.paths.job_dir(job.id) / EXIT_FILE)
        pid = _find_shim(exit_path)
        if pid is not None:
            changes.append((replace(job, pid=pid, pid_start_time=process_start_time(pid)), None))
            notes.append(f"job {job.id}: re-adopted its shim (pid {pid}) found by command line")
        elif engine.runner.exit_record(job, engine.paths.job_dir(job.id)) is None:
            changes.append(_lost(job, engine.clock()))
            notes.append(f"job {job.id}: daemon stopped while launching it; marked lost")
    engine.commit(changes)
    engine.check_all_exits = True  # the first tick reaps whatever ended meanwhile
    for job in engine.active.values():
        if job.cancel_requested and job.state.holds_gpus:
            engine.arm_kill(job, engine.clock())  # the grace period restarts with us
            notes.append(f"job {job.id}: was being cancelled; SIGKILL after the grace period")
    return notes


def _find_shim(exit_path: str) -> int | None:
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if exit_path in cmdline:
            return int(proc.info["pid"])
    return None


def _lost(job: Job, now: float) -> Change:
    return advance(job, JobState.LOST, now, "the daemon stopped while launching it")
