"""The job lifecycle: one explicit state machine; every edge says why it exists."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"  # waiting for its dependencies and for room on the GPUs
    HELD = "held"  # kept out of scheduling by the user until released
    STARTING = "starting"  # launched; its expected use is reserved until seen (ramp-up)
    RUNNING = "running"  # seen at its level (or ramp window passed); observed use counts
    SUSPENDED = "suspended"  # stopped (SIGSTOP): no compute, but its GPU memory stays held
    SUCCEEDED = "succeeded"  # exited 0
    FAILED = "failed"  # exited non-zero, was killed by a signal, or could not be launched
    CANCELLED = "cancelled"  # by the user, or because a dependency did not succeed
    LOST = "lost"  # its process vanished while the daemon was down and left no exit code

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def holds_gpus(self) -> bool:
        """On its GPUs: its processes exist and hold memory (a suspended job's too)."""
        return self in (JobState.STARTING, JobState.RUNNING, JobState.SUSPENDED)


TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.LOST})

# Every legal edge, with the reason it exists. Anything else is refused by transition().
TRANSITIONS: dict[JobState, dict[JobState, str]] = {
    JobState.QUEUED: {
        JobState.HELD: "user holds the job",
        JobState.STARTING: "scheduler admitted it: it fits under the headroom",
        JobState.CANCELLED: "user cancelled, or a dependency ended without success",
    },
    JobState.HELD: {
        JobState.QUEUED: "user released the job",
        JobState.CANCELLED: "user cancelled",
    },
    JobState.STARTING: {
        JobState.RUNNING: "its processes were seen at their expected level, or ramp-up ended",
        JobState.SUCCEEDED: "exited 0 before ramp-up ended (short jobs)",
        JobState.FAILED: "could not be launched, or exited non-zero before ramp-up ended",
        JobState.CANCELLED: "user cancelled",
        JobState.LOST: "vanished while the daemon was down, no exit code",
        JobState.QUEUED: "requeued: checkpointed when asked (exit 75), died of GPU"
        " out-of-memory and retries with more memory reserved, or the daemon stopped"
        " before its process started",
    },
    JobState.RUNNING: {
        JobState.SUCCEEDED: "exited 0",
        JobState.FAILED: "exited non-zero or was killed by a signal",
        JobState.CANCELLED: "user cancelled",
        JobState.LOST: "vanished while the daemon was down, no exit code",
        JobState.SUSPENDED: "suspended: SIGSTOP to its process group (GPU memory kept)",
        JobState.QUEUED: "requeued: checkpointed when asked (exit 75), or died of GPU"
        " out-of-memory and retries with more memory reserved",
    },
    JobState.SUSPENDED: {
        JobState.RUNNING: "resumed: SIGCONT to its process group",
        JobState.QUEUED: "requeued: it ended (checkpoint, out-of-memory or stopped to make"
        " room) as it was being suspended",
        JobState.SUCCEEDED: "exited 0 (it had ended as it was being stopped)",
        JobState.FAILED: "killed while suspended, or ended non-zero as it was being stopped",
        JobState.CANCELLED: "user cancelled (SIGTERM, then SIGCONT so it can act on it)",
        JobState.LOST: "vanished while the daemon was down, no exit code",
    },
    JobState.SUCCEEDED: {},
    JobState.FAILED: {},
    JobState.CANCELLED: {},
    JobState.LOST: {},
}


class IllegalTransition(ValueError):
    """A move the state machine does not allow (e.g. cancelling a finished job)."""

    def __init__(self, job_id: int, current: JobState, wanted: JobState) -> None:
        super().__init__(f"job {job_id} is {current.value}: it cannot become {wanted.value}")
        self.job_id = job_id
        self.current = current
        self.wanted = wanted


def check_transition(job_id: int, current: JobState, wanted: JobState) -> None:
    """Raise IllegalTransition unless ``current -> wanted`` is an edge of the machine."""
    if wanted not in TRANSITIONS[current]:
        raise IllegalTransition(job_id, current, wanted)
