"""The daemon's Store: one SQLite file, crash-safe, with the schema kept by ``migrations``.

Durability: WAL journal with ``synchronous=NORMAL``. A commit is in the WAL before
``save`` returns, so a ``kill -9`` of the daemon loses nothing committed and an interrupted
batch is simply absent on reopen. A power loss may lose the last few commits (the WAL is
not fsynced on each commit) but never corrupts the database. FULL would fsync every commit,
too slow for a tick that saves every few seconds, for little gain on one machine.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from gpugate.model import Expectation, ExpectationSource, Job, JobSpec, PreemptMode, Transition
from gpugate.states import TERMINAL, JobState
from gpugate.store.base import GpuRun, UnknownJob
from gpugate.store.migrations import migrate, refuse_newer, transaction


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


BUSY_TIMEOUT_S = 10.0  # how long a writer waits for another process's lock (e.g. the CLI)
_DECODER = json.JSONDecoder()
_IDS_PER_QUERY = 500  # ids bound in one IN (...): under SQLite's bound-parameter limit

# The jobs table's columns (see migrations) in three runs, in the order of _job_row and
# _SELECT_JOBS: "id", then the spec's, then the job's own, then fields stored as they are.
# fmt: off
_SPEC_COLUMNS = (
    "command", "cwd", "env_id", "gpus", "mem_bytes", "util_pct", "exclusive_gpu", "after_json",
    "name", "owner_uid", "preempt", "checkpoint_path",
)
_OWN_COLUMNS = (
    "state", "priority", "submitted_at", "expected_mem_bytes", "expected_util_pct",
    "expected_source", "expected_run_s", "gpu_uuids_json", "cancel_requested",
)
_PLAIN_JOB_FIELDS = (
    "reason", "pid", "pid_start_time", "started_at", "ramped_at", "ended_at", "exit_code",
    "peak_mem_bytes", "peak_util_pct", "queued_at", "checkpoint_requested_at", "checkpoints",
    "oom_retries", "preemptions", "preempted_for", "gpu_memory_released",
)
# fmt: on
_JOB_COLUMNS = ("id", *_SPEC_COLUMNS, *_OWN_COLUMNS, *_PLAIN_JOB_FIELDS)
_SPEC = slice(1, 1 + len(_SPEC_COLUMNS))
_OWN = slice(_SPEC.stop, _SPEC.stop + len(_OWN_COLUMNS))
_PLAIN = slice(_OWN.stop, None)
# reads get the environment's JSON where writes put its env_id
_SELECT_COLUMNS = tuple("envs.json" if c == "env_id" else c for c in _JOB_COLUMNS)
_SELECT_JOBS = f"SELECT {', '.join(_SELECT_COLUMNS)} FROM jobs JOIN envs USING (env_id)"
_INSERT_ENV = "INSERT OR IGNORE INTO envs (json) VALUES (?)"
_SELECT_ENV = "SELECT env_id FROM envs WHERE json = ?"
_INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({_placeholders(len(_JOB_COLUMNS))})"
)
_ASSIGNMENTS = ", ".join(f"{c} = ?" for c in _JOB_COLUMNS[1:])
_UPDATE_JOB = f"UPDATE jobs SET {_ASSIGNMENTS} WHERE id = ?"  # the row's id moves last
_SELECT_TRANSITIONS = (
    "SELECT job_id, from_state, to_state, at, reason FROM transitions WHERE job_id = ? ORDER BY seq"
)
_APPEND_TRANSITION = (
    "INSERT INTO transitions (job_id, seq, from_state, to_state, at, reason) "
    "VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM transitions WHERE job_id = ?1), "
    "?2, ?3, ?4, ?5)"
)
# AUTOINCREMENT's high-water mark: above every id ever handed out, even deleted ones.
_NEXT_ID = (
    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'jobs'), 0), "
    "COALESCE((SELECT MAX(id) FROM jobs), 0)) + 1"
)
_ACTIVE_STATES = tuple(s.value for s in JobState if not s.is_terminal)
_TERMINAL_STATES = tuple(s.value for s in JobState if s in TERMINAL)
_SELECT_ACTIVE = f"{_SELECT_JOBS} WHERE state IN ({_placeholders(len(_ACTIVE_STATES))}) ORDER BY id"
# ended_at DESC, id DESC: the order of the ended_at index read backwards (no sort).
_NEWEST_END = "ORDER BY ended_at DESC, id DESC"
# "+state": keeps SQLite off the state index, which would sort every ended job for a few.
_SELECT_RECENT = (
    f"{_SELECT_JOBS} WHERE +state IN ({_placeholders(len(_TERMINAL_STATES))}) {_NEWEST_END} LIMIT ?"
)
_SELECT_GPU_RUNS = (  # jobs_by_ended serves the range
    "SELECT owner_uid, gpus, started_at, ended_at FROM jobs"
    " WHERE ended_at >= ? AND gpus > 0 AND started_at IS NOT NULL"
)
_SELECT_SUCCESSES = f"{_SELECT_JOBS} WHERE command = ? AND state = ? {_NEWEST_END} LIMIT ?"


def _env_json(env: Mapping[str, str]) -> str:
    # sorted: the same environment is the same text, hence one row in envs
    return json.dumps(dict(env), sort_keys=True, separators=(",", ":")) if env else "{}"


def _array_json(values: tuple[Any, ...]) -> str:
    return json.dumps(values) if values else "[]"


@functools.lru_cache(maxsize=256)
def _env_from_json(text: str) -> Mapping[str, str]:
    """One read-only mapping per distinct environment, shared by every job that has it
    (100k jobs of a sweep hold one copy, not 100k)."""
    # raw_decode: the text is our own compact JSON, no need for loads' whitespace checks.
    env: dict[str, str] = _DECODER.raw_decode(text)[0] if text != "{}" else {}
    return MappingProxyType(env)


def _tuple_from_json(text: str) -> tuple[Any, ...]:
    return tuple(_DECODER.raw_decode(text)[0]) if text != "[]" else ()


def _spec_row(spec: JobSpec, env_id: int) -> tuple[Any, ...]:
    """The spec's columns in _JOB_COLUMNS order; after as JSON (no SQL type fits)."""
    return (
        spec.command,
        spec.cwd,
        env_id,
        spec.gpus,
        spec.mem_bytes,
        spec.util_pct,
        int(spec.exclusive),
        _array_json(spec.after),
        spec.name,
        spec.owner_uid,
        spec.preempt.value,
        spec.checkpoint_path,
    )


def _job_row(job: Job, env_id: int) -> tuple[Any, ...]:
    """Every column of the job's row, in _JOB_COLUMNS order.

    Positional rather than named parameters: binding by name costs a third more on 100k rows.
    """
    expected = job.expected
    return (
        job.id,
        *_spec_row(job.spec, env_id),
        # _OWN_COLUMNS:
        job.state.value,
        job.priority,
        job.submitted_at,
        expected.mem_bytes,
        expected.util_pct,
        expected.source.value,
        expected.run_s,
        _array_json(job.gpu_uuids),
        int(job.cancel_requested),
        *[getattr(job, f) for f in _PLAIN_JOB_FIELDS],
    )


def _spec_from_row(values: Sequence[Any]) -> JobSpec:
    """The JobSpec of a row's _SPEC_COLUMNS."""
    (command, cwd, env_json, gpus, mem_bytes, util_pct, exclusive, after_json, name, uid,
     preempt, checkpoint_path) = values  # fmt: skip
    return JobSpec(
        command=command,
        cwd=cwd,
        env=_env_from_json(env_json),
        gpus=gpus,
        mem_bytes=mem_bytes,
        util_pct=util_pct,
        exclusive=bool(exclusive),
        after=_tuple_from_json(after_json),
        name=name,
        owner_uid=uid,
        preempt=PreemptMode(preempt),
        checkpoint_path=checkpoint_path,
    )


def _job_from_row(row: tuple[Any, ...]) -> Job:
    """The Job of a row selected with _SELECT_JOBS.

    Unpacked by position, not through a dict per row: that made active() twice as slow.
    """
    state, priority, submitted_at, mem_bytes, util_pct, source, run_s, uuids, cancel = row[_OWN]
    plain = dict(zip(_PLAIN_JOB_FIELDS, row[_PLAIN], strict=True))
    plain["gpu_memory_released"] = bool(plain["gpu_memory_released"])  # stored as 0/1
    return Job(
        id=row[0],
        spec=_spec_from_row(row[_SPEC]),
        state=JobState(state),
        priority=priority,
        submitted_at=submitted_at,
        expected=Expectation(mem_bytes, util_pct, ExpectationSource(source), run_s),
        gpu_uuids=_tuple_from_json(uuids),
        cancel_requested=bool(cancel),
        **plain,
    )


def _transition_from_row(values: tuple[Any, ...]) -> Transition:
    """The Transition of a row selected with _SELECT_TRANSITIONS."""
    job_id, before, after, at, reason = values
    from_state = None if before is None else JobState(before)
    return Transition(job_id, from_state, JobState(after), at, reason)


def _check_owner(job: Job, transition: Transition | None) -> None:
    """Refuse a transition filed under another job: the two rows would disagree."""
    if transition is not None and transition.job_id != job.id:
        raise ValueError(f"transition of job {transition.job_id} saved with job {job.id}")


class SqliteStore:
    """Store in one SQLite file at ``path``, created and migrated on open.

    Raises migrations.SchemaTooNew, without touching the file, if a newer gpugate wrote it.
    Safe to share between threads (the API may read from worker threads): every call holds
    one lock, since a sqlite3 connection must not run two statements at once.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves (see migrations.transaction).
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            _configure(conn)
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """Hold the lock for one transaction; reads pass ``BEGIN`` for one snapshot."""
        with self._lock, transaction(self._conn, begin):
            yield self._conn

    def add_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        if not jobs:
            return []
        with self._transaction() as conn:
            # Ids are chosen here, under the write lock, so both tables get them in one pass.
            first_id: int = conn.execute(_NEXT_ID).fetchone()[0]
            stored = [dataclasses.replace(j, id=first_id + i) for i, j in enumerate(jobs)]
            env_ids = _EnvIds(conn)
            conn.executemany(_INSERT_JOB, (_job_row(j, env_ids.of(j.spec.env)) for j in stored))
            creations = ((j.id, None, j.state.value, j.submitted_at, j.reason) for j in stored)
            conn.executemany(_APPEND_TRANSITION, creations)
        return stored

    def save(self, changes: Iterable[tuple[Job, Transition | None]]) -> None:
        with self._transaction() as conn:
            env_ids = _EnvIds(conn)
            for job, transition in changes:
                _save_one(conn, job, transition, env_ids.of(job.spec.env))

    def get(self, job_id: int) -> Job:
        found = self.get_many([job_id])
        if job_id not in found:
            raise UnknownJob(job_id)
        return found[job_id]

    def get_many(self, job_ids: Iterable[int]) -> dict[int, Job]:
        with self._transaction("BEGIN") as conn:
            rows = _rows_by_ids(conn, _SELECT_JOBS, job_ids)
            return {job.id: job for job in map(_job_from_row, rows)}

    def active(self) -> list[Job]:
        return self._jobs(_SELECT_ACTIVE, _ACTIVE_STATES)

    def recent(self, limit: int) -> list[Job]:
        if limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
            return []
        return self._jobs(_SELECT_RECENT, (*_TERMINAL_STATES, limit))

    def history(self, job_id: int) -> list[Transition]:
        with self._transaction("BEGIN") as conn:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise UnknownJob(job_id)
            rows = conn.execute(_SELECT_TRANSITIONS, (job_id,))
            return [_transition_from_row(row) for row in rows]

    def states(self, job_ids: Iterable[int]) -> dict[int, JobState]:
        with self._transaction("BEGIN") as conn:
            rows = _rows_by_ids(conn, "SELECT id, state FROM jobs", job_ids)
            return {job_id: JobState(state) for job_id, state in rows}

    def recent_successes(self, command: str, limit: int) -> list[Job]:
        return self._jobs(_SELECT_SUCCESSES, (command, JobState.SUCCEEDED.value, max(limit, 0)))

    def gpu_runs_ended_since(self, since: float) -> list[GpuRun]:
        with self._lock:
            rows = self._conn.execute(_SELECT_GPU_RUNS, (since,))
            return [GpuRun(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _jobs(self, query: str, params: Sequence[object]) -> list[Job]:
        with self._lock:
            return [_job_from_row(row) for row in self._conn.execute(query, params)]


def _configure(conn: sqlite3.Connection) -> None:
    """Set the connection up for crash safety; refuse a newer schema before any write."""
    refuse_newer(conn)  # switching to WAL rewrites the header: check first
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode not in ("wal", "memory"):  # "memory": an in-memory database, nothing to lose
        raise RuntimeError(f"SQLite refused WAL journal mode (got {mode!r})")
    conn.execute("PRAGMA synchronous = NORMAL")  # see the module docstring for why
    conn.execute("PRAGMA foreign_keys = ON")


class _EnvIds:
    """The env_id of each environment written in one transaction, inserting new ones.

    Memoized by object identity too: the jobs of one batch share one env object, and
    encoding a 6 kB environment 100k times would cost seconds.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.by_text: dict[str, int] = {}
        self.by_object: dict[int, tuple[Mapping[str, str], int]] = {}

    def of(self, env: Mapping[str, str]) -> int:
        known = self.by_object.get(id(env))
        if known is not None and known[0] is env:
            return known[1]
        text = _env_json(env)
        env_id = self.by_text.get(text)
        if env_id is None:
            self.conn.execute(_INSERT_ENV, (text,))
            env_id = int(self.conn.execute(_SELECT_ENV, (text,)).fetchone()[0])
            self.by_text[text] = env_id
        self.by_object[id(env)] = (env, env_id)  # holds env: its id cannot be reused meanwhile
        return env_id


def _save_one(
    conn: sqlite3.Connection, job: Job, transition: Transition | None, env_id: int
) -> None:
    """Replace the job's row and append its transition; an error rolls the batch back."""
    _check_owner(job, transition)
    job_id, *columns = _job_row(job, env_id)
    if conn.execute(_UPDATE_JOB, (*columns, job_id)).rowcount == 0:
        raise UnknownJob(job.id)
    if transition is not None:
        from_state = None if transition.from_state is None else transition.from_state.value
        edge = (from_state, transition.to_state.value, transition.at, transition.reason)
        conn.execute(_APPEND_TRANSITION, (transition.job_id, *edge))


def _rows_by_ids(conn: sqlite3.Connection, select: str, job_ids: Iterable[int]) -> list[Any]:
    """Rows of ``select`` (a query without WHERE) for these ids, a bounded chunk at a time."""
    ids = list(dict.fromkeys(job_ids))
    rows: list[Any] = []
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start : start + _IDS_PER_QUERY]
        query = f"{select} WHERE id IN ({_placeholders(len(chunk))})"
        rows.extend(conn.execute(query, chunk))
    return rows
