"""The daemon's brain stem: one tick = observe -> reap -> decide (pure core) -> act.

Single-threaded by design: the API handlers and the tick run on the same event loop, so
the in-memory view of active jobs never races. Every change is written through to the
store before (or, for pids, right after) it has an effect outside the process.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import psutil

from gpugate.core.fairshare import UsageLedger, current_usage, fair_share_points
from gpugate.core.load import GpuLoad, build_loads
from gpugate.core.schedule import schedule
from gpugate.core.smoothing import UtilWindow
from gpugate.core.types import Drain, GpuView, Preemption, SchedulingReply, SchedulingRequest
from gpugate.daemon.config import DaemonConfig
from gpugate.daemon.paths import StatePaths
from gpugate.daemon.stats import DaemonStats
from gpugate.daemon.timeline import GpuTimeline
from gpugate.gpu.base import GpuMonitor
from gpugate.lifecycle import advance
from gpugate.model import GpuSnapshot, Job, JobUsage, MachineSnapshot, PreemptMode, Transition
from gpugate.oom import oom_evidence, raised_expectation
from gpugate.preempt import CHECKPOINT_ENV, PREEMPT_FILE_ENV, REQUEUE_EXIT_CODE, RESUME_ENV
from gpugate.runner.base import ExitRecord, LaunchError, Runner
from gpugate.runner.cuda_checkpoint import CudaCheckpoint
from gpugate.runner.local import STDERR_FILE, STDOUT_FILE, session_of
from gpugate.states import JobState
from gpugate.store.base import Store
from gpugate.units import format_bytes

Change = tuple[Job, Transition | None]
PEAKS_SAVE_INTERVAL_S = 30.0
PREEMPT_FILE = "preempt-requested"  # in the job's dir: exists while it is asked to yield


class Engine:
    def __init__(
        self,
        store: Store,
        runner: Runner,
        monitor: GpuMonitor,
        config: DaemonConfig,
        paths: StatePaths,
        clock: Callable[[], float] = time.time,
        session_of: Callable[[int], int | None] = session_of,
    ) -> None:
        self.store, self.runner, self.monitor = store, runner, monitor
        self.cuda_checkpoint = CudaCheckpoint.from_setting(config.cuda_checkpoint)
        releases = self.cuda_checkpoint is not None  # then suspending frees memory too
        config = replace(config, policy=replace(config.policy, suspend_releases_memory=releases))
        self.config, self.paths, self.clock = config, paths, clock
        self.session_of = session_of
        self.active: dict[int, Job] = {j.id: j for j in store.active()}
        # the few jobs on the GPUs, apart from a queue that may hold 100k: the monitor and
        # the reaper look at these every second
        self._holding = {j.id for j in self.active.values() if j.state.holds_gpus}
        self.dependents: dict[int, set[int]] = {}  # job id -> active jobs waiting --after it
        self.track_dependencies(self.active.values())
        self.reasons: dict[int, str] = {}  # why each waiting job waits (last pass)
        self.snapshot = MachineSnapshot(monitor.backend, clock(), ())
        self.observed = 0  # snapshots observed so far
        self.windows: dict[str, UtilWindow] = {}
        self.usage: dict[int, dict[str, JobUsage]] = {}
        self.pid_owner: dict[int, int] = {}  # GPU process pid -> gpugate job id
        self.kill_at: dict[int, float] = {}  # job id -> when its SIGKILL is due
        self.checkpoint_due: dict[int, float] = {}  # job id -> end of its checkpoint grace
        self.released_pids: dict[int, list[int]] = {}  # job -> its processes on host memory
        self.exited: set[int] = set()  # jobs whose process signalled an exit
        self.ledger = _rebuilt_ledger(store, config.fair_share_half_life_s, clock())
        self.last_user_usage: dict[int, float] = {}
        self.fair_points: dict[int, float] = {}  # by uid, as the last pass ranked
        self.last_start_by_user: dict[int, float] = {}  # uid -> when their latest job started
        for job in self.active.values():
            if job.started_at is not None:
                uid = job.spec.owner_uid
                self.last_start_by_user[uid] = max(
                    job.started_at, self.last_start_by_user.get(uid, job.started_at)
                )
        self.check_all_exits = True
        self.on_launch: Callable[[Job], None] = lambda job: None
        self._time_deadline: float | None = None
        self.drain: Drain | None = None  # kept between passes (see SchedulingRequest.drain)
        self._peaks_unsaved: set[int] = set()  # peaks seen but not stored yet
        self._peaks_saved_at = 0.0
        self.pass_seconds = 0.0
        self.passes = 0
        self.stats = DaemonStats()  # for /metrics
        self.timeline = GpuTimeline()  # each GPU's recent load, for charts

    # -------------------------------------------------------------------- observe
    def observe(self, snap: MachineSnapshot) -> None:
        """Take a monitor snapshot: smooth utilization, attribute processes to jobs.
        (``observed`` counts them, so that a read finishing late can tell it is stale:
        see the daemon's monitor loop.)"""
        self.observed += 1
        self.snapshot = snap
        self.timeline.add(snap)
        for gpu in snap.gpus:
            if gpu.util_pct is not None:
                window = self.windows.setdefault(gpu.uuid, UtilWindow(self.config.util_window_s))
                window.add(snap.taken_at, gpu.util_pct)
        shims = {j.pid: j.id for j in self.holders() if j.pid}
        self.usage, self.pid_owner = {}, {}
        for gpu in snap.gpus:
            for proc in gpu.processes:
                job_id = shims.get(self.session_of(proc.pid) or -1)
                if job_id is None:
                    continue
                self.pid_owner[proc.pid] = job_id
                self._add_usage(job_id, gpu.uuid, proc.mem_bytes or 0, proc.util_pct)
        self._record_peaks()
        self.timeline.add_jobs(snap.taken_at, {j: _summed(u) for j, u in self.usage.items()})

    def _add_usage(self, job_id: int, uuid: str, mem: int, util: float | None) -> None:
        per_gpu = self.usage.setdefault(job_id, {})
        seen = per_gpu.get(uuid)
        if seen is not None:
            both = (
                None
                if util is None and seen.util_pct is None
                else (util or 0) + (seen.util_pct or 0)
            )
            mem, util = mem + seen.mem_bytes, both
        per_gpu[uuid] = JobUsage(mem, util)

    def _record_peaks(self) -> None:
        for job_id, per_gpu in self.usage.items():
            job = self.active.get(job_id)
            if job is None:
                continue
            mem = max(u.mem_bytes for u in per_gpu.values())
            util = max(
                (u.util_pct for u in per_gpu.values() if u.util_pct is not None), default=None
            )
            peak_mem = max(mem, job.peak_mem_bytes or 0)
            peak_util = max(util, job.peak_util_pct or 0) if util is not None else job.peak_util_pct
            if (peak_mem, peak_util) != (job.peak_mem_bytes, job.peak_util_pct):
                self.active[job_id] = replace(job, peak_mem_bytes=peak_mem, peak_util_pct=peak_util)
                self._peaks_unsaved.add(job_id)

    def gpu_views(self) -> list[GpuView]:
        """GPUs as admission sees them: utilization is the window's mean, or the latest
        sample when that is higher (a job that just reached its level has not moved the
        mean yet, and must not leave room it already uses)."""
        return [
            GpuView(g.uuid, g.index, g.mem_total_bytes, g.mem_used_bytes, self._admission_util(g))
            for g in self.snapshot.gpus
        ]

    def _admission_util(self, gpu: GpuSnapshot) -> float | None:
        mean = self._smoothed(gpu.uuid)
        if mean is None or gpu.util_pct is None:
            return mean
        return max(mean, gpu.util_pct)

    def _smoothed(self, uuid: str) -> float | None:
        window = self.windows.get(uuid)
        return window.mean() if window else None

    # ----------------------------------------------------------------------- tick
    def tick(self) -> bool:
        """One pass. Returns True if it started or ended anything (run it again soon)."""
        started = time.perf_counter()
        now = self.clock()
        self.runner.collect()
        ended = self._reap(now)
        self._escalate_cancels(now)
        self._escalate_checkpoints(now)
        reply = schedule(self._request(now))
        self.reasons = dict(reply.waiting)  # ours to pop from
        self.drain = reply.drain
        acted = self._act(reply, now)
        self._save_peaks(now)
        self._time_deadline = reply.next_decision_at
        self.pass_seconds = time.perf_counter() - started
        self.passes += 1
        self.stats.pass_seconds.observe(self.pass_seconds)
        return bool(ended or acted)

    def arm_kill(self, job: Job, now: float) -> None:
        """SIGKILL the job's group after the grace period unless it has ended by then."""
        self.kill_at.setdefault(job.id, now + self.config.cancel_grace_s)

    def _save_peaks(self, now: float) -> None:
        """Store new peaks every PEAKS_SAVE_INTERVAL_S: a daemon killed mid-run must not
        forget them (they set the next run's expected use), nor write on every sample."""
        if not self._peaks_unsaved or now - self._peaks_saved_at < PEAKS_SAVE_INTERVAL_S:
            return
        live = [self.active[i] for i in self._peaks_unsaved if i in self.active]
        self._commit([(job, None) for job in live])
        self._peaks_unsaved.clear()
        self._peaks_saved_at = now

    def next_deadline(self) -> float | None:
        """When the tick must run again at the latest: a pending SIGKILL, the end of a
        ramp-up window, or a waiting job reaching the backfill bound. Nothing else changes
        with time alone, so the fallback timer can be slow."""
        times = [*self.kill_at.values(), *self.checkpoint_due.values()]
        if self._time_deadline is not None:
            times.append(self._time_deadline)
        return min(times, default=None)

    def user_usage(self, now: float) -> dict[int, float]:
        """Each user's decayed GPU-seconds, the runs going now included (fair share)."""
        if self.config.policy.fair_share_weight == 0:
            return {}
        return current_usage(self.ledger, self.holders(), now)

    def _request(self, now: float) -> SchedulingRequest:
        self.last_user_usage = self.user_usage(now)  # what the pass ranked by; views explain
        self.fair_points = {}
        if self.last_user_usage:
            owners = {j.spec.owner_uid for j in self.active.values() if j.state is JobState.QUEUED}
            self.fair_points = fair_share_points(self.last_user_usage, owners, self.config.policy)
        return SchedulingRequest(
            user_usage=self.last_user_usage,
            last_start_by_user=self.last_start_by_user,
            now=now,
            gpus=self.gpu_views(),
            jobs=list(self.active.values()),
            policy=self.config.policy,
            usage=self.usage,
            dependency_states=self._inactive_dependency_states(),
            drain=self.drain,
        )

    def _inactive_dependency_states(self) -> dict[int, JobState]:
        deps = {d for j in self.active.values() if j.state is JobState.QUEUED for d in j.spec.after}
        missing = deps - self.active.keys()
        return self.store.states(missing) if missing else {}

    # ----------------------------------------------------------------------- reap
    def _reap(self, now: float) -> list[Change]:
        holders = self.holders()
        if not self.check_all_exits:
            holders = [j for j in holders if j.id in self.exited]
        self.exited.clear()
        self.check_all_exits = False
        changes: list[Change] = []
        for job in holders:
            # alive first: a shim writes its record before it exits, so one found dead
            # has either left its record or never will (the other order loses exit codes)
            alive = self.runner.is_alive(job)
            record = self.runner.exit_record(job, self.paths.job_dir(job.id))
            if record is not None:
                changes.append(self._finish(job, record))
            elif not alive:
                changes.append(self._vanished(job, now))
        self._commit(changes)
        return changes

    def _finish(self, job: Job, record: ExitRecord) -> Change:
        code = record.code
        how = describe_exit(code)
        asked = job.checkpoint_requested_at is not None and not job.cancel_requested
        if asked and job.spec.preempt is PreemptMode.REQUEUE and code != 0:
            return self.requeue(job, record.ended_at, f"{how}: stopped to make room; requeued")
        if code == REQUEUE_EXIT_CODE and (asked or _saved_as_stopped(job)):
            return self._requeue_checkpointed(job, record.ended_at)
        if code != 0 and not job.cancel_requested and job.spec.gpus:
            evidence = self._oom_evidence(job)
            if evidence is not None:
                return self._after_oom(job, record, evidence)
        if job.cancel_requested:
            state, reason = JobState.CANCELLED, f"cancelled by user ({how})"
        elif code == 0:
            state, reason = JobState.SUCCEEDED, how
        else:
            state, reason = JobState.FAILED, how
        return advance(
            job, state, record.ended_at, reason, exit_code=code, ended_at=record.ended_at
        )

    def _requeue_checkpointed(self, job: Job, at: float) -> Change:
        """Saved and exited 75 when asked: back to the queue with its priority and its
        waiting time kept (``submitted_at``/``queued_at`` unchanged), so it keeps its place;
        relaunched later with GPUGATE_RESUME=1."""
        checkpoints = job.checkpoints + 1
        why = (
            f"checkpointed and requeued (exit {REQUEUE_EXIT_CODE} when asked;"
            f" checkpoint {checkpoints}): resumes with GPUGATE_RESUME=1"
        )
        return self.requeue(job, at, why, checkpoints=checkpoints)

    def requeue(self, job: Job, at: float, why: str, **changes: object) -> Change:
        """Back to the queue, keeping its priority and its waiting time (its place). What
        is left of its process group is killed first: the next run must not meet the last
        one (a child that outlived the job's shell). ``preempted_for`` stays until it starts
        again: it does not start while the job it yielded to still waits."""
        self.runner.signal(job, signal.SIGKILL)
        self.checkpoint_due.pop(job.id, None)
        self.kill_at.pop(job.id, None)
        return advance(
            job,
            JobState.QUEUED,
            at,
            why,
            checkpoint_requested_at=None,
            gpu_memory_released=False,
            gpu_uuids=(),
            pid=None,
            pid_start_time=None,
            started_at=None,
            ramped_at=None,
            peak_mem_bytes=None,  # per run: an earlier run's peak is not evidence of this one
            peak_util_pct=None,
            **changes,
        )

    def _oom_evidence(self, job: Job) -> str | None:
        """The line this run printed when an allocation failed (or its peak at the GPU's
        capacity), read from the end of its logs: only what this run wrote counts."""
        job_dir = self.paths.job_dir(job.id)
        offsets = read_offsets(job_dir / LOG_OFFSETS_FILE)
        tail = "".join(
            read_tail(job_dir / name, offsets.get(name, 0)) for name in (STDERR_FILE, STDOUT_FILE)
        )
        totals = [g.mem_total_bytes for g in self.snapshot.gpus if g.uuid in job.gpu_uuids]
        return oom_evidence(tail, job.peak_mem_bytes, min(totals, default=None))

    def _after_oom(self, job: Job, record: ExitRecord, evidence: str) -> Change:
        """Requeue with more memory reserved, a bounded number of times; then it fails."""
        how, at = describe_exit(record.code), record.ended_at
        limit = self.config.max_oom_retries
        caps = [
            int(g.mem_total_bytes * self.config.policy.limits_for(g.uuid, g.index).mem_headroom_pct)
            // 100
            for g in self.snapshot.gpus
        ]
        raised = raised_expectation(job.expected, job.peak_mem_bytes, max(caps, default=0))
        if job.oom_retries >= limit or raised is None:
            why = (
                f"{how}: out of GPU memory ({evidence}); {job.oom_retries} of {limit} retries used"
            )
            return advance(job, JobState.FAILED, at, why, exit_code=record.code, ended_at=at)
        retry = job.oom_retries + 1
        wanted = "a whole GPU" if raised.mem_bytes is None else format_bytes(raised.mem_bytes)
        why = (
            f"{how}: out of GPU memory ({evidence}); requeued expecting {wanted} per GPU"
            f" (retry {retry} of {limit})"
        )
        return self.requeue(job, at, why, expected=raised, oom_retries=retry, exit_code=record.code)

    def request_checkpoint(self, job: Job, now: float, why: str = "asked to checkpoint") -> Job:
        """Ask the job to save and exit 75: the file it can poll, then SIGUSR1 to its
        group (jobs start with SIGUSR1 ignored, see shim.sh: only a process that installed
        a handler sees it). Past the grace period it is suspended."""
        self.preempt_file(job.id).touch()
        asked = replace(
            job,
            checkpoint_requested_at=now,
            reason=f"{why} (SIGUSR1); suspended if still running in"
            f" {self.config.checkpoint_grace_s:.0f} s",
        )
        self._commit([(asked, _note(asked, now))])
        self.runner.signal(asked, signal.SIGUSR1)
        self.checkpoint_due[job.id] = now + self.config.checkpoint_grace_s
        return asked

    def suspend(self, job: Job, now: float, why: str, release: bool = True) -> Job:
        """SIGSTOP to the job's group: its compute is freed. Its GPU memory too, when the
        scheduler suspends it and cuda-checkpoint works: each of its GPU processes is
        toggled to host memory first (while it runs: the toggle needs the process's own
        restore thread). A user's suspend keeps the memory (``release=False``): a user's
        resume then never has to find room for it."""
        released, why = (
            self._release_memory(job, why) if release else (False, f"{why} (GPU memory kept)")
        )
        # a suspended job is no longer being asked: the next request starts afresh, and
        # preemption is not held back by a request it will never answer while stopped
        moved, edge = advance(
            job,
            JobState.SUSPENDED,
            now,
            why,
            checkpoint_requested_at=None,
            gpu_memory_released=released,
        )
        self._commit([(moved, edge)])
        self.runner.signal(moved, signal.SIGSTOP)
        if released:
            self._forget_usage(job.id)
        return moved

    def resume(self, job: Job, now: float, why: str) -> Job:
        """SIGCONT, then (if its memory was moved to host) the toggle back to the GPU."""
        self.runner.signal(job, signal.SIGCONT)
        if job.gpu_memory_released and self.cuda_checkpoint is not None:
            pids = self._released(job, self.cuda_checkpoint)
            errors = [e for e in self.cuda_checkpoint.toggle(pids).values() if e]
            if errors and len(errors) == len(pids):  # nothing came back: stay suspended
                self.runner.signal(job, signal.SIGSTOP)
                stays = replace(job, reason=f"resume failed, still suspended: {errors[0]}")
                self._commit([(stays, _note(stays, now))])
                return stays
            if errors:
                why = f"{why}; cuda-checkpoint: {'; '.join(errors)}"
            self._forget_released(job.id)
        moved, edge = advance(
            job,
            JobState.RUNNING,
            now,
            why,
            preempted_for=None,
            checkpoint_requested_at=None,
            gpu_memory_released=False,
        )
        self._commit([(moved, edge)])
        return moved

    def _release_memory(self, job: Job, why: str) -> tuple[bool, str]:
        """Move the job's GPU memory to host memory (cuda-checkpoint), if possible."""
        pids = self._gpu_pids(job.id)
        if self.cuda_checkpoint is None or not pids or not job.spec.gpus:
            return False, f"{why} (GPU memory kept)"
        results = self.cuda_checkpoint.toggle(pids)
        errors = [e for e in results.values() if e]
        if errors:
            self.cuda_checkpoint.toggle(p for p, e in results.items() if e is None)  # undo
            return False, f"{why} (cuda-checkpoint failed: {'; '.join(errors)}; GPU memory kept)"
        self.released_pids[job.id] = pids
        # kept in the job's directory too: a restart must restore exactly these
        (self.paths.job_dir(job.id) / RELEASED_PIDS_FILE).write_text(json.dumps(pids))
        return True, f"{why} (GPU memory moved to host memory by cuda-checkpoint)"

    def _released(self, job: Job, tool: CudaCheckpoint) -> list[int]:
        """The processes whose memory suspend moved to host: remembered, or written in
        the job's directory (after a restart). Failing both, those cuda-checkpoint says
        are checkpointed; failing that too (a cuda-checkpoint without --get-state), every
        process of the job, as a toggle of a non-CUDA process only fails."""
        if pids := self.released_pids.get(job.id):
            return pids
        try:
            saved = json.loads((self.paths.job_dir(job.id) / RELEASED_PIDS_FILE).read_text())
            if isinstance(saved, list) and saved and all(isinstance(p, int) for p in saved):
                return saved
        except (OSError, ValueError):
            pass
        session = self._session_pids(job)
        return tool.checkpointed(session) or session

    def _forget_released(self, job_id: int) -> None:
        self.released_pids.pop(job_id, None)
        (self.paths.job_dir(job_id) / RELEASED_PIDS_FILE).unlink(missing_ok=True)

    def _session_pids(self, job: Job) -> list[int]:
        if job.pid is None:
            return []
        return sorted(p.pid for p in psutil.process_iter() if self.session_of(p.pid) == job.pid)

    def _gpu_pids(self, job_id: int) -> list[int]:
        """The job's processes seen on a GPU at the last sample."""
        return sorted(pid for pid, owner in self.pid_owner.items() if owner == job_id)

    def preempt_file(self, job_id: int) -> Path:
        return self.paths.job_dir(job_id) / PREEMPT_FILE

    def _escalate_checkpoints(self, now: float) -> None:
        """A job that ignored the checkpoint request past its grace falls to the next rung
        of the ladder: suspend (nothing is lost; its memory stays held)."""
        for job_id, due in list(self.checkpoint_due.items()):
            job = self.active.get(job_id)
            if job is None or job.state is not JobState.RUNNING or job.cancel_requested:
                del self.checkpoint_due[job_id]  # it yielded, ended, was suspended or cancelled
            elif now >= due:
                del self.checkpoint_due[job_id]
                grace = self.config.checkpoint_grace_s
                why = f"ignored the checkpoint request for {grace:.0f} s: suspended"
                self.suspend(job, now, why)

    def _vanished(self, job: Job, now: float) -> Change:
        asked = job.checkpoint_requested_at is not None and not job.cancel_requested
        if asked and job.spec.preempt is PreemptMode.REQUEUE:  # killed with its shim
            return self.requeue(job, now, "killed to make room; requeued")
        if job.cancel_requested:  # SIGKILL to the group took the shim too
            return advance(job, JobState.CANCELLED, now, "cancelled by user (killed)")
        return advance(job, JobState.LOST, now, "its process ended without leaving an exit code")

    def _escalate_cancels(self, now: float) -> None:
        for job_id, due in list(self.kill_at.items()):
            job = self.active.get(job_id)
            if job is None or not job.state.holds_gpus:
                del self.kill_at[job_id]
            elif now >= due:
                self.runner.signal(job, signal.SIGKILL)
                del self.kill_at[job_id]
                self.check_all_exits = True

    # ------------------------------------------------------------------------ act
    def _act(self, reply: SchedulingReply, now: float) -> bool:
        decided: list[Change] = []
        for verdict in reply.cancels:
            decided.append(
                advance(self.active[verdict.job_id], JobState.CANCELLED, now, verdict.reason)
            )
        for verdict in reply.ramped:
            job = self.active[verdict.job_id]
            decided.append(advance(job, JobState.RUNNING, now, verdict.reason, ramped_at=now))
        starting: list[Change] = [
            advance(
                self.active[s.job_id],
                JobState.STARTING,
                now,
                s.reason,
                gpu_uuids=s.gpu_uuids,
                started_at=now,
                preempted_for=None,
            )
            for s in reply.starts
        ]
        for s in reply.starts:
            self.stats.admissions += 1
            self.stats.queue_wait_seconds.observe(now - self.active[s.job_id].waiting_since)
        # stored before launching: a crash in between leaves a job that recovery can find,
        # never a process the store does not know about
        self._commit(decided + starting)
        self._commit([change for job, _ in starting for change in self._launch(job, now)])
        for verdict in reply.resumes:
            self.resume(self.active[verdict.job_id], now, verdict.reason)
        for preemption in reply.preemptions:
            self.stats.preemptions[preemption.how.value] += 1
            self._preempt(preemption, now)
        return bool(reply.starts or reply.cancels or reply.ramped or reply.resumes)

    def _preempt(self, order: Preemption, now: float) -> None:
        """Make a running job yield the way it allowed: checkpoint (SIGUSR1, then exit 75
        and requeue), suspend (SIGSTOP), or requeue (SIGTERM, SIGKILL after the grace,
        requeued from the start)."""
        job = replace(
            self.active[order.job_id],
            preempted_for=order.for_job,
            preemptions=self.active[order.job_id].preemptions + 1,
        )
        if order.how is PreemptMode.CHECKPOINT:
            self.request_checkpoint(job, now, order.reason)
        elif order.how is PreemptMode.SUSPEND:
            self.suspend(job, now, order.reason)
        else:
            asked = replace(job, checkpoint_requested_at=now, reason=f"{order.reason}: SIGTERM")
            self._commit([(asked, _note(asked, now))])
            self.runner.signal(asked, signal.SIGTERM)
            self.arm_kill(asked, now)

    def _launch(self, job: Job, now: float) -> list[Change]:
        self.preempt_file(job.id).unlink(missing_ok=True)  # a resumed run starts unasked
        job_dir = self.paths.job_dir(job.id)
        job_dir.mkdir(parents=True, exist_ok=True)
        offsets = {name: file_size(job_dir / name) for name in (STDERR_FILE, STDOUT_FILE)}
        (job_dir / LOG_OFFSETS_FILE).write_text(json.dumps(offsets))  # survives a restart
        try:
            launched = self.runner.launch(job, self.job_env(job), self.paths.job_dir(job.id))
        except LaunchError as exc:
            return [advance(job, JobState.FAILED, now, f"could not start: {exc}")]
        moved = replace(job, pid=launched.pid, pid_start_time=launched.start_time)
        self.last_start_by_user[job.spec.owner_uid] = now
        self.on_launch(moved)
        if job.spec.gpus == 0:  # nothing to reserve, so no ramp-up to wait for
            return [
                advance(
                    moved, JobState.RUNNING, now, "CPU-only job: nothing to reserve", ramped_at=now
                )
            ]
        return [(moved, None)]

    def job_env(self, job: Job) -> dict[str, str]:
        """The job's environment: what the user submitted, plus which GPUs are its own."""
        env = dict(job.spec.env)
        # by UUID with PCI bus order: indices differ between NVML and CUDA's default order
        env["CUDA_VISIBLE_DEVICES"] = ",".join(job.gpu_uuids)
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["GPUGATE_JOB_ID"] = str(job.id)
        env[PREEMPT_FILE_ENV] = str(self.preempt_file(job.id))
        if job.checkpoints:
            env[RESUME_ENV] = "1"
        if job.spec.checkpoint_path:
            env[CHECKPOINT_ENV] = job.spec.checkpoint_path
        env.update(self.monitor.job_env(env))
        return env

    # -------------------------------------------------------------------- storage
    def _commit(self, changes: Iterable[Change]) -> None:
        changes = list(changes)
        if not changes:
            return
        self.store.save(changes)  # a failed save raises: the daemon stops loudly
        ended = []
        for job, _ in changes:
            if job.state.holds_gpus:
                self._holding.add(job.id)
            elif job.id in self._holding:
                self._holding.discard(job.id)
                self._forget_usage(job.id)
                self._count_run(self.active.get(job.id), job)
            if job.state.is_terminal:
                self.stats.ended[job.state.value] += 1
                self.active.pop(job.id, None)
                self.reasons.pop(job.id, None)
                self.kill_at.pop(job.id, None)
                self.checkpoint_due.pop(job.id, None)
                self._forget_released(job.id)
                ended.append(job)
            else:
                self.active[job.id] = job
        self._commit(self._now_eligible(ended))

    def _count_run(self, before: Job | None, after: Job) -> None:
        """A run left the GPUs (ended, or requeued): its GPU time goes to its owner."""
        started = before.started_at if before is not None else after.started_at
        if started is None or not after.spec.gpus:
            return
        ended = after.ended_at or self.clock()
        self.ledger.add(after.spec.owner_uid, after.spec.gpus * (ended - started), ended)

    def _forget_usage(self, job_id: int) -> None:
        """A job's processes are gone, and with them the memory they held: take it off the
        last snapshot now rather than at the next monitor sample, so the job it made room
        for (or the next in line) is not refused for memory that is already free."""
        seen = self.usage.pop(job_id, None)
        if not seen:
            return
        gpus = tuple(
            replace(g, mem_used_bytes=max(0, g.mem_used_bytes - seen[g.uuid].mem_bytes))
            if g.uuid in seen
            else g
            for g in self.snapshot.gpus
        )
        self.snapshot = replace(self.snapshot, gpus=gpus)

    def holders(self) -> list[Job]:
        """The active jobs that are starting or running on the machine."""
        return [self.active[i] for i in self._holding]

    def loads(self) -> dict[str, GpuLoad]:
        """Each GPU's load as admission counts it now (reservations included), by uuid:
        what ``gpus``, ``top`` and ``/metrics`` show."""
        holders = self.holders()
        starting = {j.id for j in holders if j.state is JobState.STARTING}
        return build_loads(self.gpu_views(), holders, self.usage, self.config.policy, starting)

    def track_dependencies(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            for dependency in job.spec.after:
                self.dependents.setdefault(dependency, set()).add(job.id)

    def _now_eligible(self, ended: list[Job]) -> list[Change]:
        """Jobs whose last ``--after`` dependency just succeeded start waiting now: their
        aging and backfill bound count from here, not from their submission."""
        changes: list[Change] = []
        for done in ended:
            for waiter_id in self.dependents.pop(done.id, ()):
                waiter = self.active.get(waiter_id)
                if waiter is None or done.state is not JobState.SUCCEEDED:
                    continue  # a failed dependency: the scheduler cancels the waiter
                if not any(d in self.active for d in waiter.spec.after):
                    changes.append((replace(waiter, queued_at=self.clock()), None))
        return changes

    def commit(self, changes: Iterable[Change]) -> None:
        """Store user-initiated changes (service layer) and update the live view."""
        self._commit(changes)


def _note(job: Job, at: float) -> Transition:
    """A step of the job's story that is not a move of the state machine (asked to yield):
    kept in its history as an edge from its state to itself, with the job's reason."""
    return Transition(job.id, job.state, job.state, at, job.reason)


def describe_exit(code: int) -> str:
    """``exited 3``; ``exited 137 (killed by SIGKILL)``: the shell reports a death by
    signal N as 128+N (a job may also exit with such a code itself, hence both)."""
    if code > 128:
        try:
            return f"exited {code} (killed by {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    return f"exited {code}"


def _saved_as_stopped(job: Job) -> bool:
    """A checkpointable job suspended after its grace (suspending forgets the request) may
    have been saving: its exit 75, landing as it was stopped, is the checkpoint asked for."""
    return (
        job.state is JobState.SUSPENDED
        and job.spec.preempt is PreemptMode.CHECKPOINT
        and not job.cancel_requested
    )


def _summed(per_gpu: dict[str, JobUsage]) -> tuple[float | None, int]:
    """A job's use over its GPUs: utilization summed (None if no GPU reports it)."""
    utils = [u.util_pct for u in per_gpu.values() if u.util_pct is not None]
    return (sum(utils) if utils else None), sum(u.mem_bytes for u in per_gpu.values())


def _rebuilt_ledger(store: Store, half_life_s: float, now: float) -> UsageLedger:
    """Fair share's ledger after a (re)start: each GPU job's last run that ended within
    ten half-lives (older ones weigh under 0.1%). Earlier runs of a requeued job are not
    kept in the store and are not counted."""
    ledger = UsageLedger(half_life_s)
    runs = store.gpu_runs_ended_since(now - 10 * half_life_s)
    for run in sorted(runs, key=lambda r: r.ended_at):
        ledger.add(run.owner_uid, run.gpus * (run.ended_at - run.started_at), run.ended_at)
    return ledger


LOG_TAIL_BYTES = 64 * 1024  # where a framework's out-of-memory line would be
LOG_OFFSETS_FILE = "log-offsets.json"  # the logs' sizes when the current run started
RELEASED_PIDS_FILE = "cuda-released.json"  # processes suspend moved to host memory


def read_offsets(path: Path) -> dict[str, int]:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in found.items()} if isinstance(found, dict) else {}


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_tail(path: Path, start: int) -> str:
    """The end of a log from ``start`` on (what one run wrote), at most LOG_TAIL_BYTES."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, 2)
            log.seek(max(start, size - LOG_TAIL_BYTES))
            return log.read().decode("utf-8", "replace")
    except OSError:
        return ""
