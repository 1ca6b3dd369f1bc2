"""Where a job goes: N distinct GPUs that fit, best fit first."""

from __future__ import annotations

from collections.abc import Iterable

from gpugate.core.admission import FitCheck, Refusal
from gpugate.core.load import GpuLoad
from gpugate.core.policy import Policy
from gpugate.model import Job

MAX_REASONS_SHOWN = 3


def place(
    job: Job, loads: Iterable[GpuLoad], fits: FitCheck, policy: Policy
) -> tuple[list[GpuLoad], str | None]:
    """Choose ``job.spec.gpus`` GPUs, or explain why there are not enough that fit.

    Best fit: the GPUs left with the least memory headroom after the job, so big gaps stay
    free for big jobs; ties go to the less utilized, then the lower index.
    """
    fitting: list[GpuLoad] = []
    refusals: list[Refusal] = []
    for load in loads:
        reason = _drained(load) or fits(load, job, policy)
        if reason is None:
            fitting.append(load)
        else:
            refusals.append(reason)
    wanted = job.spec.gpus
    if len(fitting) >= wanted:
        fitting.sort(key=lambda load: _fit_key(load, job))
        return fitting[:wanted], None
    return [], _not_enough(wanted, len(fitting), refusals)


def _drained(load: GpuLoad) -> Refusal | None:
    """The backfill bound holds under every admission rule: a drained GPU takes no one."""
    if (head := load.drained_for) is None:
        return None
    return lambda: f"{load.label} kept free for job {head} (waited past backfill bound)"


def _fit_key(load: GpuLoad, job: Job) -> tuple[int, float, int]:
    need = job.expected.mem_bytes or 0
    left = load.mem_cap_bytes - load.mem_bytes - need
    if job.expected.whole_gpu or job.spec.exclusive:
        left = load.mem_bytes  # it takes the whole GPU: prefer the emptiest
    return left, load.util_pct, load.view.index


def _not_enough(wanted: int, fitting: int, refusals: list[Refusal]) -> str:
    shown = "; ".join(write() for write in refusals[:MAX_REASONS_SHOWN])
    if len(refusals) > MAX_REASONS_SHOWN:
        shown += f"; and {len(refusals) - MAX_REASONS_SHOWN} more"
    if wanted == 1:
        return shown or "no GPU"
    return f"needs {wanted} GPUs, {fitting} fit: {shown}"
