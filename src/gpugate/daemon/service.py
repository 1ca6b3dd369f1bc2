"""What users ask of the daemon: validate, estimate, store, wake the loop.

Each method either does all of its work or raises ServiceError and changes nothing.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import msgspec

from gpugate.api import schemas as api
from gpugate.api.schemas import JobSubmission, SimLoadRequest
from gpugate.core.expectation import expected_use
from gpugate.core.limits import never_fits
from gpugate.core.runtime import RECENT_RUNS, expected_run_s
from gpugate.daemon.engine import Engine
from gpugate.daemon.identity import AuditLog, Authority, Peer, user_name
from gpugate.gpu.sim import SimMonitor
from gpugate.lifecycle import advance
from gpugate.model import Expectation, ExpectationSource, Job, JobSpec, PreemptMode, Transition
from gpugate.runner.local import runs_as_submitter
from gpugate.states import IllegalTransition, JobState
from gpugate.store.base import UnknownJob

HIDDEN = "(hidden)"  # what others see of a job's command with others_see_commands = false


class ServiceError(ValueError):
    """A request that cannot be done as asked; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Service:
    def __init__(self, engine: Engine, wake: Callable[[], None]) -> None:
        self.engine = engine
        self.wake = wake
        self.authority = Authority(engine.config.admin_group)
        self.audit = AuditLog(engine.paths.audit_log)

    def check_resume(self, peer: Peer, job_id: int) -> None:
        """A job the scheduler suspended to make room resumes when that room is no
        longer needed; its owner may not take the room back early (an admin may)."""
        job = self.job(job_id)
        if job.preempted_for is not None and not self.authority.is_admin(peer.uid):
            raise ServiceError(
                f"job {job_id} was suspended to make room for job {job.preempted_for}: it"
                " resumes by itself once that job no longer needs the room",
                status=409,
            )

    def require_admin(self, peer: Peer, what: str) -> None:
        if not self.authority.is_admin(peer.uid):
            why = f"only root or the admin group may {what}"
            self.audit.refused(peer, what, None, why)
            raise ServiceError(why, status=403)

    def sees_details(self, peer: Peer, owner_uid: int) -> bool:
        """Whether ``peer`` sees the command, directory and logs of a job of this owner:
        always its own and an admin; others' too unless ``others_see_commands = false``."""
        return self.engine.config.others_see_commands or self.authority.may_control(
            peer.uid, owner_uid
        )

    def as_seen_by(self, peer: Peer, view: api.JobView) -> api.JobView:
        if self.sees_details(peer, view.owner_uid):
            return view
        return msgspec.structs.replace(view, command=HIDDEN, name="")

    def detail_as_seen_by(self, peer: Peer, detail: api.JobDetail) -> api.JobDetail:
        if self.sees_details(peer, detail.job.owner_uid):
            return detail
        return msgspec.structs.replace(
            detail,
            job=self.as_seen_by(peer, detail.job),
            cwd=HIDDEN,
            stdout_path=HIDDEN,
            stderr_path=HIDDEN,
        )

    def may_read_logs(self, peer: Peer, job_id: int) -> None:
        job = self.job(job_id)
        if not self.sees_details(peer, job.spec.owner_uid):
            why = f"job {job_id} belongs to {user_name(job.spec.owner_uid)}: its logs are private"
            self.audit.refused(peer, "logs", job_id, why)
            raise ServiceError(why, status=403)

    def authorize(self, peer: Peer, action: str, job_id: int) -> Job:
        """The job, if ``peer`` may act on it (its owner, root, the admin group); else a
        403 naming who owns it, written to the audit log."""
        job = self.job(job_id)
        if self.authority.may_control(peer.uid, job.spec.owner_uid):
            return job
        why = (
            f"job {job_id} belongs to {user_name(job.spec.owner_uid)}: only its owner or an"
            f" admin may {action} it"
        )
        self.audit.refused(peer, action, job_id, why)
        raise ServiceError(why, status=403)

    # --------------------------------------------------------------------- submit
    def submit(
        self,
        submissions: Sequence[JobSubmission],
        owner_uid: int,
        env: dict[str, str] | None = None,
    ) -> list[Job]:
        """Queue jobs all together or none: a bad one refuses the whole batch.

        ``env`` is the environment of the jobs that give none; they share the one object
        (in memory and, once, in the database).
        """
        now = self.engine.clock()
        self._check_quotas(submissions, owner_uid)
        self._check_dependencies(submissions)
        history: dict[str, list[Job]] = {}
        request_env = env or {}
        last_env: dict[str, str] | None = None
        jobs = []
        for i, sub in enumerate(submissions):
            job_env = request_env if sub.env is None else sub.env
            if last_env is not None and job_env is not last_env and job_env == last_env:
                job_env = last_env  # a sweep repeats one env: keep one object in memory
            last_env = job_env
            jobs.append(self._new_job(i, sub, owner_uid, now, history, job_env))
        stored = self.engine.store.add_jobs(jobs)
        self.engine.active.update((j.id, j) for j in stored)
        self.engine.track_dependencies(stored)
        self.wake()
        return stored

    def _new_job(
        self,
        index: int,
        sub: JobSubmission,
        owner: int,
        now: float,
        history: dict[str, list[Job]],
        job_env: dict[str, str],
    ) -> Job:
        spec = JobSpec(
            command=sub.command,
            cwd=sub.cwd,
            env=job_env,
            gpus=sub.gpus,
            mem_bytes=sub.mem_bytes,
            util_pct=sub.util_pct,
            exclusive=sub.exclusive,
            after=tuple(sub.after),
            name=sub.name,
            owner_uid=owner,
            preempt=PreemptMode(sub.preempt or self.engine.config.default_preempt),
            checkpoint_path=sub.checkpoint_path,
        )
        if not spec.command.strip():
            raise ServiceError(f"job {index + 1}: empty command")
        if not os.path.isabs(spec.cwd):
            raise ServiceError(f"job {index + 1}: working directory {spec.cwd!r} is not absolute")
        # a root daemon looking for another user's directory would tell them what exists
        # where they cannot look: their job's shim enters it as them, or fails (126)
        if not runs_as_submitter(owner) and not os.path.isdir(spec.cwd):
            raise ServiceError(f"job {index + 1}: working directory {spec.cwd!r} does not exist")
        expected = self._expectation(spec, history)
        why = never_fits(spec.gpus, expected, self.engine.gpu_views(), self.engine.config.policy)
        if why is not None:
            raise ServiceError(f"job {index + 1} can never start: {why}")
        state, reason = (
            (JobState.HELD, "submitted held") if sub.hold else (JobState.QUEUED, "submitted")
        )
        return Job(0, spec, state, sub.priority, now, expected, reason=reason)

    def _expectation(self, spec: JobSpec, history: dict[str, list[Job]]) -> Expectation:
        """Declared use, else the last successful run's peaks; the run time from the
        command's recent successful runs either way (it orders the queue)."""
        if spec.command not in history:  # a sweep repeats commands: one lookup each
            history[spec.command] = self.engine.store.recent_successes(spec.command, RECENT_RUNS)
        runs = history[spec.command]  # newest first
        expected = expected_use(spec, lambda: _peaks_of(runs[0]) if runs else None)
        durations = [d for d in map(_duration_s, reversed(runs)) if d is not None]
        return replace(expected, run_s=expected_run_s(durations))

    def _check_dependencies(self, submissions: Sequence[JobSubmission]) -> None:
        deps = {d for sub in submissions for d in sub.after}
        missing = deps - self.engine.active.keys() - self.engine.store.states(deps).keys()
        if missing:
            raise ServiceError(
                f"--after names unknown job(s): {', '.join(map(str, sorted(missing)))}"
            )

    def _check_quotas(self, submissions: Sequence[JobSubmission], uid: int) -> None:
        """Refuse the whole batch if it would take its owner past a queue or priority
        quota (``[quotas]``; root and the admin group have none)."""
        limits = self.engine.config.quotas.of(uid)
        if limits.max_priority is not None:
            for sub in submissions:
                self.check_priority(uid, sub.priority)
        if limits.max_queued is not None:
            waiting = (JobState.QUEUED, JobState.HELD)
            queued = sum(
                1
                for j in self.engine.active.values()
                if j.spec.owner_uid == uid and j.state in waiting
            )
            if queued + len(submissions) > limits.max_queued:
                raise ServiceError(
                    f"quota: {user_name(uid)} has {queued} jobs queued or held; {len(submissions)}"
                    f" more would pass the {limits.max_queued} a user may have",
                    status=403,
                )

    def check_priority(self, uid: int, priority: int) -> None:
        """A priority above the user's ``max_priority`` quota is refused."""
        cap = self.engine.config.quotas.of(uid).max_priority
        if cap is not None and priority > cap:
            raise ServiceError(
                f"quota: priority {priority} is above {cap}, the most {user_name(uid)} may ask for",
                status=403,
            )

    # -------------------------------------------------------------------- control
    def job(self, job_id: int) -> Job:
        job = self.engine.active.get(job_id)
        if job is not None:
            return job
        try:
            return self.engine.store.get(job_id)
        except UnknownJob:
            raise ServiceError(f"no job with id {job_id}", status=404) from None

    def cancel(self, job_id: int) -> Job:
        """Queued or held: cancelled at once. Running: SIGTERM to its group, SIGKILL after
        the grace period; it becomes cancelled when its process is gone."""
        job = self.job(job_id)
        now = self.engine.clock()
        if job.state in (JobState.QUEUED, JobState.HELD):
            return self._apply(job, JobState.CANCELLED, now, "cancelled by user")
        if not job.state.holds_gpus:
            raise ServiceError(f"job {job_id} already ended ({job.state.value})", status=409)
        if not job.cancel_requested:
            job = replace(job, cancel_requested=True, reason="cancelling: SIGTERM sent")
            self.engine.commit([(job, None)])
            self.engine.runner.signal(job, signal.SIGTERM)
            if job.state is JobState.SUSPENDED:  # stopped processes act on SIGTERM once woken
                self.engine.runner.signal(job, signal.SIGCONT)
        self.engine.arm_kill(job, now)  # again after a restart, which forgets the timer
        self.wake()
        return job

    def suspend(self, job_id: int) -> Job:
        """SIGSTOP to a running job's process group: its compute is freed at once, its
        GPU memory is not (admission keeps counting it; ``ls`` says so)."""
        job = self._running(job_id, "suspend")
        now = self.engine.clock()
        moved = self.engine.suspend(job, now, "suspended by user", release=False)
        self.wake()
        return moved

    def resume(self, job_id: int) -> Job:
        job = self.job(job_id)
        if job.state is not JobState.SUSPENDED:
            raise ServiceError(f"job {job_id} is {job.state.value}, not suspended", status=409)
        moved = self.engine.resume(job, self.engine.clock(), "resumed by user (SIGCONT)")
        self.wake()
        return moved

    def checkpoint(self, job_id: int) -> Job:
        """Ask a running job that declared ``--preempt checkpoint`` to save and exit 75;
        it is requeued keeping its place, and resumes with GPUGATE_RESUME=1."""
        job = self._running(job_id, "checkpoint")
        if job.spec.preempt is not PreemptMode.CHECKPOINT:
            raise ServiceError(
                f"job {job_id} was not submitted with --preempt checkpoint: it did not say it"
                " can save and exit 75 when asked",
                status=409,
            )
        if job.checkpoint_requested_at is None:
            job = self.engine.request_checkpoint(job, self.engine.clock())
        self.wake()
        return job

    def _running(self, job_id: int, what: str) -> Job:
        job = self.job(job_id)
        if job.state is not JobState.RUNNING or job.cancel_requested:
            state = "being cancelled" if job.cancel_requested else job.state.value
            raise ServiceError(f"job {job_id} is {state}: only a running job can {what}", 409)
        return job

    def hold(self, job_id: int) -> Job:
        job = self.job(job_id)
        return self._apply(job, JobState.HELD, self.engine.clock(), "held by user")

    def release(self, job_id: int) -> Job:
        job = self.job(job_id)
        now = self.engine.clock()
        return self._apply(job, JobState.QUEUED, now, "released by user", queued_at=now)

    def set_priority(self, job_id: int, priority: int) -> Job:
        job = self.job(job_id)
        if job.state.is_terminal:
            raise ServiceError(f"job {job_id} already ended ({job.state.value})", status=409)
        moved = replace(job, priority=priority)
        # not a move of the state machine, but part of the job's story: kept in its history
        # as an edge from its state to itself
        note = Transition(
            job.id,
            job.state,
            job.state,
            self.engine.clock(),
            f"priority {job.priority} -> {priority} by user",
        )
        self.engine.commit([(moved, note)])
        self.wake()
        return moved

    # -------------------------------------------------------------- simulated GPUs
    def sim_load(self, request: SimLoadRequest) -> None:
        """Inject or clear outside load on simulated GPUs, and act on it at once."""
        monitor = self.engine.monitor
        if not isinstance(monitor, SimMonitor):
            raise ServiceError("the daemon is not running simulated GPUs", 409)
        try:
            if request.clear:
                monitor.clear_load(request.name)
            else:
                name = request.name or "external"
                monitor.inject_load(name, request.gpu, request.mem_bytes, request.util_pct)
        except ValueError as exc:
            raise ServiceError(str(exc)) from None
        self.engine.observe(monitor.snapshot())  # the answer shows the change
        self.wake()

    def _apply(self, job: Job, state: JobState, now: float, why: str, **changes: Any) -> Job:
        try:
            moved, transition = advance(job, state, now, why, **changes)
        except IllegalTransition as exc:
            raise ServiceError(str(exc), status=409) from None
        self.engine.commit([(moved, transition)])
        self.wake()
        return moved


def _peaks_of(run: Job) -> Expectation | None:
    """What a successful run was seen to use, as an expectation for the next one."""
    if not run.peak_mem_bytes:
        return None
    return Expectation(run.peak_mem_bytes, run.peak_util_pct or 0.0, ExpectationSource.HISTORY)


def _duration_s(run: Job) -> float | None:
    if run.started_at is None or run.ended_at is None:
        return None
    return run.ended_at - run.started_at
