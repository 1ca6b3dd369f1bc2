"""What the core is asked and what it answers: plain frozen data, no I/O."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gpugate.core.policy import Policy
from gpugate.model import Job, JobUsage, PreemptMode
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
    # each user's recent GPU-seconds, decayed (core.fairshare.current_usage), by uid
    user_usage: Mapping[int, float] = field(default_factory=dict)
    # when each user's latest job started, by uid: with fair share in play, a job ages
    # only from then (core.queue)
    last_start_by_user: Mapping[int, float] = field(default_factory=dict)


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
class Preemption:
    """Make ``job_id`` yield, the way it allowed at submit, so that ``for_job`` can start."""

    job_id: int
    how: PreemptMode
    for_job: int
    reason: str


class ReasonWriter(Protocol):
    def write(self, job: Job) -> str:
        """Why this job waits, in words for ``gpugate ls``."""
        ...


Reason = str | ReasonWriter  # a sentence, or what writes it (per job) when it is read
_Written = str | tuple[ReasonWriter, Job]  # a sentence, or its writer and job


class WaitingReasons(Mapping[int, str]):
    """Job id -> why it is not starting, as a read-only mapping of sentences.

    A pass refuses most of the queue, and the reasons are read only by ``gpugate ls`` and
    the API (the simulator reads none). So the pass notes them in bulk (a run of jobs, one
    reason), the mapping indexes them by job id when first read, and a ``ReasonWriter``,
    which holds the loads as they were when the jobs were refused, writes a job's
    sentence the first time it is read.
    """

    __slots__ = ("_by_id", "_noted")

    def __init__(self) -> None:
        self._noted: list[tuple[Sequence[Job], Reason]] = []  # in the order decided
        self._by_id: dict[int, _Written] | None = None  # built on the first read

    def note(self, job: Job, reason: Reason) -> None:
        self.note_all((job,), reason)

    def note_all(self, jobs: Sequence[Job], reason: Reason) -> None:
        """These jobs wait for this reason (a later note for a job replaces it). The
        sequence is kept as it is, not copied: the caller must not change it."""
        if not jobs:
            return
        if self._by_id is None:
            self._noted.append((jobs, reason))
        else:
            _index(self._by_id, jobs, reason)

    def _reasons(self) -> dict[int, _Written]:
        if self._by_id is None:
            self._by_id = {}
            for jobs, reason in self._noted:
                _index(self._by_id, jobs, reason)
            self._noted = []
        return self._by_id

    def __getitem__(self, job_id: int) -> str:
        reasons = self._reasons()
        reason = reasons[job_id]
        if isinstance(reason, str):
            return reason
        writer, job = reason
        text = reasons[job_id] = writer.write(job)
        return text

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._reasons()  # without writing the sentence

    def __iter__(self) -> Iterator[int]:
        return iter(self._reasons())

    def __len__(self) -> int:
        return len(self._reasons())

    def __repr__(self) -> str:
        return f"WaitingReasons({dict(self.items())!r})"


def _index(by_id: dict[int, _Written], jobs: Sequence[Job], reason: Reason) -> None:
    if isinstance(reason, str):
        by_id.update(dict.fromkeys([job.id for job in jobs], reason))
    else:
        by_id.update({job.id: (reason, job) for job in jobs})


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
    preemptions: tuple[Preemption, ...] = ()  # running jobs to yield for a higher one
    resumes: tuple[Verdict, ...] = ()  # jobs the scheduler suspended that fit again
