"""Schema migrations of the SQLite store, from the first release on.

The schema version lives in the database header (``PRAGMA user_version``). ``MIGRATIONS[i]``
takes a database from version ``i`` to ``i + 1``. Steps are only ever appended: a released
step is never edited, because databases in the field already ran it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Migration = Callable[[sqlite3.Connection], None]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer gpugate; this one leaves it untouched."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the database has schema version {found}, but this gpugate knows versions up to "
            f"{known}: it was written by a newer gpugate. Upgrade gpugate to open it "
            "(it was left untouched)."
        )
        self.found = found
        self.known = known


def _sql(*statements: str) -> Migration:
    """A step made of SQL statements, run one by one.

    ``executescript`` would commit the open transaction before running, so a step that
    fails halfway could leave a half-migrated database; single ``execute`` calls cannot.
    """

    def run(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return run


_V1_CREATE_TABLES = _sql(
    # Environments stored once each: a sweep of 100k jobs shares its submitter's (~6 kB)
    # environment, which inline would be most of the database.
    """CREATE TABLE envs (
        env_id INTEGER PRIMARY KEY,
        json TEXT NOT NULL UNIQUE
    )""",
    # AUTOINCREMENT: ids are never reused, even after the highest job is deleted, so a job
    # id printed to a user yesterday cannot name another job today.
    """CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        command TEXT NOT NULL,
        cwd TEXT NOT NULL,
        env_id INTEGER NOT NULL REFERENCES envs (env_id),
        gpus INTEGER NOT NULL,
        mem_bytes INTEGER,
        util_pct REAL,
        exclusive_gpu INTEGER NOT NULL,
        after_json TEXT NOT NULL,
        name TEXT NOT NULL,
        owner_uid INTEGER NOT NULL,
        state TEXT NOT NULL,
        priority INTEGER NOT NULL,
        submitted_at REAL NOT NULL,
        expected_mem_bytes INTEGER,
        expected_util_pct REAL NOT NULL,
        expected_source TEXT NOT NULL,
        reason TEXT NOT NULL,
        gpu_uuids_json TEXT NOT NULL,
        pid INTEGER,
        pid_start_time REAL,
        started_at REAL,
        ramped_at REAL,
        ended_at REAL,
        exit_code INTEGER,
        peak_mem_bytes INTEGER,
        peak_util_pct REAL,
        cancel_requested INTEGER NOT NULL,
        queued_at REAL
    )""",
    "CREATE INDEX jobs_by_state ON jobs (state)",
    # Serves recent_successes(): equality on command and state, then the newest ended_at.
    "CREATE INDEX jobs_by_command_state_ended ON jobs (command, state, ended_at)",
    # Serves recent(): the newest ended jobs without sorting every finished job.
    "CREATE INDEX jobs_by_ended ON jobs (ended_at)",
    """CREATE TABLE transitions (
        job_id INTEGER NOT NULL REFERENCES jobs (id),
        seq INTEGER NOT NULL,
        from_state TEXT,
        to_state TEXT NOT NULL,
        at REAL NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    )""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# Expected run time (core.runtime): it orders the queue, so it must survive a restart.
_V2_EXPECTED_RUN_TIME = _sql("ALTER TABLE jobs ADD COLUMN expected_run_s REAL")

# Preemption: what a job allows (--preempt, --checkpoint) and its checkpoint-requeue state.
_V3_PREEMPTION = _sql(
    "ALTER TABLE jobs ADD COLUMN preempt TEXT NOT NULL DEFAULT 'never'",
    "ALTER TABLE jobs ADD COLUMN checkpoint_path TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE jobs ADD COLUMN checkpoint_requested_at REAL",
    "ALTER TABLE jobs ADD COLUMN checkpoints INTEGER NOT NULL DEFAULT 0",
)

# Out-of-memory retries: how often a job was requeued with a raised memory expectation.
_V4_OOM_RETRIES = _sql("ALTER TABLE jobs ADD COLUMN oom_retries INTEGER NOT NULL DEFAULT 0")

# Automatic preemption: how often the scheduler preempted a job, and for which job.
_V5_PREEMPTED = _sql(
    "ALTER TABLE jobs ADD COLUMN preemptions INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN preempted_for INTEGER",
)

# Transparent suspend: whether a suspended job's GPU memory was moved to host memory.
_V6_MEMORY_RELEASED = _sql(
    "ALTER TABLE jobs ADD COLUMN gpu_memory_released INTEGER NOT NULL DEFAULT 0"
)

MIGRATIONS: tuple[Migration, ...] = (
    _V1_CREATE_TABLES,
    _V2_EXPECTED_RUN_TIME,
    _V3_PREEMPTION,
    _V4_OOM_RETRIES,
    _V5_PREEMPTED,
    _V6_MEMORY_RELEASED,
)
LATEST_VERSION = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The version stored in the database header (0 for a new, empty file)."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def refuse_newer(conn: sqlite3.Connection) -> None:
    """Raise SchemaTooNew if a newer gpugate wrote this database. Reads only."""
    found = schema_version(conn)
    if found > LATEST_VERSION:
        raise SchemaTooNew(found, LATEST_VERSION)


@contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """Run the block as one transaction on an autocommit connection (``isolation_level=None``).

    ``BEGIN IMMEDIATE`` takes the write lock up front, so a writer never fails halfway with
    "database is locked" when upgrading a read lock; reads pass ``begin="BEGIN"``.
    """
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        # A failed COMMIT may already have rolled back (e.g. on an I/O error).
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _apply(conn: sqlite3.Connection, target: int) -> None:
    """Run the step up to ``target`` in its own transaction, unless another process did."""
    with transaction(conn):
        # Re-read under the write lock: a second daemon may have migrated meanwhile.
        current = schema_version(conn)
        if current >= target:
            return
        MIGRATIONS[target - 1](conn)
        # user_version is in the header page, so it commits or rolls back with the step.
        conn.execute(f"PRAGMA user_version = {target:d}")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database up to LATEST_VERSION; return that version.

    Precondition: ``conn`` autocommits (``isolation_level=None``), so the transactions here
    are the only ones. Raises SchemaTooNew, before writing anything, for a newer database.
    """
    refuse_newer(conn)
    for target in range(schema_version(conn) + 1, LATEST_VERSION + 1):
        _apply(conn, target)
    return LATEST_VERSION
