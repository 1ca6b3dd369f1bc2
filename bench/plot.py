#!/usr/bin/env python3
"""Charts of the last benchmark run (bench/out/*.json) for docs/benchmarks.md.

Writes docs/benchmarks-latency.png and docs/benchmarks-throughput.png: gpugate and
task-spooler side by side. Needs matplotlib (``pip install -e '.[bench]'``).

Usage: bench/plot.py [--out docs]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

RESULTS = Path(__file__).resolve().parent / "out"
GPUGATE_COLOR, PEER_COLOR = "#2b6cb0", "#c05621"


def load(name: str) -> dict[str, Any]:
    return dict(json.loads((RESULTS / f"{name}.json").read_text()))


def color(label: str) -> str:
    return PEER_COLOR if label.startswith("tsp") else GPUGATE_COLOR


def bars(ax: Any, rows: dict[str, float], title: str, unit: str) -> None:
    labels = list(rows)
    ax.barh(labels, list(rows.values()), color=[color(label) for label in labels])
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(unit)
    for y, value in enumerate(rows.values()):
        ax.text(value, y, f" {value:.3g}", va="center", fontsize=8)
    ax.margins(x=0.2)


def latency_chart(out: Path) -> Path:
    cli = load("cli_latency")["rows"]
    start = load("submit_to_start")["rows"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5))
    bars(top, {k: v["median_ms"] for k, v in cli.items()}, "Cold CLI call, median", "ms")
    bars(
        bottom,
        {k: v["latency"]["median_ms"] for k, v in start.items()},
        "Submit to start, median",
        "ms",
    )
    return save(fig, out / "benchmarks-latency.png")


def throughput_chart(out: Path) -> Path:
    rows = load("throughput")["rows"]
    rates = {
        label: row["jobs_per_s_run"] or row["jobs_per_s_total"]
        for label, row in rows.items()
        if row["jobs_per_s_run"] or row["jobs_per_s_total"]
    }
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bars(
        ax,
        rates,
        "1,000 trivial jobs: jobs per second (gpugate blue, task-spooler orange)",
        "jobs/s",
    )
    return save(fig, out / "benchmarks-throughput.png")


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs")
    args = parser.parse_args()
    for path in (latency_chart(args.out), throughput_chart(args.out)):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
