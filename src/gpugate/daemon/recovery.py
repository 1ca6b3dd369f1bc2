"""After a restart: reconcile stored jobs with the processes that are really there.

Jobs whose shim still runs are re-adopted; those that ended while the daemon was down
have their exit code in the shim's exit file (the next tick's reaper records it); a job
stored as starting without a pid (the daemon died while launching it) is looked for by
its shim's command line; if there is none, and no exit record of this run, its process
never started, and it goes back to the queue.
"""

from __future__ import annotations

import signal
from dataclasses import replace

from gpugate.daemon.engine import Change, Engine
from gpugate.model import PreemptMode
from gpugate.runner.base import ExitRecord
from gpugate.states import JobState


def _ended_since(record: ExitRecord | None, started_at: float | None) -> bool:
    """Whether ``record`` is this run's: a job requeued before keeps its last run's exit
    file until the next launch replaces it, and that run ended before this one began."""
    return record is not None and (started_at is None or record.ended_at >= started_at)


def recover(engine: Engine) -> list[str]:
    """Fix what a crash can leave behind; return what was done, for the log."""
    notes: list[str] = []
    changes: list[Change] = []
    for job in [j for j in engine.holders() if j.pid is None]:
        job_dir = engine.paths.job_dir(job.id)
        found = engine.runner.find_orphan(job, job_dir)
        if found is not None:
            changes.append((replace(job, pid=found.pid, pid_start_time=found.start_time), None))
            notes.append(f"job {job.id}: re-adopted its shim (pid {found.pid})")
        elif not _ended_since(engine.runner.exit_record(job, job_dir), job.started_at):
            why = "the daemon stopped before its process started; queued again"
            changes.append(engine.requeue(job, engine.clock(), why))
            notes.append(f"job {job.id}: {why}")
    engine.commit(changes)
    engine.check_all_exits = True  # the first tick reaps whatever ended meanwhile
    for job in engine.holders():
        if job.state is JobState.RUNNING:
            # stored as resumed but the SIGCONT may not have been sent before the crash:
            # harmless to a job that is not stopped
            engine.runner.signal(job, signal.SIGCONT)
        if job.cancel_requested:
            engine.arm_kill(job, engine.clock())  # the grace period restarts with us
            notes.append(f"job {job.id}: was being cancelled; SIGKILL after the grace period")
        elif job.checkpoint_requested_at is not None and job.spec.preempt is PreemptMode.REQUEUE:
            engine.arm_kill(job, engine.clock())  # being stopped to make room: finish it
            notes.append(f"job {job.id}: was being stopped to make room; SIGKILL after grace")
        elif job.checkpoint_requested_at is not None and job.state is JobState.RUNNING:
            # it may still save and exit 75 (then it is requeued); else suspended after grace
            engine.checkpoint_due[job.id] = engine.clock() + engine.config.checkpoint_grace_s
            notes.append(f"job {job.id}: was asked to checkpoint; suspended if not done in time")
    return notes
