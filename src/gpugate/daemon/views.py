"""Turn the daemon's state into the wire format (api.schemas)."""

from __future__ import annotations

from collections import Counter

from gpugate.api import schemas as api
from gpugate.core.queue import in_queue_order
from gpugate.daemon.engine import Engine
from gpugate.model import GpuSnapshot, Job, Transition
from gpugate.runner.local import STDERR_FILE, STDOUT_FILE
from gpugate.states import JobState


def job_view(engine: Engine, job: Job) -> api.JobView:
    index_of = {g.uuid: g.index for g in engine.snapshot.gpus}
    reason = engine.reasons.get(job.id, job.reason) if job.is_active else job.reason
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
        queued = in_queue_order(queued, engine.clock(), policy.aging_per_hour)[:queued_limit]
    others = sorted((j for j in active if j.state is not JobState.QUEUED), key=lambda j: j.id)
    # the most recently ended, shown like the rest in id order
    recent = sorted(engine.store.recent(recent_limit), key=lambda j: j.id) if recent_limit else []
    jobs = others + sorted(queued, key=lambda j: j.id) + recent
    if states:
        jobs = [j for j in jobs if j.state.value in states]
    return api.JobList([job_view(engine, j) for j in jobs], dict(counts))


def gpu_list(engine: Engine) -> api.GpuList:
    snap = engine.snapshot
    views = {v.uuid: v for v in engine.gpu_views()}
    return api.GpuList(
        backend=snap.backend,
        note=snap.note,
        taken_at=snap.taken_at,
        gpus=[_gpu_view(engine, g, views[g.uuid].util_pct) for g in snap.gpus],
    )


def _gpu_view(engine: Engine, gpu: GpuSnapshot, smoothed: float | None) -> api.GpuInfo:
    limits = engine.config.policy.limits_for(gpu.uuid, gpu.index)
    holders = [j for j in engine.active.values() if gpu.uuid in j.gpu_uuids and j.state.holds_gpus]
    reserved = sum(_reserved_mem(engine, j, gpu.uuid) for j in holders)
    return api.GpuInfo(
        index=gpu.index,
        uuid=gpu.uuid,
        name=gpu.name,
        mem_total_bytes=gpu.mem_total_bytes,
        mem_used_bytes=gpu.mem_used_bytes,
        util_pct=gpu.util_pct,
        util_smoothed_pct=smoothed,
        util_headroom_pct=limits.util_headroom_pct,
        mem_headroom_pct=limits.mem_headroom_pct,
        reserved_mem_bytes=reserved,
        jobs=sorted(j.id for j in holders),
        processes=[
            api.GpuProcessView(p.pid, p.mem_bytes, p.util_pct, p.name, engine.pid_owner.get(p.pid))
            for p in gpu.processes
        ],
        temperature_c=gpu.temperature_c,
        power_w=gpu.power_w,
    )


def _reserved_mem(engine: Engine, job: Job, uuid: str) -> int:
    if job.expected.mem_bytes is None:
        return 0
    seen = engine.usage.get(job.id, {}).get(uuid)
    return max(0, job.expected.mem_bytes - (seen.mem_bytes if seen else 0))
