"""Moving a job along the state machine: the one place a Job changes state."""

from __future__ import annotations

import dataclasses
from typing import Any

from gpugate.model import Job, Transition
from gpugate.states import JobState, check_transition


def advance(
    job: Job, to_state: JobState, at: float, reason: str, **changes: Any
) -> tuple[Job, Transition]:
    """Return the job moved to ``to_state`` (with ``changes`` applied) and the edge to store.

    Raises IllegalTransition for a move the state machine does not allow, so callers never
    persist an impossible history.
    """
    check_transition(job.id, job.state, to_state)
    if to_state.is_terminal and "ended_at" not in changes:
        changes["ended_at"] = at
    moved = dataclasses.replace(job, state=to_state, reason=reason, **changes)
    return moved, Transition(job.id, job.state, to_state, at, reason)
