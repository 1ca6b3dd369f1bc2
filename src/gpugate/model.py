"""The nouns of gpugate as frozen dataclasses: no I/O here, so every layer can share them.

Units are in the names: ``*_bytes`` are bytes, ``*_pct`` are percentages in [0, 100],
``*_at`` are wall-clock seconds since the epoch (``time.time()``), ``*_s`` are durations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from gpugate.states import JobState


# ---------------------------------------------------------------------------------------
# What a GPU monitor sees
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding memory (or compute) on one GPU, as the driver reports it."""

    pid: int
    mem_bytes: int | None  # None: the driver would not say (e.g. Windows WDDM, MIG)
    util_pct: float | None = None  # per-process SM utilization, where the driver gives it
    name: str = ""


@dataclass(frozen=True, slots=True)
class GpuSnapshot:
    """One GPU at one instant. ``None`` means "not supported by this GPU/driver"."""

    index: int
    uuid: str
    name: str
    mem_total_bytes: int
    mem_used_bytes: int
    util_pct: float | None
    processes: tuple[GpuProcess, ...] = ()
    temperature_c: float | None = None
    power_w: float | None = None

    @property
    def mem_free_bytes(self) -> int:
        return max(0, self.mem_total_bytes - self.mem_used_bytes)


@dataclass(frozen=True, slots=True)
class MachineSnapshot:
    """Every GPU of the machine at one instant, from one backend."""

    backend: str  # "nvml", "nvidia-smi", "sim", "apple", "amd", "none"
    taken_at: float
    gpus: tuple[GpuSnapshot, ...]
    note: str = ""  # e.g. why a fallback backend is in use


# ---------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------
class ExpectationSource(StrEnum):
    """Where a job's expected use came from (shown in ``show`` so users know why)."""

    DECLARED = "declared"  # --mem / --util on submit
    HISTORY = "history"  # observed peak of the last successful run of the same command
    DEFAULT = "default"  # nothing known: assume the whole GPU
    OOM_RETRY = "raised after out-of-memory"  # the last run died of GPU OOM: more reserved


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a job is expected to use on *each* of its GPUs.

    ``mem_bytes=None`` means "unknown: the whole GPU". Such a job starts only on a GPU with
    no other gpugate job and little memory in use, and reserves the whole GPU until its
    ramp-up window has passed. ``util_pct`` is the utilization it adds (0 if undeclared
    while memory is declared: the GPU's observed utilization still gates admission).
    """

    mem_bytes: int | None
    util_pct: float
    source: ExpectationSource
    run_s: float | None = None  # expected run time (core.runtime); None: never seen succeed

    @property
    def whole_gpu(self) -> bool:
        return self.mem_bytes is None


WHOLE_GPU = Expectation(mem_bytes=None, util_pct=100.0, source=ExpectationSource.DEFAULT)


class PreemptMode(StrEnum):
    """What gpugate may do to a running job to make room (``--preempt``; chosen at submit).

    The rungs free different things: ``checkpoint`` frees memory and compute and loses
    nothing the job saved; ``suspend`` frees compute only (the job keeps its GPU memory);
    ``requeue`` frees both and loses the run. ``never``: the job runs to its end."""

    NEVER = "never"
    CHECKPOINT = "checkpoint"  # asked to save and exit 75; requeued, resumed with GPUGATE_RESUME=1
    SUSPEND = "suspend"  # SIGSTOP/SIGCONT to its process group
    REQUEUE = "requeue"  # killed and started again from scratch


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What the user asked for. Immutable once stored (priority changes live on ``Job``)."""

    command: str  # a shell command line, run with /bin/sh -c
    cwd: str
    env: Mapping[str, str] = field(default_factory=dict)
    gpus: int = 1  # number of distinct GPUs; 0 = CPU-only job
    mem_bytes: int | None = None  # declared per-GPU memory
    util_pct: float | None = None  # declared per-GPU utilization
    exclusive: bool = False  # a GPU to itself
    after: tuple[int, ...] = ()  # start only after these jobs succeeded
    name: str = ""
    owner_uid: int = 0
    preempt: PreemptMode = PreemptMode.NEVER
    checkpoint_path: str = ""  # where the job saves its checkpoint (GPUGATE_CHECKPOINT)


@dataclass(frozen=True, slots=True)
class Transition:
    """One edge of a job's life, stored forever."""

    job_id: int
    from_state: JobState | None  # None for the creation
    to_state: JobState
    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored. Replace (``dataclasses.replace``) rather than mutate."""

    id: int
    spec: JobSpec
    state: JobState
    priority: int
    submitted_at: float
    expected: Expectation
    reason: str = ""  # why it is in its state (last transition's reason)
    gpu_uuids: tuple[str, ...] = ()
    pid: int | None = None  # the per-job shim: session leader of the job's processes
    pid_start_time: float | None = None  # guards against PID reuse after a restart
    started_at: float | None = None
    ramped_at: float | None = None  # seen at its expected level (or ramp window passed)
    ended_at: float | None = None
    exit_code: int | None = None
    peak_mem_bytes: int | None = None  # highest per-GPU memory seen for its processes
    peak_util_pct: float | None = None
    cancel_requested: bool = False
    queued_at: float | None = None  # released from hold or dependencies met; None: submit
    checkpoint_requested_at: float | None = None  # asked to save and exit, not yet done
    checkpoints: int = 0  # times it saved, exited 75 and was requeued (resumes if > 0)
    oom_retries: int = 0  # times it died of GPU out-of-memory and was requeued with more
    preemptions: int = 0  # times the scheduler preempted it (capped by the policy)
    preempted_for: int | None = None  # the job it is making room for, while preempted
    gpu_memory_released: bool = False  # suspended through cuda-checkpoint: memory on host

    @property
    def is_active(self) -> bool:
        return not self.state.is_terminal

    @property
    def waiting_since(self) -> float:
        """Since when it has been eligible to wait in the queue: time held, or waiting for
        ``--after`` dependencies, neither ages a job nor counts towards the backfill bound."""
        return self.submitted_at if self.queued_at is None else self.queued_at


@dataclass(frozen=True, slots=True)
class JobUsage:
    """What the monitor saw a running job use on one GPU (its processes, summed)."""

    mem_bytes: int
    util_pct: float | None
