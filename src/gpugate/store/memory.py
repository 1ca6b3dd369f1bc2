"""A Store in plain dicts, for tests and the simulator; the contract suite keeps it honest.

It keeps two small indexes (active ids, succeeded ids by command) so the simulator's
ticks and submits stay cheap with hundreds of thousands of jobs.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from gpugate.model import Job, Transition
from gpugate.states import JobState
from gpugate.store.base import GpuRun, UnknownJob


def _detached(job: Job, **changes: Any) -> Job:
    """The job (with ``changes``) owning copies of its mutable fields, as SQLite reads it back.

    A caller mutating the env dict it submitted must not change the stored job.
    """
    spec = dataclasses.replace(job.spec, env=dict(job.spec.env), after=tuple(job.spec.after))
    return dataclasses.replace(job, spec=spec, gpu_uuids=tuple(job.gpu_uuids), **changes)


def _newest_end(job: Job) -> tuple[bool, float, int]:
    """Sort key matching SQL ``ORDER BY ended_at DESC, id DESC`` (NULL ends sort last)."""
    return (job.ended_at is not None, job.ended_at or 0.0, job.id)


def _check_owner(job: Job, transition: Transition | None) -> None:
    """Refuse a transition filed under another job: the two would disagree."""
    if transition is not None and transition.job_id != job.id:
        raise ValueError(f"transition of job {transition.job_id} saved with job {job.id}")


class MemoryStore:
    """Store kept in memory; nothing survives the process. Thread-safe like SqliteStore."""

    def __init__(self) -> None:
        self._jobs: dict[int, Job] = {}
        self._history: dict[int, list[Transition]] = {}
        self._active_ids: set[int] = set()
        self._succeeded_ids: dict[str, set[int]] = {}  # by command, for recent_successes()
        self._last_id = 0  # ids are never reused, like SQLite's AUTOINCREMENT
        self._lock = threading.Lock()

    def add_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        with self._lock:
            stored = [self._add(job) for job in jobs]
        return stored

    def save(self, changes: Iterable[tuple[Job, Transition | None]]) -> None:
        batch = list(changes)
        with self._lock:
            # Check everything before changing anything: a batch is stored whole or not at all.
            for job, transition in batch:
                self._require(job.id)
                _check_owner(job, transition)
            for job, transition in batch:
                self._put(_detached(job))
                if transition is not None:
                    self._history[job.id].append(transition)

    def get(self, job_id: int) -> Job:
        with self._lock:
            self._require(job_id)
            return self._jobs[job_id]

    def get_many(self, job_ids: Iterable[int]) -> dict[int, Job]:
        with self._lock:
            return {i: self._jobs[i] for i in job_ids if i in self._jobs}

    def active(self) -> list[Job]:
        with self._lock:
            return [self._jobs[i] for i in sorted(self._active_ids)]

    def recent(self, limit: int) -> list[Job]:
        with self._lock:
            ended = (job for job in self._jobs.values() if not job.is_active)
            return heapq.nlargest(max(limit, 0), ended, key=_newest_end)

    def history(self, job_id: int) -> list[Transition]:
        with self._lock:
            self._require(job_id)
            return list(self._history[job_id])

    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        with self._lock:
            return {i: self._jobs[i].state for i in job_ids if i in self._jobs}

    def recent_successes(self, command: str, limit: int) -> list[Job]:
        with self._lock:
            succeeded = (self._jobs[i] for i in self._succeeded_ids.get(command, ()))
            return heapq.nlargest(max(limit, 0), succeeded, key=_newest_end)

    def gpu_runs_ended_since(self, since: float) -> list[GpuRun]:
        with self._lock:
            return [
                GpuRun(j.spec.owner_uid, j.spec.gpus, j.started_at, j.ended_at)
                for j in self._jobs.values()
                if j.spec.gpus
                and j.started_at is not None
                and j.ended_at is not None
                and j.ended_at >= since
            ]

    def close(self) -> None:
        """Nothing to release; the jobs stay readable, as after reopening SQLite."""

    def _require(self, job_id: int) -> None:
        if job_id not in self._jobs:
            raise UnknownJob(job_id)

    def _add(self, job: Job) -> Job:
        """Store one new job under the next id with its creation transition. Holds the lock."""
        self._last_id += 1
        stored = _detached(job, id=self._last_id)
        self._put(stored)
        creation = Transition(stored.id, None, stored.state, stored.submitted_at, stored.reason)
        self._history[stored.id] = [creation]
        return stored

    def _put(self, job: Job) -> None:
        """Replace the job by this detached value; keep the indexes in step. Holds the lock."""
        old = self._jobs.get(job.id)
        if old is not None:
            self._succeeded_ids.get(old.spec.command, set()).discard(old.id)
        self._jobs[job.id] = job
        if job.is_active:
            self._active_ids.add(job.id)
        else:
            self._active_ids.discard(job.id)
        if job.state is JobState.SUCCEEDED:
            self._succeeded_ids.setdefault(job.spec.command, set()).add(job.id)
