"""A Markdown report of one comparison, with PNG charts beside it.

``write_report(outcome, out_dir, command)`` writes ``out_dir/report.md``: how to rerun it,
the experiment, a policies x metrics table (mean ± 95% CI over seeds) and four charts. Time
series come from the first seed's runs; the bars use every seed. Charts need matplotlib
(``pip install 'gpugate[bench]'``), imported only here so the simulator runs without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from gpugate.sim.engine import Outcome as JobOutcome
from gpugate.sim.engine import SimResult, Timeline
from gpugate.sim.experiment import Comparison
from gpugate.sim.metrics import Estimate, Summary
from gpugate.sim.policies import POLICIES
from gpugate.units import format_bytes

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

REPORT_NAME = "report.md"
CHARTS = {  # file -> alt text, in the order the report shows them
    "jct_cdf.png": "Job completion time CDF per policy",
    "utilization.png": "Mean GPU utilization over time per policy",
    "queue.png": "Queue length over time per policy",
    "jct_bars.png": "Average JCT per policy with 95% CI",
}
MAX_BINS = 200  # time-series resolution: the finest nice bin width giving at most this many
_NICE_BINS_S = (60, 300, 600, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 86400)


class ReportError(RuntimeError):
    """The report cannot be written (e.g. matplotlib is missing)."""


class Unit(NamedTuple):
    label: str
    seconds: float


# --------------------------------------------------------------------------- entry point
def write_report(
    outcome: Comparison,
    out_dir: Path,
    command: str,
    baseline: str | None = "fifo-backfill",
    today: date | None = None,
) -> Path:
    """Write ``out_dir/report.md`` and its charts (created or overwritten); return its path.

    ``command`` is shown verbatim as the way to reproduce the report; ``baseline`` is the
    policy the others are compared with (no comparison column if it was not run).
    """
    _require_matplotlib()  # before writing anything: no report without its charts
    out_dir.mkdir(parents=True, exist_ok=True)
    write_charts(outcome, out_dir)
    path = out_dir / REPORT_NAME
    text = render_markdown(outcome, command, baseline, today or date.today())
    path.write_text(text, encoding="utf-8")
    return path


def write_charts(outcome: Comparison, out_dir: Path) -> None:
    colors = {name: f"C{i % 10}" for i, name in enumerate(outcome.experiment.policies)}
    plot_jct_cdf(outcome.first_runs, colors, out_dir / "jct_cdf.png")
    plot_utilization(outcome.first_runs, colors, out_dir / "utilization.png")
    plot_queue(outcome.first_runs, colors, out_dir / "queue.png")
    plot_jct_bars(outcome.summaries, colors, out_dir / "jct_bars.png")


# --------------------------------------------------------------------------- binning
def bin_steps(
    at_s: Sequence[float], values: Sequence[float], bin_s: float
) -> tuple[list[float], list[float]]:
    """Time-weighted mean of a step function within each ``bin_s``-wide bin.

    ``values[i]`` holds from ``at_s[i]`` (ascending, seconds) until ``at_s[i + 1]``; the last
    sample only closes the span. Bins are aligned to multiples of ``bin_s`` and cover
    ``[at_s[0], at_s[-1])``; each mean is over the part of its bin the span covers. Returns
    ``(bin starts in s, means)``, empty when the span is empty. O(samples + bins).
    """
    if bin_s <= 0:
        raise ValueError(f"bin width must be positive, not {bin_s}")
    if len(at_s) != len(values):
        raise ValueError(f"{len(at_s)} times but {len(values)} values")
    if len(at_s) < 2:
        return [], []
    first = math.floor(at_s[0] / bin_s)
    weighted: list[float] = []  # value x seconds, per bin from `first`
    covered: list[float] = []  # seconds of the bin the span covers
    k = first
    for i in range(len(at_s) - 1):
        start, end, value = at_s[i], at_s[i + 1], values[i]
        while start < end:
            edge = min(end, (k + 1) * bin_s)
            if edge <= start:  # start is at (or, by rounding, past) the end of bin k
                k += 1
                continue
            while len(weighted) <= k - first:
                weighted.append(0.0)
                covered.append(0.0)
            weighted[k - first] += value * (edge - start)
            covered[k - first] += edge - start
            start = edge
    starts = [(first + j) * bin_s for j in range(len(weighted))]
    return starts, [w / c if c > 0 else math.nan for w, c in zip(weighted, covered, strict=True)]


def bin_width_s(span_s: float) -> float:
    """The finest of minutes, hours or days giving at most MAX_BINS bins over ``span_s``."""
    for width in _NICE_BINS_S:
        if span_s / width <= MAX_BINS:
            return float(width)
    return 86400.0 * math.ceil(span_s / 86400 / MAX_BINS)


# --------------------------------------------------------------------------- markdown
def render_markdown(outcome: Comparison, command: str, baseline: str | None, today: date) -> str:
    exp = outcome.experiment
    workload = outcome.workloads[exp.seeds[0]]
    lines = [
        f"# Simulated GPU scheduling: {workload.name}",
        "",
        f"Generated {today.isoformat()}. Reproduce with:",
        "",
        "```sh",
        command,
        "```",
        "",
        "## Setup",
        "",
        f"Workload (seed {exp.seeds[0]}, {len(workload.jobs)} jobs): {workload.description}",
        "",
        f"Offered load **{outcome.offered_load:.2f}** (the GPU shares jobs declare, per GPU"
        f" and unit time); whole-GPU load **{outcome.whole_gpu_load:.2f}** (every job counted"
        " as whole GPUs, what a one-job-per-GPU queue sees).",
        "",
        *_table(["parameter", "value"], [[k, _param(k, v)] for k, v in exp.describe().items()]),
        "",
        "## Policies",
        "",
        *_table(
            ["policy", "what it does"],
            [[f"`{name}`", POLICIES[name][1] if name in POLICIES else ""] for name in exp.policies],
        ),
        "",
        "## Results",
        "",
        *results_section(outcome, baseline),
        "",
        "## Charts",
        "",
        f"Time series are seed {exp.seeds[0]}'s runs, binned by time-weighted mean;"
        f" the bars are over all {len(exp.seeds)} seed(s).",
        "",
    ]
    for file, alt in CHARTS.items():
        lines += [f"![{alt}]({file})", ""]
    return "\n".join(lines)


def results_section(outcome: Comparison, baseline: str | None) -> list[str]:
    summaries = outcome.summaries
    names = outcome.workloads[outcome.experiment.seeds[0]].priority_names
    priorities = _priorities(summaries)
    columns = metric_columns(summaries, priorities, names)
    header = ["policy", *(title for title, _, _ in columns)]
    rows = [
        [f"`{s.policy}`", *(_cell(s.estimates.get(k), per) for _, k, per in columns)]
        for s in summaries
    ]
    base = next((s for s in summaries if s.policy == baseline), None)
    if base is not None and baseline is not None:
        top = priorities[0] if priorities else None
        label = _priority_label(top, names, len(priorities)) if top is not None else ""
        header.append(f"relative to {baseline}")
        for row, s in zip(rows, summaries, strict=True):
            row.append(relative_to(s, base, top, label))
    headroom = _headroom_pct(outcome.first_runs)
    note = (
        f"Each cell: mean over {len(outcome.experiment.seeds)} seed(s) ± half-width of the"
        " 95% confidence interval. JCT (submit to end) and queueing delay (submit to first"
        " start) count completed jobs only; jobs failed by repeated OOM crashes or refused are"
        f" counted apart. Above headroom: share of GPU-time above {headroom:g}% utilization."
    )
    return [note, "", *_table(header, rows)]


Column = tuple[str, str, float]  # title, estimate key, seconds (or units) per shown unit


def metric_columns(
    summaries: Sequence[Summary], priorities: Sequence[int], names: Mapping[int, str]
) -> list[Column]:
    jct = _unit_for(summaries, ("jct_mean_s", "jct_median_s", "jct_p95_s"))
    waits = [f"queue_p95_s[priority {p}]" for p in priorities]
    wait = _unit_for(summaries, waits)
    span = _unit_for(summaries, ("makespan_s",))
    columns: list[Column] = [
        (f"avg JCT ({jct.label})", "jct_mean_s", jct.seconds),
        (f"median JCT ({jct.label})", "jct_median_s", jct.seconds),
        (f"p95 JCT ({jct.label})", "jct_p95_s", jct.seconds),
    ]
    for p, key in zip(priorities, waits, strict=True):
        title = f"p95 wait, {_priority_label(p, names, len(priorities))}"
        columns.append((f"{title} ({wait.label})", key, wait.seconds))
    columns += [
        (f"makespan ({span.label})", "makespan_s", span.seconds),
        ("util %", "util_mean_pct", 1.0),
        ("above headroom %", "above_headroom_frac", 0.01),
        ("OOM crashes", "oom_crashes", 1.0),
        ("failed (OOM)", "failed_oom", 1.0),
        ("refused", "refused", 1.0),
    ]
    if any("jain_fairness" in s.estimates for s in summaries):
        columns.append(("Jain fairness", "jain_fairness", 1.0))
    return columns


def relative_to(summary: Summary, base: Summary, top: int | None, top_label: str) -> str:
    """A short sentence: avg JCT change and the ratio of top-priority p95 waits."""
    if summary.policy == base.policy:
        return "baseline"
    parts = []
    jct, ref = summary.estimates["jct_mean_s"].mean, base.estimates["jct_mean_s"].mean
    if math.isfinite(jct) and math.isfinite(ref) and ref > 0:
        change = (jct / ref - 1) * 100
        size = f"{abs(change):.0f}" if abs(change) >= 10 else f"{abs(change):.1f}"
        parts.append(f"avg JCT {size}% {'lower' if change < 0 else 'higher'}")
    key = f"queue_p95_s[priority {top}]"
    if top is not None and key in summary.estimates and key in base.estimates:
        wait, ref_wait = summary.estimates[key].mean, base.estimates[key].mean
        if math.isfinite(wait) and math.isfinite(ref_wait) and ref_wait > 0:
            parts.append(f"{top_label} p95 wait {wait / ref_wait:.2f}×")
    return "; ".join(parts) or "–"


def _priorities(summaries: Sequence[Summary]) -> list[int]:
    found = {p for s in summaries for m in s.runs for p in m.queue_p95_by_priority_s}
    return sorted(found, reverse=True)


def _priority_label(priority: int, names: Mapping[int, str], classes: int) -> str:
    if classes == 1:
        return "all jobs"
    return names.get(priority, f"priority {priority}")


def _unit_for(summaries: Sequence[Summary], keys: Sequence[str]) -> Unit:
    """Seconds below 2 minutes, minutes below 2 hours, else hours: by the largest mean."""
    means = [s.estimates[k].mean for s in summaries for k in keys if k in s.estimates]
    largest = max((m for m in means if math.isfinite(m)), default=0.0)
    if largest < 120:
        return Unit("s", 1.0)
    return Unit("min", 60.0) if largest < 7200 else Unit("h", 3600.0)


def _cell(est: Estimate | None, per: float) -> str:
    if est is None or est.n == 0 or not math.isfinite(est.mean):
        return "–"
    mean, half = est.mean / per, est.half_width / per
    if est.n < 2 or not math.isfinite(half) or half == 0:
        return _num(mean)
    return f"{_num(mean)} ± {_num(half)}"


def _num(x: float) -> str:
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _param(name: str, value: Any) -> str:
    if value is None:
        return "synthetic" if name == "trace" else "none"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    if name.endswith("_bytes") and isinstance(value, int):
        return format_bytes(value)
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]


def _headroom_pct(runs: Mapping[str, SimResult]) -> float:
    return max((r.policy.limits.util_headroom_pct for r in runs.values()), default=90.0)


# --------------------------------------------------------------------------- charts
def _require_matplotlib() -> None:
    try:
        import matplotlib.backends.backend_agg  # noqa: F401  (the canvas; loads the rest)
    except ImportError as exc:
        raise ReportError(f"charts need matplotlib ({exc}): pip install 'gpugate[bench]'") from None


def _axes(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    """A figure on the Agg canvas, outside pyplot: no global state, nothing to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.set_axisbelow(True)  # bars and lines over the grid
    return fig, ax


def _save(fig: Figure, ax: Axes, path: Path) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=110)


def plot_jct_cdf(runs: Mapping[str, SimResult], colors: Mapping[str, str], path: Path) -> None:
    fig, ax = _axes(
        "Job completion time, CDF (first seed)", "JCT (hours, log scale)", "fraction of jobs"
    )
    for name, result in runs.items():
        done = [r for r in result.records if r.outcome == JobOutcome.COMPLETED]
        hours = sorted(r.jct_s / 3600 for r in done if r.jct_s > 0)
        fractions = [(i + 1) / len(hours) for i in range(len(hours))]
        if hours:
            ax.step(hours, fractions, where="post", label=name, color=colors.get(name))
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    _save(fig, ax, path)


def plot_utilization(runs: Mapping[str, SimResult], colors: Mapping[str, str], path: Path) -> None:
    fig, ax = _plot_series(
        runs,
        colors,
        "Mean GPU utilization",
        "utilization, mean over GPUs (%)",
        lambda line: [sum(gpus) / len(gpus) if gpus else 0.0 for gpus in line.util_pct],
    )
    headroom = _headroom_pct(runs)
    ax.axhline(headroom, linestyle="--", color="grey", label=f"headroom {headroom:g}%")
    ax.set_ylim(0, 105)
    _save(fig, ax, path)


def plot_queue(runs: Mapping[str, SimResult], colors: Mapping[str, str], path: Path) -> None:
    fig, ax = _plot_series(
        runs,
        colors,
        "Queue length",
        "queued jobs (time-weighted mean)",
        lambda line: [float(q) for q in line.queued],
    )
    ax.set_ylim(bottom=0)
    _save(fig, ax, path)


def _plot_series(
    runs: Mapping[str, SimResult],
    colors: Mapping[str, str],
    title: str,
    ylabel: str,
    series: Callable[[Timeline], list[float]],
) -> tuple[Figure, Axes]:
    """One binned step line per policy of ``series(timeline)`` over the first seed's run."""
    unit, bin_s = _time_axis(runs)
    fig, ax = _axes(
        f"{title} (first seed, {_duration(bin_s)} bins)", f"time ({unit.label})", ylabel
    )
    for name, result in runs.items():
        line = result.timeline
        _step(ax, bin_steps(line.at_s, series(line), bin_s), bin_s, unit, name, colors.get(name))
    return fig, ax


def plot_jct_bars(summaries: Sequence[Summary], colors: Mapping[str, str], path: Path) -> None:
    unit = _unit_for(summaries, ("jct_mean_s",))
    fig, ax = _axes(
        "Average job completion time (all seeds, 95% CI)", "policy", f"avg JCT ({unit.label})"
    )
    estimates = [s.estimates["jct_mean_s"] for s in summaries]
    means = [e.mean / unit.seconds if math.isfinite(e.mean) else 0.0 for e in estimates]
    errors = [
        e.half_width / unit.seconds if math.isfinite(e.half_width) else 0.0 for e in estimates
    ]
    names = [s.policy for s in summaries]
    ax.bar(range(len(names)), means, yerr=errors, capsize=4, color=[colors.get(n) for n in names])
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    _save(fig, ax, path)


def _step(
    ax: Axes,
    binned: tuple[list[float], list[float]],
    bin_s: float,
    unit: Unit,
    label: str,
    color: str | None,
) -> None:
    starts, means = binned
    if not starts:
        return
    xs = [s / unit.seconds for s in [*starts, starts[-1] + bin_s]]  # close the last bin
    ax.step(xs, [*means, means[-1]], where="post", label=label, color=color)


def _time_axis(runs: Mapping[str, SimResult]) -> tuple[Unit, float]:
    span = max((r.timeline.at_s[-1] for r in runs.values() if r.timeline.at_s), default=0.0)
    unit = Unit("hours", 3600.0) if span <= 3 * 86400 else Unit("days", 86400.0)
    return unit, bin_width_s(span)


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:g}-minute"
    return f"{seconds / 3600:g}-hour" if seconds < 86400 else f"{seconds / 86400:g}-day"
