"""The Alibaba GPU cluster trace of 2023 as a workload for one machine.

Source: ``alibaba2023_jobs.csv``, the 7,255 scheduled pods of the "openb" trace of
"Beware of Fragmentation" (USENIX ATC'23). Its licence allows research and study use, not
redistribution, so it is read from a path the user gives and never copied into gpugate.

The rules, each a parameter of ``load_alibaba`` (default in brackets):

- **Which pods.** Keep pods with 1..``max_gpus`` GPUs [8] that ran at most ``max_run_s``
  [1 day]. CPU-only pods are dropped unless ``include_cpu_only`` [False]: gpugate schedules
  GPU work. A dropped pod counts under the first rule it breaks, in the order CPU-only,
  too many GPUs, too long; the counts go into ``Workload.description``.
- **GPU use.** The machine's GPUs have ``gpu_mem_bytes`` each [32 GiB, like the V100-32GB
  nodes of that cluster]. A *sharing* pod (one GPU, ``gpu_milli`` < 1000) declares and uses
  ``share = gpu_milli / 1000`` of it: ``round(share * gpu_mem_bytes)`` of memory and
  ``100 * share`` % util. A *whole-GPU* pod (``gpu_milli`` 1000, or several GPUs) declares
  nothing, so the scheduler gives it idle GPUs, and really uses 100% util and
  ``whole_gpu_mem_fraction`` [0.9] of each GPU's memory. A CPU-only pod uses no GPU.
- **Priority** from QoS: LS and Guaranteed -> 2 (high), Burstable -> 1 (normal),
  BE -> 0 (low). The trace has no users: ``user`` is "".
- **Ramp-up** ``ramp_s``: lognormal, median 20 s, clamped to [2, 55] s, drawn from
  ``random.Random(seed)`` [0] once per row of the file, so a pod keeps its ramp whatever
  the filters and windows.
- **Times.** ``submit_time_s`` is the submit time; ``orig_wait_s`` (the wait in Alibaba's
  cluster) is not used: the simulator makes its own waits. The kept pods submit between
  about day 114.9 and day 149.3 of the trace; they are shifted so the first kept pod
  submits at 0, and ``window_days=(start, end)`` or ``last_days`` then pick a window in days
  from there (see ``workload.select_window``), shifted again to start at 0.

``id`` is the pod's 0-based row in the file; ``name`` is its ``job_id``; ``command`` (the
key of the run-time history) is its request: QoS, GPUs, GPU milli, CPU milli and memory.
A window's ``history`` holds the kept pods outside it that ended before it opened.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from gpugate.sim.csvio import (
    WorkloadError,
    parse_cell,
    parse_count,
    parse_seconds,
    read_csv_header,
    read_csv_rows,
)
from gpugate.sim.job import SimJob, Workload
from gpugate.sim.workload import (
    DAY_S,
    DEFAULT_GPU_MEM_BYTES,
    WHOLE_GPU_MEM_FRACTION,
    draw_ramp_s,
    select_window,
    shift_to_zero,
)

ALIBABA_COLUMNS = (
    "job_id",
    "submit_time_s",
    "run_time_s",
    "num_gpu",
    "gpu_milli",
    "gpu_demand",
    "cpu_milli",
    "memory_mib",
    "qos",
    "pod_phase",
    "orig_wait_s",
)
POD_REQUEST_COLUMNS = ("qos", "num_gpu", "gpu_milli", "cpu_milli", "memory_mib")
QOS_PRIORITY = {"LS": 2, "Guaranteed": 2, "Burstable": 1, "BE": 0}
PRIORITY_NAMES = {2: "high (LS, Guaranteed)", 1: "normal (Burstable)", 0: "low (BE)"}
WHOLE_GPU_MILLI = 1000


def load_alibaba(
    path: str | Path,
    *,
    max_gpus: int = 8,
    max_run_s: float = DAY_S,
    include_cpu_only: bool = False,
    gpu_mem_bytes: int = DEFAULT_GPU_MEM_BYTES,
    whole_gpu_mem_fraction: float = WHOLE_GPU_MEM_FRACTION,
    seed: int = 0,
    window_days: tuple[float, float] | None = None,
    last_days: float | None = None,
) -> Workload:
    """The kept pods of the trace at ``path`` as a workload (rules in the module docstring)."""
    pods = read_pods(path, gpu_mem_bytes, whole_gpu_mem_fraction, seed)
    rules = drop_rules(max_gpus, max_run_s, include_cpu_only)
    reasons = [drop_reason(pod, rules) for pod in pods]
    kept = [pod for pod, reason in zip(pods, reasons, strict=True) if reason is None]
    workload = Workload(
        name="alibaba2023",
        jobs=shift_to_zero(kept),
        description=_describe(Path(path).name, len(kept), rules, reasons),
        priority_names=dict(PRIORITY_NAMES),
    )
    return select_window(workload, window_days=window_days, last=last_days)


def is_alibaba_trace(path: str | Path) -> bool:
    """Does the file at ``path`` start with the Alibaba jobs CSV header?"""
    header = read_csv_header(path)
    return set(ALIBABA_COLUMNS) <= set(header)


def drop_rules(
    max_gpus: int, max_run_s: float, include_cpu_only: bool
) -> dict[str, Callable[[SimJob], bool]]:
    """Why a pod may be left out -> whether it is, in the order they are checked."""
    return {
        "CPU-only": lambda pod: pod.gpus == 0 and not include_cpu_only,
        f"with more than {max_gpus} GPUs": lambda pod: pod.gpus > max_gpus,
        f"longer than {max_run_s / 3600:g} h": lambda pod: pod.run_s > max_run_s,
    }


def drop_reason(pod: SimJob, rules: dict[str, Callable[[SimJob], bool]]) -> str | None:
    """The first rule that leaves ``pod`` out, or None if it is kept."""
    return next((reason for reason, breaks in rules.items() if breaks(pod)), None)


def read_pods(
    path: str | Path, gpu_mem_bytes: int, whole_gpu_mem_fraction: float, seed: int
) -> list[SimJob]:
    """Every pod of the file, in file order, as a job (nothing dropped yet)."""
    header, rows = read_csv_rows(path)
    missing = [column for column in ALIBABA_COLUMNS if column not in header]
    if missing:
        raise WorkloadError(f"{path}:1: not an Alibaba jobs CSV: missing columns {missing}")
    rng = random.Random(seed)
    return [
        _pod_job(path, line, index, row, gpu_mem_bytes, whole_gpu_mem_fraction, draw_ramp_s(rng))
        for index, (line, row) in enumerate(rows)
    ]


def gpu_use(
    num_gpu: int, gpu_milli: int, gpu_mem_bytes: int, whole_gpu_mem_fraction: float
) -> tuple[int, float, int | None, float]:
    """``(mem_bytes, util_pct, declared_mem_bytes, declared_util_pct)`` per GPU of a pod."""
    if num_gpu == 0:
        return 0, 0.0, None, 0.0
    if num_gpu == 1 and gpu_milli < WHOLE_GPU_MILLI:
        share = gpu_milli / WHOLE_GPU_MILLI
        mem_bytes, util_pct = round(share * gpu_mem_bytes), 100 * share
        return mem_bytes, util_pct, mem_bytes, util_pct
    return round(whole_gpu_mem_fraction * gpu_mem_bytes), 100.0, None, 0.0


def _pod_job(
    path: str | Path,
    line: int,
    index: int,
    row: dict[str, str],
    gpu_mem_bytes: int,
    whole_gpu_mem_fraction: float,
    ramp_s: float,
) -> SimJob:
    num_gpu = parse_cell(path, line, "num_gpu", row["num_gpu"], parse_count)
    gpu_milli = parse_cell(path, line, "gpu_milli", row["gpu_milli"], parse_count)
    if num_gpu > 0 and not 0 < gpu_milli <= WHOLE_GPU_MILLI:
        raise WorkloadError(f"{path}:{line}: gpu_milli {gpu_milli} outside 1..1000 on a GPU pod")
    if row["qos"] not in QOS_PRIORITY:
        raise WorkloadError(
            f"{path}:{line}: unknown qos {row['qos']!r} ({', '.join(QOS_PRIORITY)})"
        )
    return SimJob(
        index,
        parse_cell(path, line, "submit_time_s", row["submit_time_s"], parse_seconds),
        parse_cell(path, line, "run_time_s", row["run_time_s"], parse_seconds),
        num_gpu,
        *gpu_use(num_gpu, gpu_milli, gpu_mem_bytes, whole_gpu_mem_fraction),
        priority=QOS_PRIORITY[row["qos"]],
        ramp_s=ramp_s,
        name=row["job_id"],
        command=pod_command(row),
    )


def pod_command(row: dict[str, str]) -> str:
    """The pod's resource request, standing in for its command line: the trace has no
    commands, and the pods of one deployment (replicas of one service, the tasks of one
    job) share their request. What the daemon keys a command's history on."""
    return " ".join(f"{column}={row[column]}" for column in POD_REQUEST_COLUMNS)


def _describe(
    file_name: str, n_kept: int, rules: Iterable[str], reasons: Sequence[str | None]
) -> str:
    dropped = collections.Counter(reasons)
    why = ", ".join(f"{dropped[rule]} {rule}" for rule in rules)
    return (
        f"Alibaba GPU trace 2023 ({file_name}): kept {n_kept} of {len(reasons)} pods; dropped {why}"
    )
