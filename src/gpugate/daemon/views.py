"""Turn the daemon's state into the wire format (api.schemas)."""

from __future__ import annotations

from collections import Counter

from gpugate.api import schemas as api
from gpugate.core.load import GpuLoad
from gpugate.core.queue import in_queue_order
from gpugate.daemon.engine import Engine
from gpugate.daemon.identity import user_name
from gpugate.model import GpuSnapshot, Job, Transition
from gpugate.runner.local import STDERR_FILE, STDOUT_FILE
from gpugate.states import JobState


def job_view(engine: Engine, job: Job, fair: FairShareNote | None = None) -> api.JobView:
    index_of = {g.uuid: g.index for g in engine.snapshot.gpus}
    reason = engine.reasons.get(job.id, job.reason) if job.is_active else job.reason
    if job.state is JobState.QUEUED:
        reason += (fair or FairShareNote(engine)).of(job.spec.owner_uid)
    return api.JobView(
        id=job.id,
        name=job.spec.name,
        command=job.spec.command,
        state=job.state.value,
        priority=job.priority,
        gpus=job.spec.gpus,
        gpu_uuids=list(job.gpu_uuids),
        gpu_indices=[index_of[u] for u in job.gpu_uuids if u in index_of],
        mem_bytes=job.expected.mem_bytes,
        util_pct=job.expected.util_pct,
        expectation=job.expected.source.value,
        expected_run_s=job.expected.run_s,
        preempt=job.spec.preempt.value,
        checkpoints=job.checkpoints,
        oom_retries=job.oom_retries,
        preemptions=job.preemptions,
        exclusive=job.spec.exclusive,
        after=list(job.spec.after),
        submitted_at=job.submitted_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        exit_code=job.exit_code,
        reason=reason,
        peak_mem_bytes=job.peak_mem_bytes,
        peak_util_pct=job.peak_util_pct,
        owner_uid=job.spec.owner_uid,
        owner_name=user_name(job.spec.owner_uid),
        pid=job.pid,
    )


def job_detail(engine: Engine, job: Job, history: list[Transition]) -> api.JobDetail:
    job_dir = engine.paths.job_dir(job.id)
    return api.JobDetail(
        job=job_view(engine, job),
        cwd=job.spec.cwd,
        history=[
            api.TransitionView(
                t.from_state.value if t.from_state else None, t.to_state.value, t.at, t.reason
            )
            for t in history
        ],
        stdout_path=str(job_dir / STDOUT_FILE),
        stderr_path=str(job_dir / STDERR_FILE),
    )


def job_list(
    engine: Engine, recent_limit: int, states: set[str] | None, queued_limit: int | None = None
) -> api.JobList:
    """Active jobs (queued ones in queue order, at most ``queued_limit`` of them), then the
    ``recent_limit`` most recently ended; ``states`` filters all of them."""
    active = list(engine.active.values())
    counts = Counter(j.state.value for j in active)
    queued = [j for j in active if j.state is JobState.QUEUED]
    if queued_limit is not None and len(queued) > queued_limit:
        policy = engine.config.policy
        queued = in_queue_order(
            queued, engine.clock(), policy, engine.last_user_usage, engine.last_start_by_user
        )
        queued = queued[:queued_limit]
    others = sorted((j for j in active if j.state is not JobState.QUEUED), key=lambda j: j.id)
    # the most recently ended, shown like the rest in id order
    recent = sorted(engine.store.recent(recent_limit), key=lambda j: j.id) if recent_limit else []
    jobs = others + sorted(queued, key=lambda j: j.id) + recent
    if states:
        jobs = [j for j in jobs if j.state.value in states]
    fair = FairShareNote(engine)
    return api.JobList([job_view(engine, j, fair) for j in jobs], dict(counts))


class FairShareNote:
    """What fair share did to a queued job's rank, as words for its reason: the points
    its owner's recent GPU time cost it against the least-served user in play."""

    def __init__(self, engine: Engine) -> None:
        self._usage = engine.last_user_usage
        self._total = sum(self._usage.values())
        self._points = engine.fair_points
        self._best = max(self._points.values(), default=0.0)
        self._said: dict[int, str] = {}

    def of(self, uid: int) -> str:
        if uid not in self._said:
            self._said[uid] = self._words(uid)
        return self._said[uid]

    def _words(self, uid: int) -> str:
        behind = self._best - self._points.get(uid, self._best)
        if behind < 0.05:
            return ""
        used = self._usage.get(uid, 0.0)
        share = 100 * used / self._total if self._total else 0.0
        return (
            f"; fair share: -{behind:.1f} points ({user_name(uid)} used {used / 3600:.1f}"
            f" GPU-h lately, {share:.0f}% of all recent use)"
        )


def gpu_history(engine: Engine, seconds: float) -> api.GpuHistory:
    now = engine.clock()
    policy = engine.config.policy
    return api.GpuHistory(
        seconds,
        [
            api.GpuSeries(
                index=gpu.index,
                uuid=gpu.uuid,
                mem_total_bytes=gpu.mem_total_bytes,
                util_headroom_pct=policy.limits_for(gpu.uuid, gpu.index).util_headroom_pct,
                mem_headroom_pct=policy.limits_for(gpu.uuid, gpu.index).mem_headroom_pct,
                points=engine.timeline.series(gpu.uuid, seconds, now),
            )
            for gpu in engine.snapshot.gpus
        ],
    )


def gpu_list(engine: Engine) -> api.GpuList:
    """What the monitor sees, with each GPU's load as admission counts it (core.load)."""
    snap = engine.snapshot
    loads = engine.loads()
    return api.GpuList(
        backend=snap.backend,
        note=snap.note,
        taken_at=snap.taken_at,
        gpus=[_gpu_info(engine, g, loads[g.uuid]) for g in snap.gpus],
    )


def _gpu_info(engine: Engine, gpu: GpuSnapshot, load: GpuLoad) -> api.GpuInfo:
    return api.GpuInfo(
        index=gpu.index,
        uuid=gpu.uuid,
        name=gpu.name,
        mem_total_bytes=gpu.mem_total_bytes,
        mem_used_bytes=gpu.mem_used_bytes,
        util_pct=gpu.util_pct,
        util_smoothed_pct=load.view.util_pct,
        util_headroom_pct=load.limits.util_headroom_pct,
        mem_headroom_pct=load.limits.mem_headroom_pct,
        reserved_mem_bytes=load.reserved_bytes,
        jobs=sorted(load.job_ids),
        processes=[
            api.GpuProcessView(p.pid, p.mem_bytes, p.util_pct, p.name, engine.pid_owner.get(p.pid))
            for p in gpu.processes
        ],
        temperature_c=gpu.temperature_c,
        power_w=gpu.power_w,
    )
