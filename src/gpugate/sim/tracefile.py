"""Workload files: gpugate's own workload CSV (one ``SimJob`` a row), and ``load_trace``,
which reads it or an Alibaba 2023 jobs CSV, told apart by the header."""

from __future__ import annotations

import csv
import dataclasses
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpugate.sim import alibaba
from gpugate.sim.csvio import (
    WorkloadError,
    parse_cell,
    parse_count,
    parse_seconds,
    read_csv_rows,
)
from gpugate.sim.job import SimJob, Workload
from gpugate.sim.workload import select_window, shift_to_zero
from gpugate.units import parse_bytes

CSV_FIELDS = tuple(f.name for f in dataclasses.fields(SimJob))
_CSV_REQUIRED = frozenset(
    f.name for f in dataclasses.fields(SimJob) if f.default is dataclasses.MISSING
)


# --- files --------------------------------------------------------------------------------


def save_csv(workload: Workload, path: str | Path) -> None:
    """Write the jobs as gpugate workload CSV: a header of ``SimJob`` fields, one job a row."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_FIELDS)
        for job in workload.jobs:
            values = dataclasses.astuple(job)
            writer.writerow("" if value is None else value for value in values)


def load_csv(path: str | Path) -> Workload:
    """Read a gpugate workload CSV. Columns may come in any order; those with a default in
    ``SimJob`` may be left out; ``declared_mem_bytes`` empty means "declares nothing";
    memory columns take sizes such as ``10GiB`` too. Jobs come back sorted by submit time and
    shifted so the first submits at 0 s (see docs/simulator-workloads.md)."""
    header, rows = read_csv_rows(path)
    _check_header(path, header)
    jobs = shift_to_zero([_job_from_row(path, line, row) for line, row in rows])
    if len({job.id for job in jobs}) != len(jobs):
        raise WorkloadError(f"{path}: job ids must be unique")
    return Workload(Path(path).stem, jobs, f"{len(jobs)} jobs from {Path(path).name}")


def load_trace(
    path: str | Path,
    *,
    window_days: tuple[float, float] | None = None,
    last_days: float | None = None,
    **alibaba_options: Any,
) -> Workload:
    """Read a gpugate workload CSV or an Alibaba 2023 jobs CSV, told apart by the header.

    The window options apply to both; other options go to ``alibaba.load_alibaba``.
    """
    if alibaba.is_alibaba_trace(path):
        return alibaba.load_alibaba(
            path, window_days=window_days, last_days=last_days, **alibaba_options
        )
    header = read_csv_rows(path)[0]
    if "submit_s" not in header:
        raise WorkloadError(
            f"{path}:1: unknown header {header}: expected gpugate columns "
            f"({', '.join(CSV_FIELDS)}) or Alibaba columns ({', '.join(alibaba.ALIBABA_COLUMNS)})"
        )
    if alibaba_options:
        raise WorkloadError(f"{path}: {sorted(alibaba_options)} apply to Alibaba traces only")
    return select_window(load_csv(path), window_days=window_days, last=last_days)


def _check_header(path: str | Path, header: list[str]) -> None:
    problems = [
        *(f"unknown column {name!r}" for name in header if name not in CSV_FIELDS),
        *(f"missing column {name!r}" for name in sorted(_CSV_REQUIRED - set(header))),
        *(f"repeated column {name!r}" for name, n in Counter(header).items() if n > 1),
    ]
    if problems:
        raise WorkloadError(
            f"{path}:1: bad header: {', '.join(problems)} (columns: {', '.join(CSV_FIELDS)})"
        )


def _job_from_row(path: str | Path, line: int, row: dict[str, str]) -> SimJob:
    values = {
        name: parse_cell(path, line, name, text, _PARSERS[name]) for name, text in row.items()
    }
    return SimJob(**values)


def _pct(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise ValueError(f"{text!r} is not a percentage in [0, 100]")
    return value


def _mem(text: str) -> int:
    return 0 if text == "0" else parse_bytes(text)


def _optional_mem(text: str) -> int | None:
    return None if text == "" else _mem(text)


_PARSERS: dict[str, Callable[[str], Any]] = {
    "id": int,
    "submit_s": parse_seconds,
    "run_s": parse_seconds,
    "gpus": parse_count,
    "mem_bytes": _mem,
    "util_pct": _pct,
    "declared_mem_bytes": _optional_mem,
    "declared_util_pct": _pct,
    "priority": int,
    "user": str,
    "ramp_s": parse_seconds,
    "name": str,
    "command": str,
}
