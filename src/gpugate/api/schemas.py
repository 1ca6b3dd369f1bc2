"""The wire format, shared by the daemon, the Python client and the CLI.

msgspec Structs: they validate on decode, encode fast, give the OpenAPI schema, and import
in a few milliseconds (the CLI must start fast). Sizes on the wire are bytes, utilization
is a percentage, times are seconds since the epoch.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

API_PREFIX = "/v1"

Priority = Annotated[int, Meta(ge=-1000, le=1000, description="higher runs first")]
GpuCount = Annotated[int, Meta(ge=0, le=64, description="distinct GPUs; 0 = CPU-only")]
Bytes = Annotated[int, Meta(gt=0, description="bytes per GPU")]
Percent = Annotated[float, Meta(ge=0, le=100)]
JobId = Annotated[int, Meta(ge=1, le=2**63 - 1)]  # SQLite's largest integer
Command = Annotated[str, Meta(min_length=1, max_length=131072)]


class JobSubmission(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True, kw_only=True):
    """One job to queue."""

    command: Command
    cwd: str
    env: dict[str, str] | None = None  # None: the request's env
    priority: Priority = 0
    gpus: GpuCount = 1
    mem_bytes: Bytes | None = None
    util_pct: Percent | None = None
    exclusive: bool = False
    after: list[JobId] = []
    name: Annotated[str, Meta(max_length=200)] = ""
    hold: bool = False
    # what gpugate may do to make room: never, checkpoint, suspend, requeue; None: the
    # daemon's default_preempt (never unless the site configured otherwise)
    preempt: Literal["never", "checkpoint", "suspend", "requeue"] | None = None
    checkpoint_path: Annotated[str, Meta(max_length=4096)] = ""  # GPUGATE_CHECKPOINT


class SubmitRequest(msgspec.Struct, forbid_unknown_fields=True):
    jobs: Annotated[list[JobSubmission], Meta(min_length=1, max_length=1_000_000)]
    env: dict[str, str] = {}  # the environment of every job that gives none: sent once


class PriorityRequest(msgspec.Struct, forbid_unknown_fields=True):
    priority: Priority


class SimLoadRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Outside load on a simulated GPU (only when the daemon runs simulated GPUs)."""

    gpu: str
    mem_bytes: Annotated[int, Meta(ge=0)] = 0
    util_pct: Percent = 0.0
    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = "external"
    clear: bool = False  # remove the load called ``name`` (every injected load if None)


class TransitionView(msgspec.Struct):
    from_state: str | None
    to_state: str
    at: float
    reason: str


class JobView(msgspec.Struct, kw_only=True, gc=False):  # no cycles: skip GC tracking
    """A job as `ls` shows it; ``reason`` says why it is in its state right now."""

    id: int
    name: str
    command: str
    state: str
    priority: int
    gpus: int
    gpu_uuids: list[str]
    gpu_indices: list[int]
    mem_bytes: int | None  # expected per GPU; None: unknown (whole GPU)
    util_pct: float
    expectation: str  # declared, history or default
    expected_run_s: float | None = None  # median of the command's recent successful runs
    preempt: str = "never"  # what gpugate may do to it to make room
    checkpoints: int = 0  # times it checkpointed and was requeued
    oom_retries: int = 0  # times it died of GPU out-of-memory and was requeued with more
    preemptions: int = 0  # times the scheduler made it yield for a higher-priority job
    exclusive: bool
    after: list[int]
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    reason: str
    peak_mem_bytes: int | None
    peak_util_pct: float | None
    owner_uid: int
    owner_name: str = ""
    pid: int | None


class JobDetail(msgspec.Struct, kw_only=True):
    job: JobView
    cwd: str
    history: list[TransitionView]
    stdout_path: str
    stderr_path: str


class JobList(msgspec.Struct):
    jobs: list[JobView]
    counts: dict[str, int]  # jobs per state among the active ones


class ActionResult(msgspec.Struct):
    job: JobView


class GpuProcessView(msgspec.Struct):
    pid: int
    mem_bytes: int | None
    util_pct: float | None
    name: str
    job_id: int | None  # the gpugate job it belongs to; None: not started by gpugate


class GpuInfo(msgspec.Struct, kw_only=True):
    index: int
    uuid: str
    name: str
    mem_total_bytes: int
    mem_used_bytes: int
    util_pct: float | None  # last sample
    util_smoothed_pct: float | None  # what admission uses
    util_headroom_pct: float
    mem_headroom_pct: float
    reserved_mem_bytes: int  # held back for jobs still ramping up
    jobs: list[int]
    processes: list[GpuProcessView]
    temperature_c: float | None = None
    power_w: float | None = None


class GpuList(msgspec.Struct):
    backend: str
    note: str
    taken_at: float
    gpus: list[GpuInfo]


class GpuSeries(msgspec.Struct, kw_only=True):
    index: int
    uuid: str
    mem_total_bytes: int
    util_headroom_pct: float
    mem_headroom_pct: float
    points: list[tuple[float, float | None, int]]  # time, utilization %, memory used bytes


class UsageSeries(msgspec.Struct):
    points: list[tuple[float, float | None, int]]  # time, utilization %, memory bytes


class JobUsageHistory(msgspec.Struct):
    """A job's use of its GPUs as sampled (summed over them), oldest first."""

    job_id: int
    usage: UsageSeries


class GpuHistory(msgspec.Struct):
    """Each GPU's load over the last ``seconds``: every sample within the last hour,
    one point a minute (its mean) beyond, up to a day."""

    seconds: float
    gpus: list[GpuSeries]


class Health(msgspec.Struct):
    version: str
    backend: str
    note: str
    pid: int
    started_at: float
    scheduler_passes: int = 0
    last_pass_s: float = 0.0  # wall time of the last scheduling tick
    active_jobs: int = 0


class ErrorBody(msgspec.Struct):
    error: str


class WhoAmI(msgspec.Struct):
    """The caller, as the daemon knows them (peer credentials or token)."""

    uid: int
    user: str
    admin: bool


class TokenResult(msgspec.Struct):
    """A new token for the HTTP API on TCP (shown once; the daemon keeps its hash)."""

    token: str
    uid: int


class RevokeResult(msgspec.Struct):
    revoked: bool
