"""One contract for every Store backend: what the daemon, API and simulator rely on.

Each test runs against MemoryStore and SqliteStore; a backend passes only if it behaves
exactly like the others, down to dataclass equality of what it reads back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpugate.lifecycle import advance
from gpugate.model import (
    WHOLE_GPU,
    Expectation,
    ExpectationSource,
    Job,
    JobSpec,
    PreemptMode,
    Transition,
)
from gpugate.states import JobState
from gpugate.store.base import Store, UnknownJob
from gpugate.store.memory import MemoryStore
from gpugate.store.sqlite import SqliteStore

OpenStore = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Opens the backend under test; a second call "reopens" it (same data, new handle)."""
    memory = MemoryStore()
    opened: list[Store] = []

    def open_() -> Store:
        store: Store = memory if request.param == "memory" else SqliteStore(tmp_path / "s.db")
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    return open_store()


def a_job(command: str = "python train.py", **changes: Any) -> Job:
    """A queued job as the service would submit it (id 0: the store assigns one)."""
    job = Job(
        id=0,
        spec=JobSpec(command=command, cwd="/home/ada/project"),
        state=JobState.QUEUED,
        priority=0,
        submitted_at=1_000.0,
        expected=WHOLE_GPU,
        reason="submitted",
    )
    return dataclasses.replace(job, **changes)


def add(store: Store, job: Job) -> Job:
    return store.add_jobs([job])[0]


def run_to_end(store: Store, job: Job, end: JobState, ended_at: float) -> Job:
    """Take a queued job through starting and running to ``end``, saving each step."""
    for state, at in ((JobState.STARTING, ended_at - 2), (JobState.RUNNING, ended_at - 1)):
        job, edge = advance(job, state, at, f"now {state.value}")
        store.save([(job, edge)])
    job, edge = advance(job, end, ended_at, f"ended {end.value}")
    store.save([(job, edge)])
    return job


# ---------------------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------------------
def test_add_jobs_assigns_increasing_ids_in_order(store: Store) -> None:
    jobs = store.add_jobs([a_job(f"job {n}", id=99) for n in range(5)])
    ids = [job.id for job in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [job.spec.command for job in jobs] == [f"job {n}" for n in range(5)]
    assert [store.get(i) for i in ids] == jobs


def test_ids_keep_increasing_across_batches_and_reopening(open_store: OpenStore) -> None:
    store = open_store()
    first = store.add_jobs([a_job(), a_job()])
    store.close()
    reopened = open_store()
    later = reopened.add_jobs([a_job()])
    assert later[0].id > max(job.id for job in first)
    assert reopened.get(first[0].id) == first[0]


def test_adding_no_jobs_stores_nothing(store: Store) -> None:
    assert store.add_jobs([]) == []
    assert store.active() == []


# ---------------------------------------------------------------------------------------
# Writes
# ---------------------------------------------------------------------------------------
def test_creation_is_recorded_as_a_transition_from_nothing(store: Store) -> None:
    job = add(store, a_job(state=JobState.HELD, submitted_at=42.5, reason="submitted held"))
    assert store.history(job.id) == [
        Transition(job.id, None, JobState.HELD, 42.5, "submitted held")
    ]


def test_save_replaces_the_job_and_appends_its_transition(store: Store) -> None:
    job = add(store, a_job())
    started, edge = advance(job, JobState.STARTING, 1_010.0, "fits on GPU0", gpu_uuids=("GPU-a",))
    store.save([(started, edge)])
    assert store.get(job.id) == started
    assert store.history(job.id)[-1] == edge


def test_save_without_a_transition_keeps_the_history(store: Store) -> None:
    job = add(store, a_job())
    store.save([(dataclasses.replace(job, priority=5), None)])
    assert store.get(job.id).priority == 5
    assert len(store.history(job.id)) == 1


def test_save_takes_any_iterable(store: Store) -> None:
    jobs = store.add_jobs([a_job(), a_job()])
    store.save((dataclasses.replace(job, priority=3), None) for job in jobs)
    assert [job.priority for job in store.active()] == [3, 3]


def test_a_batch_with_an_unknown_job_stores_nothing(store: Store) -> None:
    job = add(store, a_job())
    started, edge = advance(job, JobState.STARTING, 1_010.0, "fits")
    ghost = dataclasses.replace(job, id=job.id + 1_000)
    with pytest.raises(UnknownJob) as raised:
        store.save([(started, edge), (ghost, None)])
    assert raised.value.job_id == ghost.id
    assert store.get(job.id) == job
    assert len(store.history(job.id)) == 1


def test_a_transition_filed_under_another_job_is_refused(store: Store) -> None:
    one, two = store.add_jobs([a_job(), a_job()])
    moved, edge = advance(one, JobState.HELD, 1_001.0, "held")
    with pytest.raises(ValueError):
        store.save([(dataclasses.replace(moved, id=two.id), edge)])
    assert store.get(two.id) == two


def test_history_is_oldest_first_across_and_within_batches(store: Store) -> None:
    job = add(store, a_job())
    held, to_held = advance(job, JobState.HELD, 1_001.0, "user holds")
    queued, to_queued = advance(held, JobState.QUEUED, 1_002.0, "user releases")
    store.save([(held, to_held), (queued, to_queued)])
    ended = run_to_end(store, queued, JobState.SUCCEEDED, 1_010.0)
    states = [edge.to_state for edge in store.history(job.id)]
    assert states == [
        JobState.QUEUED,
        JobState.HELD,
        JobState.QUEUED,
        JobState.STARTING,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    assert store.get(job.id) == ended


# ---------------------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------------------
def test_unknown_ids_raise_for_get_and_history(store: Store) -> None:
    with pytest.raises(UnknownJob):
        store.get(12345)
    with pytest.raises(UnknownJob):
        store.history(12345)


def test_get_many_and_states_leave_unknown_ids_out(store: Store) -> None:
    one, two = store.add_jobs([a_job(), a_job(state=JobState.HELD)])
    assert store.get_many([two.id, 999, one.id]) == {one.id: one, two.id: two}
    assert store.states([one.id, 999, two.id]) == {one.id: JobState.QUEUED, two.id: JobState.HELD}
    assert store.get_many([]) == {} and store.states([]) == {}


def test_get_many_handles_more_ids_than_one_query_binds(store: Store) -> None:
    jobs = store.add_jobs([a_job(f"job {n}") for n in range(1_200)])
    found = store.get_many(job.id for job in jobs)
    assert list(found.values()) == jobs


def test_active_lists_every_unfinished_job_by_id(store: Store) -> None:
    queued, held, running, done = store.add_jobs(
        [a_job(), a_job(state=JobState.HELD), a_job(), a_job()]
    )
    run_to_end(store, running, JobState.SUCCEEDED, 2_000.0)
    run_to_end(store, done, JobState.FAILED, 2_001.0)
    starting, edge = advance(queued, JobState.STARTING, 2_002.0, "fits")
    store.save([(starting, edge)])
    assert store.active() == [starting, held]


def test_recent_lists_ended_jobs_newest_end_first(store: Store) -> None:
    jobs = store.add_jobs([a_job(f"job {n}") for n in range(4)])
    ends = [(JobState.SUCCEEDED, 3_000.0), (JobState.FAILED, 3_020.0), (JobState.LOST, 3_010.0)]
    ended = [run_to_end(store, job, end, at) for job, (end, at) in zip(jobs, ends, strict=False)]
    assert store.recent(10) == [ended[1], ended[2], ended[0]]
    assert store.recent(2) == [ended[1], ended[2]]
    assert store.recent(0) == []


def test_recent_breaks_ties_by_newest_id(store: Store) -> None:
    first, second = store.add_jobs([a_job(), a_job()])
    cancelled = [advance(job, JobState.CANCELLED, 5_000.0, "user")[0] for job in (first, second)]
    store.save((job, None) for job in cancelled)
    assert [job.id for job in store.recent(5)] == [second.id, first.id]


def test_recent_successes_are_succeeded_runs_of_exactly_that_command_newest_first(
    store: Store,
) -> None:
    old, new, failed, other, prefix = store.add_jobs(
        [a_job("train"), a_job("train"), a_job("train"), a_job("train2"), a_job("trai")]
    )
    newest_but_one = run_to_end(store, new, JobState.SUCCEEDED, 4_000.0)
    expected = run_to_end(store, old, JobState.SUCCEEDED, 4_500.0)  # ended later: the newest
    run_to_end(store, failed, JobState.FAILED, 5_000.0)
    run_to_end(store, other, JobState.SUCCEEDED, 6_000.0)
    run_to_end(store, prefix, JobState.SUCCEEDED, 6_000.0)
    assert store.recent_successes("train", 5) == [expected, newest_but_one]
    assert store.recent_successes("train", 1) == [expected]
    assert store.recent_successes("train", 0) == []


def test_preemption_fields_round_trip(store: Store) -> None:
    spec = JobSpec(
        command="train", cwd="/", preempt=PreemptMode.CHECKPOINT, checkpoint_path="/ck/a.pt"
    )
    [stored] = store.add_jobs([a_job(spec=spec)])
    asked = dataclasses.replace(stored, checkpoint_requested_at=12.5, checkpoints=2)
    store.save([(asked, None)])
    assert store.get(stored.id) == asked
    assert store.get(stored.id).spec.preempt is PreemptMode.CHECKPOINT


def test_recent_successes_are_empty_without_a_succeeded_run(store: Store) -> None:
    job = add(store, a_job("train"))
    run_to_end(store, job, JobState.FAILED, 4_000.0)
    add(store, a_job("train"))
    assert store.recent_successes("train", 5) == []
    assert store.recent_successes("never submitted", 5) == []


def test_reopening_keeps_jobs_and_history(open_store: OpenStore) -> None:
    store = open_store()
    job = run_to_end(store, add(store, a_job()), JobState.SUCCEEDED, 1_500.0)
    history = store.history(job.id)
    store.close()
    reopened = open_store()
    assert reopened.get(job.id) == job
    assert reopened.history(job.id) == history


# ---------------------------------------------------------------------------------------
# Round trips: what goes in comes back equal
# ---------------------------------------------------------------------------------------
def test_every_field_round_trips(store: Store) -> None:
    spec = JobSpec(
        command="torchrun --nproc 2 train.py --lr 3e-4 'quoted arg' ünïcødé",
        cwd="/data/runs/ß",
        env={"CUDA_LAUNCH_BLOCKING": "1", "EMPTY": "", "QUOTE": 'a "b" \\ c'},
        gpus=2,
        mem_bytes=20 * 2**30,
        util_pct=37.5,
        exclusive=True,
        after=(3, 1, 2),
        name="lr sweep",
        owner_uid=1001,
    )
    job = Job(
        id=0,
        spec=spec,
        state=JobState.RUNNING,
        priority=-3,
        submitted_at=1_700_000_000.123456,
        expected=Expectation(
            mem_bytes=21 * 2**30, util_pct=55.25, source=ExpectationSource.HISTORY
        ),
        reason="seen at its level",
        gpu_uuids=("GPU-1111", "GPU-0000"),
        pid=4242,
        pid_start_time=1_700_000_001.5,
        started_at=1_700_000_002.25,
        ramped_at=1_700_000_003.75,
        ended_at=1_700_000_004.125,
        exit_code=-9,
        peak_mem_bytes=2**40 + 1,
        peak_util_pct=99.875,
        cancel_requested=True,
    )
    stored = add(store, job)
    assert stored == dataclasses.replace(job, id=stored.id)
    assert store.get(stored.id) == stored
    store.save([(stored, None)])
    assert store.get(stored.id) == stored


def test_defaults_and_nones_round_trip(store: Store) -> None:
    job = a_job(expected=Expectation(None, 0.0, ExpectationSource.DEFAULT))
    stored = add(store, job)
    back = store.get(stored.id)
    assert back == stored
    assert back.spec.env == {} and back.spec.after == () and back.gpu_uuids == ()
    assert back.pid is None and back.expected.mem_bytes is None


def test_a_stored_job_does_not_follow_later_changes_to_its_env(store: Store) -> None:
    env = {"A": "1"}
    stored = add(store, a_job(spec=JobSpec("run", "/", env=env)))
    env["A"] = "changed"
    assert store.get(stored.id).spec.env == {"A": "1"}


_SQLITE_INT = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_FLOAT = st.floats(allow_nan=False)  # NaN != NaN, and SQLite stores NaN as NULL
_TEXT = st.text(max_size=30)


@st.composite
def specs(draw: st.DrawFn) -> JobSpec:
    return JobSpec(
        command=draw(_TEXT),
        cwd=draw(_TEXT),
        env=draw(st.dictionaries(_TEXT, _TEXT, max_size=5)),
        gpus=draw(st.integers(0, 16)),
        mem_bytes=draw(st.none() | st.integers(0, 2**63 - 1)),
        util_pct=draw(st.none() | _FLOAT),
        exclusive=draw(st.booleans()),
        after=tuple(draw(st.lists(st.integers(1, 2**62), max_size=4))),
        name=draw(_TEXT),
        owner_uid=draw(st.integers(0, 2**32 - 1)),
    )


@st.composite
def random_jobs(draw: st.DrawFn) -> Job:
    maybe_int, maybe_float = st.none() | _SQLITE_INT, st.none() | _FLOAT
    return Job(
        id=0,
        spec=draw(specs()),
        state=draw(st.sampled_from(JobState)),
        priority=draw(_SQLITE_INT),
        submitted_at=draw(_FLOAT),
        expected=Expectation(
            draw(st.none() | st.integers(0, 2**63 - 1)),
            draw(_FLOAT),
            draw(st.sampled_from(ExpectationSource)),
        ),
        reason=draw(_TEXT),
        gpu_uuids=tuple(draw(st.lists(_TEXT, max_size=3))),
        pid=draw(maybe_int),
        pid_start_time=draw(maybe_float),
        started_at=draw(maybe_float),
        ramped_at=draw(maybe_float),
        ended_at=draw(maybe_float),
        exit_code=draw(maybe_int),
        peak_mem_bytes=draw(maybe_int),
        peak_util_pct=draw(maybe_float),
        cancel_requested=draw(st.booleans()),
    )


# The store is shared by all examples on purpose: each adds its own job and reads it back.
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(job=random_jobs())
def test_random_jobs_round_trip(store: Store, job: Job) -> None:
    stored = add(store, job)
    assert stored == dataclasses.replace(job, id=stored.id)
    assert store.get(stored.id) == stored
    assert store.history(stored.id)[0] == Transition(
        stored.id, None, job.state, job.submitted_at, job.reason
    )


def test_gpu_runs_ended_since_are_the_last_runs_of_gpu_jobs(store: Store) -> None:
    """What fair share rebuilds its ledger from after a restart: GPU jobs that ran and
    ended at or after the time, with whose they were; not CPU-only, active or older ones."""
    specs = [(2, 1000, 2_000.0), (1, 1001, 3_000.0), (0, 1000, 3_000.0), (1, 1000, 500.0)]
    jobs = store.add_jobs(
        [
            a_job(f"job {n}", spec=JobSpec(f"job {n}", "/", gpus=gpus, owner_uid=uid))
            for n, (gpus, uid, _) in enumerate(specs)
        ]
    )
    for job, (_, _, ended_at) in zip(jobs, specs, strict=True):
        done = dataclasses.replace(
            job, state=JobState.SUCCEEDED, started_at=ended_at - 100, ended_at=ended_at
        )
        store.save([(done, None)])
    store.add_jobs([a_job("still queued", spec=JobSpec("q", "/", gpus=1, owner_uid=1000))])
    runs = sorted(store.gpu_runs_ended_since(1_000.0), key=lambda r: r.ended_at)
    assert [tuple(r) for r in runs] == [(1000, 2, 1_900.0, 2_000.0), (1001, 1, 2_900.0, 3_000.0)]
