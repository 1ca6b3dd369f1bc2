"""Reading CSV files with errors that name the file, line and column."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")


class WorkloadError(ValueError):
    """A workload that cannot be used; the message names the file and line when there is one."""


def read_csv_header(path: str | Path) -> list[str]:
    """The first line of a CSV file, read alone (telling formats apart needs no more)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            return next(csv.reader(file), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise WorkloadError(f"{path}: cannot read: {exc}") from None


def read_csv_rows(path: str | Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """``(header, [(line, row), ...])`` of a CSV file; blank lines skipped, widths checked."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = next(reader, [])
            rows = [(reader.line_num, row) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise WorkloadError(f"{path}: cannot read: {exc}") from None
    if not header:
        raise WorkloadError(f"{path}: empty file, expected a header line")
    for line, row in rows:
        if len(row) != len(header):
            raise WorkloadError(f"{path}:{line}: {len(row)} values, header has {len(header)}")
    return header, [(line, dict(zip(header, row, strict=True))) for line, row in rows]


def parse_cell(
    path: str | Path, line: int, column: str, text: str, parse: Callable[[str], _T]
) -> _T:
    """``parse(text)``, its ValueError turned into a WorkloadError naming file and line."""
    try:
        return parse(text.strip())
    except ValueError as exc:
        raise WorkloadError(f"{path}:{line}: column {column}: {exc}") from None


def parse_seconds(text: str) -> float:
    """A finite number of seconds >= 0."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{text!r} is not a number of seconds >= 0")
    return value


def parse_count(text: str) -> int:
    """A whole number >= 0."""
    value = int(text)
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return value
