"""The event loop: a heap of ``(time, order, seq, event)`` in the spirit of SimPy, and one
``core.schedule()`` pass after every instant at which something happened.

The scheduler sees exactly what the daemon's scheduler sees: GPU views and per-job usage
from a monitor (here the simulated machine), the active jobs with their states, and the
clock (here the event time). Its reply is acted on like the daemon acts on it: starts go to
the runner (here ``SimMachine.start``), ramp-up verdicts move jobs to running.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from gpugate.core.expectation import expected_use
from gpugate.core.fairshare import DEFAULT_HALF_LIFE_S, UsageLedger, current_usage
from gpugate.core.limits import never_fits
from gpugate.core.policy import Policy
from gpugate.core.schedule import schedule
from gpugate.core.types import Drain, Preemption, SchedulingReply, SchedulingRequest
from gpugate.lifecycle import advance
from gpugate.model import Job, JobSpec, PreemptMode
from gpugate.sim.history import PriorRun, RunHistory
from gpugate.sim.job import SimJob
from gpugate.sim.machine import Interference, Placed, SimMachine
from gpugate.sim.workload import DEFAULT_GPU_MEM_BYTES
from gpugate.states import JobState

Progress = Callable[[int, int], None]  # (jobs ended, jobs in the workload)


class Kind(IntEnum):
    """Events of one instant run in this order: ends free room before anything asks."""

    END = 0
    YIELD = 1  # a job asked to checkpoint has saved: it leaves its GPUs, requeued
    ALLOCATE = 2
    ARRIVE = 3
    WAKE = 4  # a time-based decision (ramp window, backfill bound) is due


class Outcome:
    COMPLETED = "completed"
    FAILED_OOM = "failed-oom"  # crashed with out-of-memory more often than allowed
    REFUSED = "refused"  # could never fit this machine (the daemon refuses it at submit)


@dataclass(slots=True)
class JobRecord:
    """What happened to one job, for the metrics."""

    job: SimJob
    first_start_s: float | None = None
    start_s: float | None = None  # of the run that ended it
    end_s: float | None = None
    oom_crashes: int = 0
    outcome: str = ""

    @property
    def jct_s(self) -> float:
        assert self.end_s is not None
        return self.end_s - self.job.submit_s

    @property
    def queue_delay_s(self) -> float:
        """Submit to first start: what the user waited before anything ran."""
        assert self.first_start_s is not None
        return self.first_start_s - self.job.submit_s


@dataclass(slots=True)
class Timeline:
    """Step functions sampled at every instant where something changed."""

    at_s: list[float] = field(default_factory=list)
    util_pct: list[list[float]] = field(default_factory=list)  # per GPU, observed
    mem_pct: list[list[float]] = field(default_factory=list)  # per GPU, allocated
    queued: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)


@dataclass(slots=True)
class SimResult:
    policy_name: str
    n_gpus: int
    gpu_mem_bytes: int
    policy: Policy
    records: list[JobRecord]
    timeline: Timeline
    passes: int  # scheduler calls
    wall_s: float = 0.0


@dataclass(frozen=True, slots=True)
class SimConfig:
    n_gpus: int = 8
    gpu_mem_bytes: int = DEFAULT_GPU_MEM_BYTES
    max_oom_retries: int = 3  # a crashed job is resubmitted (as its user would) this often
    # what every job allows at submit (--preempt): never, or checkpoint (requeue: from scratch)
    preempt: PreemptMode = PreemptMode.NEVER
    checkpoint_s: float = 60.0  # a checkpointing job saves this long, and restores as long
    fair_share_half_life_s: float = DEFAULT_HALF_LIFE_S  # users' GPU time decays this fast


class Simulation:
    """One run of one policy over one workload. ``run()`` once."""

    def __init__(
        self,
        jobs: Sequence[SimJob],
        policy: Policy,
        interference: Interference,
        config: SimConfig = SimConfig(),
        policy_name: str = "",
        history: Iterable[PriorRun] = (),
        oracle: bool = False,
    ) -> None:
        """``history``: runs the daemon would have seen end before the first job (a
        trace's earlier weeks), from which, and from the runs completed as the simulation
        goes, a job's expected run time is estimated at submit like the daemon does.
        ``oracle``: tell the scheduler every job's true run time instead (the SJF oracle)."""
        self.jobs = {j.id: j for j in jobs}
        self.history = RunHistory(history)
        self.oracle = oracle
        self.policy = policy
        self.policy_name = policy_name
        self.config = config
        self.machine = SimMachine(config.n_gpus, config.gpu_mem_bytes, interference)
        self.active: dict[int, Job] = {}
        self.records = {j.id: JobRecord(j) for j in jobs}
        self.timeline = Timeline()
        self._heap: list[tuple[float, int, int, int, int]] = []  # time, kind, seq, job, version
        self._seq = 0
        self._wake_at: float | None = None
        self._drain: Drain | None = None
        self.work_left: dict[int, float] = {}  # solo seconds left of a preempted job's run
        self.passes = 0
        self.ended = 0
        # users become uids (in name order) so the core's fair share and quotas see them
        self.uids = {name: i for i, name in enumerate(sorted({j.user for j in jobs}))}
        self.ledger = UsageLedger(config.fair_share_half_life_s)
        self.last_start_by_user: dict[int, float] = {}
        self._fair_share = len(self.uids) > 1 and policy.fair_share_weight > 0
        for job in jobs:
            self._push(job.submit_s, Kind.ARRIVE, job.id)

    # --------------------------------------------------------------------------- loop
    def run(self, progress: Progress | None = None) -> SimResult:
        while self._heap:
            now = self._heap[0][0]
            while self._heap and self._heap[0][0] == now:
                _, kind, _, job_id, version = heapq.heappop(self._heap)
                self._handle(Kind(kind), job_id, version, now)
            self._decide(now)
            if progress is not None:
                progress(self.ended, len(self.jobs))
        return SimResult(
            policy_name=self.policy_name,
            n_gpus=self.config.n_gpus,
            gpu_mem_bytes=self.config.gpu_mem_bytes,
            policy=self.policy,
            records=[self.records[i] for i in sorted(self.records)],
            timeline=self.timeline,
            passes=self.passes,
        )

    def _push(self, at: float, kind: Kind, job_id: int, version: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, kind, self._seq, job_id, version))

    def _handle(self, kind: Kind, job_id: int, version: int, now: float) -> None:
        if kind is Kind.ARRIVE:
            self._arrive(self.jobs[job_id], now)
        elif kind is Kind.ALLOCATE:
            placed = self.machine.placed.get(job_id)
            if placed is not None and placed.run == version:
                self._allocate(job_id, now)
        elif kind is Kind.YIELD:
            placed = self.machine.placed.get(job_id)
            if placed is not None and placed.run == version:
                self._yield(job_id, now)
        elif kind is Kind.END:
            placed = self.machine.placed.get(job_id)
            if placed is not None and placed.version == version:
                self._complete(job_id, now)
        # WAKE carries nothing: the pass after it is the point

    # ------------------------------------------------------------------------- events
    def _arrive(self, sim_job: SimJob, now: float) -> None:
        job = self._as_job(sim_job)
        if never_fits(job.spec.gpus, job.expected, self.machine.views(), self.policy):
            self._finish_record(sim_job.id, now, Outcome.REFUSED)
            return
        self.active[job.id] = job

    def _allocate(self, job_id: int, now: float) -> None:
        fitted, changed = self.machine.allocate(job_id, now)
        if fitted:
            self._reschedule_ends(changed)
        else:
            self._crash_oom(job_id, now)

    def _complete(self, job_id: int, now: float) -> None:
        self.work_left.pop(job_id, None)  # it ended while saving: nothing to resume
        self._reschedule_ends(self.machine.remove(job_id, now))
        job = self.active.pop(job_id)
        advance(job, JobState.SUCCEEDED, now, "exited 0")  # checks the edge is legal
        self._count_run(job, now)
        self._finish_record(job_id, now, Outcome.COMPLETED)
        started = self.records[job_id].start_s
        if started is not None:  # what the daemon's store learns: the run as it really went
            self.history.record(self.jobs[job_id].submitted_command, now - started)

    def _expected_run_s(self, sim_job: SimJob) -> float | None:
        if self.oracle:
            return sim_job.run_s
        return self.history.expected_run_s(sim_job.submitted_command)

    def _crash_oom(self, job_id: int, now: float) -> None:
        self.work_left.pop(job_id, None)  # crashed while saving: the save is lost too
        job = self.active.pop(job_id)
        advance(job, JobState.FAILED, now, "CUDA out of memory")
        self._count_run(job, now)
        record = self.records[job_id]
        record.oom_crashes += 1
        if record.oom_crashes > self.config.max_oom_retries:
            self._finish_record(job_id, now, Outcome.FAILED_OOM)
            return
        # resubmitted at once, as its user (or a retry wrapper) would: back of its class
        self.active[job_id] = self._as_job(self.jobs[job_id], queued_at=now)

    def _as_job(self, sim_job: SimJob, queued_at: float | None = None) -> Job:
        return _as_gpugate_job(
            sim_job,
            self._expected_run_s(sim_job),
            queued_at,
            preempt=self.config.preempt,
            owner_uid=self.uids[sim_job.user],
        )

    def _count_run(self, job: Job, now: float) -> None:
        """Fair share: a run that leaves the GPUs counts its GPU time for its owner."""
        if job.started_at is not None and job.spec.gpus:
            self.ledger.add(job.spec.owner_uid, job.spec.gpus * (now - job.started_at), now)

    def _finish_record(self, job_id: int, now: float, outcome: str) -> None:
        record = self.records[job_id]
        record.end_s = now
        record.outcome = outcome
        self.ended += 1

    def _reschedule_ends(self, changed: list[Placed]) -> None:
        for placed in changed:
            self._push(placed.ends_at, Kind.END, placed.job.id, placed.version)

    # -------------------------------------------------------------------------- decide
    def _decide(self, now: float) -> None:
        if not self.active:
            self._sample(now)
            return
        reply = schedule(
            SchedulingRequest(
                now=now,
                gpus=self.machine.views(),
                jobs=list(self.active.values()),
                policy=self.policy,
                usage=self.machine.usage(),
                drain=self._drain,
                user_usage=self._user_usage(now),
                last_start_by_user=self.last_start_by_user,
            )
        )
        self._drain = reply.drain
        self.passes += 1
        self._act(reply, now)
        self._sample(now)

    def _user_usage(self, now: float) -> dict[int, float]:
        if not self._fair_share:
            return {}
        holders = [j for j in self.active.values() if j.started_at is not None]
        return current_usage(self.ledger, holders, now)

    def _act(self, reply: SchedulingReply, now: float) -> None:
        for verdict in reply.ramped:
            job = self.active[verdict.job_id]
            self.active[job.id], _ = advance(
                job, JobState.RUNNING, now, verdict.reason, ramped_at=now
            )
        for start in reply.starts:
            self._start(start.job_id, start.gpu_uuids, start.reason, now)
        for order in reply.preemptions:
            self._preempt(order, now)
        wake = reply.next_decision_at
        if wake is not None and wake != self._wake_at:
            self._wake_at = wake
            self._push(wake, Kind.WAKE, -1)

    def _start(self, job_id: int, uuids: tuple[str, ...], reason: str, now: float) -> None:
        job = self.active[job_id]
        self.active[job_id], _ = advance(
            job,
            JobState.STARTING,
            now,
            reason,
            gpu_uuids=uuids,
            started_at=now,
            preempted_for=None,
        )
        self.last_start_by_user[job.spec.owner_uid] = now
        record = self.records[job_id]
        if record.first_start_s is None:
            record.first_start_s = now
        record.start_s = now
        sim_job = self.jobs[job_id]
        placed = self.machine.start(sim_job, uuids, now, self.work_left.pop(job_id, None))
        self._push(placed.ends_at, Kind.END, job_id, placed.version)
        if sim_job.ramp_s < sim_job.run_s:  # a job shorter than its ramp never allocates
            self._push(now + sim_job.ramp_s, Kind.ALLOCATE, job_id, placed.run)

    def _preempt(self, order: Preemption, now: float) -> None:
        """Checkpoint: the job saves for ``checkpoint_s`` (still on its GPUs), then yields
        and is requeued with the work it had left plus as long again to restore. Requeue:
        it yields at once and starts again from scratch."""
        job = self.active[order.job_id]
        self.active[job.id] = dataclasses.replace(
            job,
            checkpoint_requested_at=now,
            preempted_for=order.for_job,
            preemptions=job.preemptions + 1,
        )
        placed = self.machine.placed[job.id]
        save_s = 0.0
        if order.how is PreemptMode.CHECKPOINT:
            # what is saved is the work done until now; saving and restoring cost time
            save_s = self.config.checkpoint_s
            placed.advance_to(now)
            self.work_left[job.id] = placed.work_left_s + save_s
        self._push(now + save_s, Kind.YIELD, job.id, placed.run)

    def _yield(self, job_id: int, now: float) -> None:
        job = self.active[job_id]
        self._count_run(job, now)
        self._reschedule_ends(self.machine.remove(job_id, now))
        self.active[job_id], _ = advance(
            job,
            JobState.QUEUED,
            now,
            "checkpointed and requeued",
            checkpoint_requested_at=None,
            gpu_uuids=(),
            started_at=None,
            ramped_at=None,
        )

    def _sample(self, now: float) -> None:
        line = self.timeline
        running = len(self.machine.placed)
        line.at_s.append(now)
        line.util_pct.append([g.util_pct for g in self.machine.gpus])
        line.mem_pct.append([100 * g.mem_used_bytes / g.mem_total_bytes for g in self.machine.gpus])
        line.queued.append(len(self.active) - running)
        line.running.append(running)


def _as_gpugate_job(
    sim_job: SimJob,
    run_s: float | None,
    queued_at: float | None = None,
    preempt: PreemptMode = PreemptMode.NEVER,
    owner_uid: int = 0,
) -> Job:
    """The job as the daemon would store it right after ``gpugate submit``, expected to
    run ``run_s`` (None: never seen succeed)."""
    spec = JobSpec(
        preempt=preempt,
        command=sim_job.submitted_command,
        cwd="/",
        gpus=sim_job.gpus,
        mem_bytes=sim_job.declared_mem_bytes,
        util_pct=None if sim_job.declared_mem_bytes is None else sim_job.declared_util_pct,
        name=sim_job.name,
        owner_uid=owner_uid,
    )
    expected = dataclasses.replace(expected_use(spec), run_s=run_s)
    return Job(
        id=sim_job.id,
        spec=spec,
        state=JobState.QUEUED,
        priority=sim_job.priority,
        submitted_at=sim_job.submit_s,
        expected=expected,
        queued_at=queued_at,
    )
