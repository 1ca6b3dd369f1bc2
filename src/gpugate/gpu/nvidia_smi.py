"""NVIDIA GPUs through the ``nvidia-smi`` command: the fallback when NVML cannot be loaded.

Three pure parsers turn what ``nvidia-smi`` prints into snapshots, and ``NvidiaSmiMonitor`` runs
the two CSV queries. The parsers accept the output with or without a header, with or without units
("24576 MiB" or "24576"), and read "[N/A]", "[Not Supported]", "N/A" as "not supported" (``None``).

What this path cannot see, unlike NVML: per-process utilization, and graphics-only processes
(``--query-compute-apps`` lists compute processes; ``memory.used`` still counts the others).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TypeVar
from xml.etree import ElementTree

from gpugate.gpu.base import MonitorUnavailable
from gpugate.model import GpuProcess, GpuSnapshot, MachineSnapshot
from gpugate.units import GiB, KiB, MiB

T = TypeVar("T")

# The columns NvidiaSmiMonitor asks for, in order: also how a header-less CSV is read.
QUERY_GPU_FIELDS = (
    "index",
    "uuid",
    "name",
    "memory.total",
    "memory.used",
    "utilization.gpu",
    "temperature.gpu",
    "power.draw",
)
QUERY_APPS_FIELDS = ("gpu_uuid", "pid", "process_name", "used_gpu_memory")
_FORMAT = "--format=csv,noheader,nounits"
QUERY_GPU_ARGS = ("--query-gpu=" + ",".join(QUERY_GPU_FIELDS), _FORMAT)
QUERY_APPS_ARGS = ("--query-compute-apps=" + ",".join(QUERY_APPS_FIELDS), _FORMAT)

CommandRunner = Callable[[Sequence[str], float], str]

_NUMBER_RE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*([A-Za-z%]*)\s*$")
_HEADER_CELL_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(\s*\[[^\]]*\])?$")
_UNIT_SUFFIX_RE = re.compile(r"\s*\[[^\]]*\]$")
# nvidia-smi prints memory in MiB; "nounits" drops the suffix but not the scale.
_MEMORY_UNITS = {"": MiB, "mib": MiB, "gib": GiB, "kib": KiB, "b": 1}
# Where -q -x puts board power: <power_readings> up to schema v11, <gpu_power_readings> from v12;
# v13 replaced <power_draw> with <instant_power_draw> and <average_power_draw>.
_POWER_PATHS = tuple(
    f"{section}/{tag}"
    for section in ("gpu_power_readings", "power_readings")
    for tag in ("power_draw", "instant_power_draw", "average_power_draw")
)


# ---------------------------------------------------------------------------------------
# Running the command
# ---------------------------------------------------------------------------------------
def run_command(argv: Sequence[str], timeout_s: float) -> str:
    """Run ``argv`` and return its stdout.

    Raises MonitorUnavailable when the program is missing, fails, or runs past ``timeout_s``
    seconds (the child is killed then), so a broken tool reads as "backend unavailable".
    """
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except FileNotFoundError as err:
        raise MonitorUnavailable(f"{argv[0]} is not on PATH") from err
    except (OSError, subprocess.TimeoutExpired) as err:
        raise MonitorUnavailable(f"{shlex.join(argv)} failed: {err}") from err
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        why = lines[-1] if lines else "no output"
        raise MonitorUnavailable(f"{shlex.join(argv)} exited with {done.returncode}: {why}")
    return done.stdout


class NvidiaSmiMonitor:
    """NVIDIA GPUs seen through ``nvidia-smi`` CSV queries (two runs per snapshot).

    ``run`` executes a command with a timeout in seconds and returns its stdout (tests pass a
    fake). The constructor runs the GPU query once, so a missing tool, a driver that does not
    answer, or a machine without GPUs raises MonitorUnavailable here rather than later.
    """

    backend = "nvidia-smi"

    def __init__(
        self,
        *,
        executable: str = "nvidia-smi",
        timeout_s: float = 10.0,
        run: CommandRunner = run_command,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._executable = executable
        self._timeout_s = timeout_s
        self._run = run
        self._clock = clock
        if not self._query_gpus():
            raise MonitorUnavailable("nvidia-smi lists no GPU")

    def snapshot(self) -> MachineSnapshot:
        """Every GPU with its compute processes; MonitorUnavailable if nvidia-smi fails."""
        taken_at = self._clock()
        gpus = self._query_gpus()
        apps = self._parse(parse_query_apps_csv, self._query(QUERY_APPS_ARGS))
        return MachineSnapshot(
            backend=self.backend,
            taken_at=taken_at,
            gpus=attach_processes(gpus, apps),
            note="nvidia-smi fallback: no per-process utilization, compute processes only",
        )

    def job_env(self, base: Mapping[str, str]) -> dict[str, str]:
        """Nothing to add to a job's environment ``base``: the GPUs are real."""
        return {}

    def close(self) -> None:
        """Nothing to release: every query is its own process."""

    def _query_gpus(self) -> tuple[GpuSnapshot, ...]:
        return self._parse(parse_query_gpu_csv, self._query(QUERY_GPU_ARGS))

    def _query(self, args: Sequence[str]) -> str:
        return self._run((self._executable, *args), self._timeout_s)

    @staticmethod
    def _parse(parser: Callable[[str], T], text: str) -> T:
        try:
            return parser(text)
        except ValueError as err:
            raise MonitorUnavailable(f"cannot read nvidia-smi output: {err}") from err


# ---------------------------------------------------------------------------------------
# CSV: --query-gpu and --query-compute-apps
# ---------------------------------------------------------------------------------------
def parse_query_gpu_csv(text: str) -> tuple[GpuSnapshot, ...]:
    """GPUs from ``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]``.

    With a header, columns are found by name (any number of other columns may be present);
    without one they must be QUERY_GPU_FIELDS in order. ``index`` defaults to the row number and
    ``uuid`` to "" when the query did not ask for them. Raises ValueError on a malformed row or
    a missing ``memory.total``/``memory.used``.
    """
    rows = _csv_rows(text, QUERY_GPU_FIELDS)
    return tuple(_gpu_from_row(position, row) for position, row in enumerate(rows))


def parse_query_apps_csv(text: str) -> dict[str, tuple[GpuProcess, ...]]:
    """Processes per GPU UUID from ``nvidia-smi --query-compute-apps=...``.

    ``mem_bytes`` is None where the driver does not say ("[N/A]" under Windows WDDM). A PID that
    holds memory on two GPUs appears under both UUIDs.
    """
    per_gpu: dict[str, list[GpuProcess]] = {}
    for row in _csv_rows(text, QUERY_APPS_FIELDS):
        process = GpuProcess(
            pid=int(_required(_number(row.get("pid")), "pid")),
            mem_bytes=_mib_bytes(row.get("used_gpu_memory")),
            name=row.get("process_name", ""),
        )
        per_gpu.setdefault(row.get("gpu_uuid", ""), []).append(process)
    return {uuid: merge_by_pid(processes) for uuid, processes in per_gpu.items()}


def attach_processes(
    gpus: Iterable[GpuSnapshot], processes_by_uuid: Mapping[str, tuple[GpuProcess, ...]]
) -> tuple[GpuSnapshot, ...]:
    """The GPUs with their processes (matched by UUID) filled in."""
    return tuple(
        replace(gpu, processes=processes_by_uuid.get(gpu.uuid, gpu.processes)) for gpu in gpus
    )


def _gpu_from_row(position: int, row: Mapping[str, str]) -> GpuSnapshot:
    index = _number(row.get("index"))
    return GpuSnapshot(
        index=position if index is None else int(index),
        uuid=row.get("uuid", ""),
        name=row.get("name", ""),
        mem_total_bytes=_required(_mib_bytes(row.get("memory.total")), "memory.total"),
        mem_used_bytes=_required(_mib_bytes(row.get("memory.used")), "memory.used"),
        util_pct=_number(row.get("utilization.gpu")),
        temperature_c=_number(row.get("temperature.gpu")),
        power_w=_number(row.get("power.draw")),
    )


def _csv_rows(text: str, default_fields: Sequence[str]) -> list[dict[str, str]]:
    """Rows as {field: cell}; fields from the header line when there is one."""
    # nvidia-smi never quotes: a comma inside a process name is a bare comma, so split by hand.
    lines = [line.split(",") for line in text.splitlines() if line.strip()]
    fields = list(default_fields)
    if lines and _is_header(lines[0]):
        fields = [_UNIT_SUFFIX_RE.sub("", cell.strip()) for cell in lines.pop(0)]
    return [dict(zip(fields, _fit(cells, fields), strict=True)) for cells in lines]


def _is_header(cells: Sequence[str]) -> bool:
    return all(_HEADER_CELL_RE.match(cell.strip()) for cell in cells)


def _fit(cells: list[str], fields: Sequence[str]) -> list[str]:
    """Strip cells, gluing back a process name that was split on its own commas."""
    extra = len(cells) - len(fields)
    if extra > 0 and "process_name" in fields:
        at = fields.index("process_name")
        cells = [*cells[:at], ",".join(cells[at : at + extra + 1]), *cells[at + extra + 1 :]]
    if len(cells) != len(fields):
        raise ValueError(f"expected {len(fields)} columns, got {len(cells)}: {','.join(cells)!r}")
    return [cell.strip() for cell in cells]


# ---------------------------------------------------------------------------------------
# XML: nvidia-smi -q -x
# ---------------------------------------------------------------------------------------
def parse_xml(text: str) -> tuple[GpuSnapshot, ...]:
    """GPUs from ``nvidia-smi -q -x`` (DTD v11 to v13), with every listed process.

    ``index`` is the GPU's position in the file, which is NVML's order (``<minor_number>`` is
    the /dev/nvidiaN number, not the index). Under MIG, the physical GPU is reported.
    """
    root = ElementTree.fromstring(text)
    return tuple(_gpu_from_xml(index, gpu) for index, gpu in enumerate(root.iterfind("gpu")))


def _gpu_from_xml(index: int, gpu: ElementTree.Element) -> GpuSnapshot:
    return GpuSnapshot(
        index=index,
        uuid=(gpu.findtext("uuid") or "").strip(),
        name=(gpu.findtext("product_name") or "").strip(),
        # Direct children only: <mig_devices> nest their own <fb_memory_usage>.
        mem_total_bytes=_required(_mib_bytes(gpu.findtext("fb_memory_usage/total")), "total"),
        mem_used_bytes=_required(_mib_bytes(gpu.findtext("fb_memory_usage/used")), "used"),
        util_pct=_number(gpu.findtext("utilization/gpu_util")),
        processes=merge_by_pid(map(_process_from_xml, gpu.iterfind("processes/process_info"))),
        temperature_c=_number(gpu.findtext("temperature/gpu_temp")),
        power_w=_first_number(gpu.findtext(path) for path in _POWER_PATHS),
    )


def _process_from_xml(info: ElementTree.Element) -> GpuProcess:
    return GpuProcess(
        pid=int(_required(_number(info.findtext("pid")), "pid")),
        mem_bytes=_mib_bytes(info.findtext("used_memory")),
        name=(info.findtext("process_name") or "").strip(),
    )


# ---------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------
def merge_by_pid(processes: Iterable[GpuProcess]) -> tuple[GpuProcess, ...]:
    """One entry per PID, first-seen order; memory summed over entries (a PID can be listed
    once per MIG instance). Memory stays None only if no entry knew it."""
    merged: dict[int, GpuProcess] = {}
    for process in processes:
        seen = merged.get(process.pid)
        if seen is None:
            merged[process.pid] = process
        elif process.mem_bytes is not None:
            merged[process.pid] = replace(seen, mem_bytes=(seen.mem_bytes or 0) + process.mem_bytes)
    return tuple(merged.values())


def _split_number(cell: str | None) -> tuple[float, str] | None:
    """(value, lower-case unit) of "24576 MiB", "93 %", "84.24 W"; None for "[N/A]", "N/A",
    "[Not Supported]", "" and anything else that is not a number."""
    match = _NUMBER_RE.match(cell or "")
    return None if match is None else (float(match.group(1)), match.group(2).lower())


def _number(cell: str | None) -> float | None:
    """The number in a cell, its unit ignored (nvidia-smi uses %, C and W for these)."""
    split = _split_number(cell)
    return None if split is None else split[0]


def _first_number(cells: Iterable[str | None]) -> float | None:
    return next((value for value in map(_number, cells) if value is not None), None)


def _mib_bytes(cell: str | None) -> int | None:
    """Bytes from a memory cell: "24576 MiB" or a bare "24576" (MiB); None if not given."""
    split = _split_number(cell)
    if split is None:
        return None
    value, unit = split
    if unit not in _MEMORY_UNITS:
        raise ValueError(f"unknown memory unit in {cell!r}")
    return int(value * _MEMORY_UNITS[unit])


def _required(value: T | None, what: str) -> T:
    if value is None:
        raise ValueError(f"nvidia-smi gave no {what}")
    return value
