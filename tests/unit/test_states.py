"""The job state machine: the TRANSITIONS table is the whole truth, and ``advance`` is the
one way through it."""

from __future__ import annotations

import itertools

import pytest

from gpugate.lifecycle import advance
from gpugate.model import Transition
from gpugate.states import TERMINAL, TRANSITIONS, IllegalTransition, JobState, check_transition
from tests.unit.factories import job

ALL_PAIRS = list(itertools.product(JobState, JobState))
LEGAL = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]


def pair_id(pair: tuple[JobState, JobState]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_the_table_covers_every_state_and_names_only_states() -> None:
    assert set(TRANSITIONS) == set(JobState)
    for exits in TRANSITIONS.values():
        assert set(exits) <= set(JobState)


def test_the_table_has_the_documented_edges() -> None:
    """A change to the lifecycle must be a deliberate change to this list too."""
    assert {pair_id(p) for p in LEGAL} == {
        "queued->held",
        "queued->starting",
        "queued->cancelled",
        "held->queued",
        "held->cancelled",
        "starting->running",
        "starting->succeeded",
        "starting->failed",
        "starting->cancelled",
        "starting->lost",
        "running->succeeded",
        "running->failed",
        "running->cancelled",
        "running->lost",
        # preemption: checkpoint-requeue and suspend/resume
        "starting->queued",
        "running->queued",
        "running->suspended",
        "suspended->running",
        "suspended->queued",
        "suspended->succeeded",
        "suspended->failed",
        "suspended->cancelled",
        "suspended->lost",
    }


def test_every_edge_says_why_it_exists() -> None:
    for current, wanted in LEGAL:
        assert TRANSITIONS[current][wanted].strip(), pair_id((current, wanted))


@pytest.mark.parametrize(("current", "wanted"), LEGAL, ids=[pair_id(p) for p in LEGAL])
def test_every_edge_in_the_table_is_accepted(current: JobState, wanted: JobState) -> None:
    before = job(7, state=current)
    moved, edge = advance(before, wanted, at=123.0, reason="because")

    assert moved.state is wanted
    assert moved.reason == "because"
    assert edge == Transition(7, current, wanted, 123.0, "because")


@pytest.mark.parametrize(("current", "wanted"), ILLEGAL, ids=[pair_id(p) for p in ILLEGAL])
def test_every_other_move_is_refused(current: JobState, wanted: JobState) -> None:
    with pytest.raises(IllegalTransition) as refused:
        advance(job(7, state=current), wanted, at=123.0, reason="because")

    assert refused.value.job_id == 7
    assert refused.value.current is current
    assert refused.value.wanted is wanted
    assert str(refused.value) == f"job 7 is {current.value}: it cannot become {wanted.value}"


def test_pairs_split_into_legal_and_illegal() -> None:
    assert len(LEGAL) + len(ILLEGAL) == len(JobState) ** 2 == 81


def test_illegal_transition_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="job 1 is succeeded: it cannot become running"):
        check_transition(1, JobState.SUCCEEDED, JobState.RUNNING)


def test_terminal_states_have_no_exits() -> None:
    assert {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST} == TERMINAL
    for state in JobState:
        assert state.is_terminal == (state in TERMINAL)
        assert (TRANSITIONS[state] == {}) == state.is_terminal


def test_starting_running_and_suspended_jobs_hold_gpus() -> None:
    """A suspended job's processes still hold their GPU memory."""
    held = {s for s in JobState if s.holds_gpus}
    assert held == {JobState.STARTING, JobState.RUNNING, JobState.SUSPENDED}


def test_no_state_moves_to_itself() -> None:
    for state in JobState:
        assert state not in TRANSITIONS[state]


@pytest.mark.parametrize(("current", "wanted"), [p for p in LEGAL if p[1].is_terminal])
def test_a_terminal_move_sets_ended_at(current: JobState, wanted: JobState) -> None:
    moved, _ = advance(job(7, state=current), wanted, at=500.0, reason="done")

    assert moved.ended_at == 500.0
    assert not moved.is_active


def test_an_explicit_ended_at_wins_over_the_transition_time() -> None:
    """Recovery records when a process really exited, which is before the daemon saw it."""
    moved, edge = advance(
        job(7, state=JobState.RUNNING), JobState.FAILED, at=500.0, reason="x", ended_at=450.0
    )

    assert moved.ended_at == 450.0
    assert edge.at == 500.0


@pytest.mark.parametrize(("current", "wanted"), [p for p in LEGAL if not p[1].is_terminal])
def test_a_non_terminal_move_leaves_ended_at_unset(current: JobState, wanted: JobState) -> None:
    moved, _ = advance(job(7, state=current), wanted, at=500.0, reason="x")

    assert moved.ended_at is None
    assert moved.is_active


def test_advance_applies_changes_and_leaves_the_original_alone() -> None:
    before = job(7)
    moved, edge = advance(
        before,
        JobState.STARTING,
        at=42.0,
        reason="fits",
        gpu_uuids=("GPU-0",),
        started_at=42.0,
        pid=1234,
    )

    assert (moved.gpu_uuids, moved.started_at, moved.pid) == (("GPU-0",), 42.0, 1234)
    assert (moved.id, moved.spec, moved.priority) == (before.id, before.spec, before.priority)
    assert before.state is JobState.QUEUED
    assert before.gpu_uuids == ()
    assert edge == Transition(7, JobState.QUEUED, JobState.STARTING, 42.0, "fits")


def test_a_refused_move_changes_nothing_and_records_nothing() -> None:
    before = job(7, state=JobState.SUCCEEDED)
    with pytest.raises(IllegalTransition):
        advance(before, JobState.RUNNING, at=1.0, reason="x", pid=99)

    assert before.state is JobState.SUCCEEDED
    assert before.pid is None


def test_a_whole_life_is_a_chain_of_edges() -> None:
    """queued -> held -> queued -> starting -> running -> succeeded, each edge recorded."""
    current = job(3)
    history = []
    for at, state in enumerate(
        [JobState.HELD, JobState.QUEUED, JobState.STARTING, JobState.RUNNING, JobState.SUCCEEDED]
    ):
        current, edge = advance(current, state, at=float(at), reason=state.value)
        history.append(edge)

    assert [(e.from_state, e.to_state) for e in history] == [
        (JobState.QUEUED, JobState.HELD),
        (JobState.HELD, JobState.QUEUED),
        (JobState.QUEUED, JobState.STARTING),
        (JobState.STARTING, JobState.RUNNING),
        (JobState.RUNNING, JobState.SUCCEEDED),
    ]
    assert [e.at for e in history] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert current.ended_at == 4.0
