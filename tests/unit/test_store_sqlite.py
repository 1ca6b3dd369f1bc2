"""What only the SQLite store promises: a file that survives restarts, crashes and upgrades."""

from __future__ import annotations

import dataclasses
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from gpugate.lifecycle import advance
from gpugate.model import WHOLE_GPU, Job, JobSpec
from gpugate.states import JobState
from gpugate.store import migrations
from gpugate.store.migrations import LATEST_VERSION, SchemaTooNew, migrate, schema_version
from gpugate.store.sqlite import SqliteStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "gpugate.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(db_path)
    yield store
    store.close()


def a_job(command: str = "python train.py") -> Job:
    spec = JobSpec(command=command, cwd="/home/ada", env={"SEED": "1"})
    return Job(0, spec, JobState.QUEUED, 0, 1_000.0, WHOLE_GPU, reason="submitted")


def raw(path: Path) -> closing[sqlite3.Connection]:
    """A plain connection to the file, as another tool (or a crashed process) would open it."""
    return closing(sqlite3.connect(path, isolation_level=None))


def test_jobs_and_history_survive_closing_and_reopening(db_path: Path) -> None:
    store = SqliteStore(db_path)
    queued, running = store.add_jobs([a_job(), a_job("sleep 1")])
    for state in (JobState.STARTING, JobState.RUNNING):
        running, edge = advance(running, state, 1_001.0, "fits")
        store.save([(running, edge)])
    history = store.history(running.id)
    store.close()

    reopened = SqliteStore(db_path)
    assert reopened.active() == [queued, running]
    assert reopened.history(running.id) == history
    reopened.close()


def test_the_file_is_in_wal_mode_with_crash_safe_settings(
    store: SqliteStore, db_path: Path
) -> None:
    with raw(db_path) as conn:  # the journal mode is stored in the file itself
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous and foreign_keys belong to the store's own connection.
    conn = store._conn
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_an_empty_file_is_migrated_to_the_latest_schema(db_path: Path) -> None:
    db_path.touch()
    SqliteStore(db_path).close()
    with raw(db_path) as conn:
        assert schema_version(conn) == LATEST_VERSION
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"jobs", "transitions", "meta", "jobs_by_state", "jobs_by_command_state_ended"} <= names


def test_migrating_an_up_to_date_database_changes_nothing(
    store: SqliteStore, db_path: Path
) -> None:
    [job] = store.add_jobs([a_job()])
    with raw(db_path) as conn:
        assert migrate(conn) == LATEST_VERSION
    assert store.get(job.id) == job


def test_a_version_1_database_with_jobs_gains_expected_run_times(db_path: Path) -> None:
    """A database written before run times were stored: its jobs read back with no
    expected run time, and a new job's run time survives closing and reopening."""
    with raw(db_path) as conn:
        migrations._apply(conn, 1)  # the version-1 schema, as gpugate first wrote it
    with raw(db_path) as conn:
        conn.execute("INSERT INTO envs (env_id, json) VALUES (1, '{}')")
        conn.execute(
            "INSERT INTO jobs (command, cwd, env_id, gpus, exclusive_gpu, after_json, name,"
            " owner_uid, state, priority, submitted_at, expected_util_pct, expected_source,"
            " reason, gpu_uuids_json, cancel_requested)"
            " VALUES ('old', '/', 1, 1, 0, '[]', '', 0, 'queued', 0, 5.0, 100.0, 'default',"
            " 'submitted', '[]', 0)"
        )
    store = SqliteStore(db_path)
    [old] = store.active()
    assert (old.spec.command, old.expected.run_s) == ("old", None)
    expected = dataclasses.replace(old.expected, run_s=123.5)
    [new] = store.add_jobs([dataclasses.replace(a_job("new"), expected=expected)])
    store.close()
    reopened = SqliteStore(db_path)
    assert reopened.get(new.id).expected.run_s == 123.5
    reopened.close()


def test_a_failing_migration_step_leaves_the_database_at_the_previous_version(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_done_then_broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("step 2 is broken")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, half_done_then_broken))
    monkeypatch.setattr(migrations, "LATEST_VERSION", LATEST_VERSION + 1)
    with raw(db_path) as conn:
        with pytest.raises(RuntimeError, match="broken"):
            migrate(conn)
        assert schema_version(conn) == LATEST_VERSION
        assert (
            conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone()
            is None
        )


def test_a_database_from_a_newer_gpugate_is_refused_and_left_untouched(db_path: Path) -> None:
    with raw(db_path) as conn:
        conn.execute("CREATE TABLE from_the_future (x INTEGER)")
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    before = db_path.read_bytes()
    with pytest.raises(SchemaTooNew, match="newer gpugate") as refused:
        SqliteStore(db_path)
    assert (refused.value.found, refused.value.known) == (LATEST_VERSION + 1, LATEST_VERSION)
    assert db_path.read_bytes() == before


def test_ids_are_not_reused_after_the_newest_job_is_deleted(
    store: SqliteStore, db_path: Path
) -> None:
    jobs = store.add_jobs([a_job(), a_job()])
    newest = jobs[-1].id
    with raw(db_path) as conn:  # e.g. a future "purge old jobs" command
        conn.execute("DELETE FROM transitions WHERE job_id = ?", (newest,))
        conn.execute("DELETE FROM jobs WHERE id = ?", (newest,))
    [later] = store.add_jobs([a_job()])
    assert later.id > newest


def test_a_failed_batch_rolls_back_and_the_store_stays_usable(store: SqliteStore) -> None:
    [job] = store.add_jobs([a_job()])
    ghost = dataclasses.replace(job, id=job.id + 1)
    with pytest.raises(KeyError):
        store.save([(dataclasses.replace(job, priority=9), None), (ghost, None)])
    store.save([(dataclasses.replace(job, priority=1), None)])
    assert store.get(job.id).priority == 1


# A writer that dies inside its transaction, after writing more than the page cache holds,
# so uncommitted pages have already been spilled into the WAL file when it dies.
_DIE_MID_TRANSACTION = r"""
import os, signal, sqlite3, sys
from gpugate.model import WHOLE_GPU, Job, JobSpec
from gpugate.states import JobState
from gpugate.store.sqlite import SqliteStore

path, how = sys.argv[1], sys.argv[2]
job = Job(0, JobSpec("committed", "/"), JobState.QUEUED, 0, 1.0, WHOLE_GPU, reason="ok")
SqliteStore(path).add_jobs([job] * 3)  # committed, never closed nor checkpointed
conn = sqlite3.connect(path, isolation_level=None)
conn.execute("PRAGMA cache_size = 1")
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE jobs SET state = 'failed', reason = 'uncommitted'")
conn.executemany("INSERT INTO meta VALUES (?, ?)", ((f"k{i}", "x" * 200) for i in range(20000)))
print("written", flush=True)
if how == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
os._exit(3)
"""


@pytest.mark.parametrize(("how", "exit_status"), [("sigkill", -signal.SIGKILL), ("exit", 3)])
def test_a_writer_killed_mid_transaction_loses_only_its_uncommitted_batch(
    db_path: Path, how: str, exit_status: int
) -> None:
    died = subprocess.run(
        [sys.executable, "-c", _DIE_MID_TRANSACTION, str(db_path), how],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (died.returncode, died.stdout) == (exit_status, "written\n"), died.stderr

    store = SqliteStore(db_path)
    survivors = store.active()
    assert [(job.id, job.state, job.reason) for job in survivors] == [
        (n, JobState.QUEUED, "ok") for n in (1, 2, 3)
    ]
    assert store.add_jobs([a_job()])[0].id == 4
    store.close()
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0


def test_an_environment_shared_by_many_jobs_is_stored_once(db_path: Path) -> None:
    """A sweep's jobs share their submitter's environment: one row in envs, not one each;
    a different environment gets its own row, and every job reads its own back."""
    shared = {"PATH": "/usr/bin", "HOME": "/home/ada"}
    jobs = [
        dataclasses.replace(a_job(), spec=JobSpec(f"run {i}", "/", env=shared)) for i in range(50)
    ]
    other = dataclasses.replace(a_job(), spec=JobSpec("other", "/", env={"PATH": "/bin"}))
    store = SqliteStore(db_path)
    stored = store.add_jobs([*jobs, other])
    store.close()
    with raw(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM envs").fetchone()[0] == 2
    reopened = SqliteStore(db_path)
    assert reopened.get(stored[0].id).spec.env == shared
    assert reopened.get(stored[-1].id).spec.env == {"PATH": "/bin"}
    reopened.close()
