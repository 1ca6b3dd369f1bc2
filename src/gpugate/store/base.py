"""The Store protocol every backend implements (one contract test suite checks them all)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

from gpugate.model import Job, Transition
from gpugate.states import JobState


class UnknownJob(KeyError):
    """No job with this id is stored."""

    def __init__(self, job_id: int) -> None:
        super().__init__(job_id)
        self.job_id = job_id

    def __str__(self) -> str:
        return f"no job with id {self.job_id}"


class GpuRun(NamedTuple):
    owner_uid: int
    gpus: int
    started_at: float
    ended_at: float


class Store(Protocol):
    """Durable home of jobs and their state history.

    Every write is atomic: a batch is stored whole or not at all, and a job row never
    disagrees with its last stored transition. Reads return frozen ``Job`` values.
    """

    def add_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        """Store new jobs (their ``id`` is ignored), assigning increasing ids in order.

        Records each job's creation as a transition from ``None`` to its state with its
        ``reason``, at its ``submitted_at``. Returns the jobs with their ids.
        """
        ...

    def save(self, changes: Iterable[tuple[Job, Transition | None]]) -> None:
        """Replace stored jobs by these values and append their transitions, in one commit.

        Raises UnknownJob (and stores nothing) if any job does not exist.
        """
        ...

    def get(self, job_id: int) -> Job:
        """The job with this id; raises UnknownJob."""
        ...

    def get_many(self, job_ids: Iterable[int]) -> dict[int, Job]:
        """The stored jobs among these ids (unknown ids are left out)."""
        ...

    def active(self) -> list[Job]:
        """Every job not in a terminal state, by id."""
        ...

    def recent(self, limit: int) -> list[Job]:
        """Up to ``limit`` jobs in a terminal state, the most recently ended first."""
        ...

    def history(self, job_id: int) -> list[Transition]:
        """The job's transitions, oldest first; raises UnknownJob."""
        ...

    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        """Current state of each known id among ``job_ids``."""
        ...

    def recent_successes(self, command: str, limit: int) -> list[Job]:
        """Up to ``limit`` succeeded jobs with exactly this command, the most recently
        ended first: what gpugate learns a command's memory, utilization and run time from."""
        ...

    def gpu_runs_ended_since(self, since: float) -> list[GpuRun]:
        """The last run of each GPU job that ended at or after ``since``: whose, how
        many GPUs, from when to when (what fair share rebuilds its ledger from)."""
        ...

    def close(self) -> None: ...
