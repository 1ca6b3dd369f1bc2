"""What the core is asked and what it answers: plain frozen data, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gpugate.core.policy import Policy
from gpugate.model import Job, JobUsage
from gpugate.states import JobState


@dataclass(frozen=True, slots=True)
class GpuView:
    """One GPU as the core needs it: observed memory and smoothed utilization."""

    uuid: str
    index: int
    mem_total_bytes: int
    mem_used_bytes: int  # every process, gpugate's or not
    util_pct: float | None  # smoothed over the window; None: the device does not say


@dataclass(frozen=True, slots=True)
class Drain:
    """GPUs kept free for a head job that waited past the backfill bound."""

    job_id: int
    gpu_uuids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SchedulingRequest:
    """Everything one scheduling pass may look at."""

    now: float
    gpus: Sequence[GpuView]
    jobs: Sequence[Job]  # the active ones: queued, held, starting, running
    policy: Policy
    usage: Mapping[int, Mapping[str, JobUsage]] = field(default_factory=dict)  # job -> uuid ->
    dependency_states: Mapping[int, JobState] = field(default_factory=dict)  # inactive deps
    # the previous pass's drain: kept for that job, on those GPUs, while it waits, so the
    # room emptied for it is not handed to whichever job heads the queue next
    drain: Drain | None = None


@dataclass(frozen=True, slots=True)
class Start:
    job_id: int
    gpu_uuids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """A decision about one job with the sentence that explains it."""

    job_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class SchedulingReply:
    """What to do now, and why everything else waits."""

    starts: tuple[Start, ...]
    waiting: Mapping[int, str]  # job id -> why it is not starting
    cancels: tuple[Verdict, ...] = ()  # dependencies that can never be met
    ramped: tuple[Verdict, ...] = ()  # starting jobs whose reservation ends
    drained_for: int | None = None  # head job whose GPUs are kept free (backfill bound)
    drain: Drain | None = None  # ...and those GPUs: pass it to the next request
    # when time alone may change a decision (a ramp window ends, a wait reaches the
    # backfill bound): call schedule() again then at the latest; None: only events matter
    next_decision_at: float | None = None
