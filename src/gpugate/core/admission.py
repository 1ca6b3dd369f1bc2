"""Does a job fit on a GPU? One function per admission policy; each answers ``None`` when
it fits, else a Refusal: a function that writes the reason, worded for ``gpugate ls``.
Writing is deferred because a pass refuses far more GPUs than it ever shows (placement
shows three per job): formatting every one was most of a simulation's time."""

from __future__ import annotations

from collections.abc import Callable

from gpugate.core.load import GpuLoad
from gpugate.core.policy import Admission, Policy
from gpugate.model import Job
from gpugate.units import format_bytes

Refusal = Callable[[], str]
FitCheck = Callable[[GpuLoad, Job, Policy], "Refusal | None"]


def fit_headroom(load: GpuLoad, job: Job, policy: Policy) -> Refusal | None:
    """gpugate's rule: after adding the job, memory and utilization stay under headroom."""
    if (taken := _taken(load)) is not None:
        return taken
    if job.spec.exclusive or job.expected.whole_gpu:
        return _idle_reason(load, job, policy)
    return _mem_reason(load, job) or _util_reason(load, job)


def fit_memory_only(load: GpuLoad, job: Job, policy: Policy) -> Refusal | None:
    """Free memory right now, no reservation, no utilization (what gpusched-like tools do).
    Jobs it starts in the same pass count: such a tool would see them at its next poll."""
    free = load.view.mem_total_bytes - load.view.mem_used_bytes - load.started_now_bytes
    need = load.view.mem_total_bytes if job.expected.mem_bytes is None else job.expected.mem_bytes
    if need > free:
        return lambda: f"{load.label} free memory {format_bytes(free)} < {format_bytes(need)}"
    return None


def fit_whole_gpu(load: GpuLoad, job: Job, policy: Policy) -> Refusal | None:
    """One job per GPU, whatever the GPU is doing (task-spooler-like queues)."""
    if load.job_ids:
        return lambda: f"{load.label} runs job {load.job_ids[0]}"
    return None


FIT_CHECKS: dict[Admission, FitCheck] = {
    Admission.HEADROOM: fit_headroom,
    Admission.MEMORY_ONLY: fit_memory_only,
    Admission.WHOLE_GPU: fit_whole_gpu,
}


def _taken(load: GpuLoad) -> Refusal | None:
    if load.exclusive_job is not None:
        return lambda: f"{load.label} held exclusively by job {load.exclusive_job}"
    if load.whole_job is not None:
        return lambda: f"{load.label} reserved for job {load.whole_job} (unknown size, ramping up)"
    return None


def _idle_reason(load: GpuLoad, job: Job, policy: Policy) -> Refusal | None:
    if load.job_ids:
        what = "exclusive" if job.spec.exclusive else "unknown-size (declare --mem)"
        return lambda: f"{load.label} runs job {load.job_ids[0]}; {what} jobs need an idle GPU"
    if not load.is_idle(policy):
        used = load.view.mem_used_bytes
        return lambda: f"{load.label} not idle: {format_bytes(used)} in use by other processes"
    # an unknown-size job's 100% is a placeholder; an exclusive job's declared util is real
    return _util_reason(load, job, adding=0.0 if job.expected.whole_gpu else None)


def _mem_reason(load: GpuLoad, job: Job) -> Refusal | None:
    need = job.expected.mem_bytes or 0
    if load.mem_bytes + need <= load.mem_cap_bytes:
        return None
    used, reserved = load.mem_bytes, load.reserved_bytes  # the values now, not when written

    def reason() -> str:
        held = f" (incl. {format_bytes(reserved)} reserved)" if reserved else ""
        return (
            f"{load.label} mem {format_bytes(used)}{held} + {format_bytes(need)}"
            f" > {load.limits.mem_headroom_pct:.0f}% of {format_bytes(load.view.mem_total_bytes)}"
        )

    return reason


def _util_reason(load: GpuLoad, job: Job, adding: float | None = None) -> Refusal | None:
    add = job.expected.util_pct if adding is None else adding
    line = load.limits.util_headroom_pct
    if load.util_pct + add <= line and load.util_pct < line:
        return None
    util = load.util_pct
    if add:
        return lambda: f"{load.label} util {util:.0f}% + {add:.0f}% > {line:.0f}%"
    return lambda: f"{load.label} util {util:.0f}% > {line:.0f}%"
