"""Does a job fit on a GPU? One rule per admission policy, and its screen.

A rule answers ``None`` when the job fits on one GPU, else a Refusal: a function that
writes the reason, worded for ``gpugate ls``. Writing is deferred because a job's reason
shows three GPUs' refusals at most. The rules are the reference: placement asks them where
a job goes, and a waiting job's reason is written from them when someone reads it.

A screen is a rule compiled for the loads of one moment of a pass (they change only when
a job starts or GPUs are drained): in a few comparisons it tells that a job cannot get
enough GPUs. A pass refuses far more jobs than it starts, so asking the rules about every
GPU for every refused job was most of a simulation's time. A screen must never refuse a
job that the rules would place (tests/unit/test_schedule_speedpaths.py checks it on
random loads); it may let through one they refuse, and placement then decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from gpugate.core.load import GpuLoad
from gpugate.core.policy import Admission, Policy
from gpugate.model import Job
from gpugate.units import format_bytes

Refusal = Callable[[], str]
FitCheck = Callable[[GpuLoad, Job, Policy], "Refusal | None"]


def fit_headroom(load: GpuLoad, job: Job, policy: Policy) -> Refusal | None:
    """gpugate's rule: after adding the job, memory and utilization stay under headroom;
    on a GPU that already runs work, utilization stays under the share line too."""
    if (taken := _taken(load)) is not None:
        return taken
    if job.spec.exclusive or job.expected.whole_gpu:
        return _idle_reason(load, job, policy)
    return _mem_reason(load, job) or _util_reason(load, job, line=util_line(load, policy))


def util_line(load: GpuLoad, policy: Policy) -> float:
    """The utilization a declared-size job may bring this GPU to: the headroom, or the
    lower share line when the GPU already runs work (a gpugate job, or other processes
    holding memory). Co-located jobs slow each other down; by the interference model
    fitted on measured pairs (docs/interference.md), past about 50% summed utilization
    each keeps under 2/3 of its solo speed, for little gain in throughput."""
    limits = load.limits
    if load.job_ids or not load.is_idle(policy):
        return min(limits.util_headroom_pct, limits.share_util_pct)
    return limits.util_headroom_pct


def fit_memory_only(load: GpuLoad, job: Job, policy: Policy) -> Refusal | None:
    """Free memory right now, no reservation, no utilization (what gpusched-like tools do).
    Jobs it starts in the same pass count: such a tool would see them at its next poll."""
    free = _free_bytes(load)
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
    return _util_reason(load, job, adding=idle_util_added(job))


def idle_util_added(job: Job) -> float:
    """What an exclusive or unknown-size job adds to an idle GPU's utilization: an
    unknown-size job's 100% is a placeholder; an exclusive job's declared util is real."""
    return 0.0 if job.expected.whole_gpu else job.expected.util_pct


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


def _util_reason(
    load: GpuLoad, job: Job, adding: float | None = None, line: float | None = None
) -> Refusal | None:
    add = job.expected.util_pct if adding is None else adding
    headroom = load.limits.util_headroom_pct
    line = headroom if line is None else line
    if load.util_pct + add <= line and load.util_pct < line:
        return None
    util = load.util_pct
    which = "" if line >= headroom else " (share line: the GPU already runs work)"
    if add:
        return lambda: f"{load.label} util {util:.0f}% + {add:.0f}% > {line:.0f}%{which}"
    return lambda: f"{load.label} util {util:.0f}% > {line:.0f}%{which}"


def _free_bytes(load: GpuLoad) -> int:
    return load.view.mem_total_bytes - load.view.mem_used_bytes - load.started_now_bytes


# ------------------------------------------------------------------------------ screens
class Screen(Protocol):
    def first_admissible(self, jobs: Sequence[Job], start: int) -> int:
        """The index of the first job from ``start`` on that might get enough open GPUs
        (``len(jobs)`` if none): every job before it would be refused."""
        ...


ScreenBuilder = Callable[[Sequence[GpuLoad], Policy], Screen]


def screen_refuses(screen: Screen, job: Job) -> bool:
    return screen.first_admissible((job,), 0) != 0


class HeadroomScreen:
    """``fit_headroom`` on the loads of one moment, as plain numbers per open GPU."""

    __slots__ = ("_idle", "_idle_for_unknown_size", "_most_room", "_roomy")

    def __init__(self, open_loads: Sequence[GpuLoad], policy: Policy) -> None:
        free = [g for g in open_loads if g.exclusive_job is None and g.whole_job is None]
        # declared-size jobs: (memory room, utilization, its line), GPUs under the line only
        lines = [util_line(g, policy) for g in free]
        self._roomy = [
            (g.mem_cap_bytes - g.mem_bytes, g.util_pct, line)
            for g, line in zip(free, lines, strict=True)
            if g.util_pct < line
        ]
        self._most_room = max((room for room, _, _ in self._roomy), default=-1)
        # exclusive and unknown-size jobs: (utilization, its line) of the idle GPUs
        self._idle = [
            (g.util_pct, g.limits.util_headroom_pct)
            for g in free
            if not g.job_ids and g.is_idle(policy) and g.util_pct < g.limits.util_headroom_pct
        ]
        self._idle_for_unknown_size = sum(1 for util, line in self._idle if util + 0.0 <= line)

    def first_admissible(self, jobs: Sequence[Job], start: int) -> int:
        # one tight loop: it runs over most of the queue in every pass
        most_room, roomy = self._most_room, self._roomy
        for index in range(start, len(jobs)):
            job = jobs[index]
            wanted, need = job.spec.gpus, job.expected.mem_bytes
            if job.spec.exclusive:
                if self._idle_taking(idle_util_added(job)) >= wanted:
                    return index
            elif need is None:
                if self._idle_for_unknown_size >= wanted:
                    return index
            elif need <= most_room and _roomy_taking(roomy, need, job.expected.util_pct, wanted):
                return index
        return len(jobs)

    def _idle_taking(self, add: float) -> int:
        return sum(1 for util, line in self._idle if util + add <= line)


def _roomy_taking(
    roomy: list[tuple[int, float, float]], need: int, add: float, wanted: int
) -> bool:
    """Do ``wanted`` of these GPUs have the memory room and the utilization to spare?"""
    taking = 0
    for room, util, line in roomy:
        if need <= room and util + add <= line:
            taking += 1
            if taking >= wanted:
                return True
    return False


class MemoryOnlyScreen:
    """``fit_memory_only`` on the loads of one moment: the free bytes of each open GPU."""

    __slots__ = ("_free", "_most_free", "_untouched")

    def __init__(self, open_loads: Sequence[GpuLoad], policy: Policy) -> None:
        self._free = [_free_bytes(g) for g in open_loads]
        self._most_free = max(self._free, default=-1)
        # an unknown-size job needs the GPU's total memory free: nothing at all in use
        self._untouched = sum(
            1
            for g, free in zip(open_loads, self._free, strict=True)
            if g.view.mem_total_bytes <= free
        )

    def first_admissible(self, jobs: Sequence[Job], start: int) -> int:
        most_free = self._most_free
        for index in range(start, len(jobs)):
            job = jobs[index]
            need, wanted = job.expected.mem_bytes, job.spec.gpus
            if need is None:
                if self._untouched >= wanted:
                    return index
            elif need <= most_free and (
                wanted == 1 or sum(1 for free in self._free if need <= free) >= wanted
            ):
                return index
        return len(jobs)


class WholeGpuScreen:
    """``fit_whole_gpu`` on the loads of one moment: how many GPUs hold no gpugate job."""

    __slots__ = ("_empty",)

    def __init__(self, open_loads: Sequence[GpuLoad], policy: Policy) -> None:
        self._empty = sum(1 for g in open_loads if not g.job_ids)

    def first_admissible(self, jobs: Sequence[Job], start: int) -> int:
        empty = self._empty
        if empty == 0:  # the usual state of a busy machine: nobody fits
            return len(jobs)
        for index in range(start, len(jobs)):
            if jobs[index].spec.gpus <= empty:
                return index
        return len(jobs)


SCREENS: dict[Admission, ScreenBuilder] = {
    Admission.HEADROOM: HeadroomScreen,
    Admission.MEMORY_ONLY: MemoryOnlyScreen,
    Admission.WHOLE_GPU: WholeGpuScreen,
}
