"""``gpugate sim run|report|policies``: the simulator from the command line (no daemon)."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpugate.cli.errors import EXIT_USAGE, CliError
from gpugate.cli.progress import StatusLine

if TYPE_CHECKING:
    from gpugate.sim.experiment import Comparison, Experiment


def add_simulation_options(p: argparse.ArgumentParser, size: Any) -> None:
    p.add_argument(
        "--trace", help="workload CSV (gpugate or Alibaba 2023 format); default: synthetic"
    )
    p.add_argument("--jobs", type=int, default=2000, help="synthetic workload size (default 2000)")
    p.add_argument("--gpus", type=int, default=8, help="simulated GPUs (default 8)")
    p.add_argument("--gpu-mem", type=size, default="32GiB", help="memory per GPU (default 32GiB)")
    p.add_argument("--load", type=float, default=0.9, help="offered load to rescale arrivals to")
    p.add_argument("--as-recorded", action="store_true", help="keep the trace's arrival times")
    p.add_argument(
        "--load-basis",
        choices=("offered", "whole-gpu"),
        default="offered",
        help="offered: GPU shares declared (default); whole-gpu: every job as whole GPUs",
    )
    p.add_argument("--last-days", type=float, help="only the trace's final days (e.g. 7)")
    p.add_argument(
        "--days",
        type=_day_window,
        help="only days START:END of the trace, counted from its first job (e.g. 20.4:27.4)",
    )
    p.add_argument("--policy", default=None, help="comma-separated names (`gpugate sim policies`)")
    p.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    p.add_argument("--seeds", type=int, default=3, help="how many seeds (default 3)")
    p.add_argument("--interference", choices=("fitted", "none"), default="fitted")
    p.add_argument(
        "--real-util", type=float, default=1.0, help="fraction of declared util jobs really use"
    )
    p.add_argument(
        "--preempt",
        choices=("never", "checkpoint", "requeue"),
        default="never",
        help="what every job allows (default never): checkpoint saves, requeue restarts",
    )
    p.add_argument(
        "--checkpoint-s", type=float, default=60.0, help="a checkpoint's save (and restore) time"
    )
    p.add_argument("--no-progress", action="store_true")


def _day_window(text: str) -> tuple[float, float]:
    """``START:END`` in days, START < END, both finite and >= 0."""
    start, sep, end = text.partition(":")
    try:
        window = (float(start), float(end))
    except ValueError:
        window = (math.nan, math.nan)
    if not sep or not all(map(math.isfinite, window)) or not 0 <= window[0] < window[1]:
        raise argparse.ArgumentTypeError(f"expected START:END in days, START < END, not {text!r}")
    return window


def experiment_from_args(args: argparse.Namespace) -> Experiment:
    from gpugate.sim.experiment import Experiment, LoadBasis
    from gpugate.sim.policies import DEFAULT_COMPARISON, POLICIES

    policies = tuple(args.policy.split(",")) if args.policy else DEFAULT_COMPARISON
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise CliError(
            f"unknown policy {', '.join(unknown)}; see `gpugate sim policies`", EXIT_USAGE
        )
    _check_ranges(args)
    return Experiment(
        trace=args.trace,
        synthetic_jobs=args.jobs,
        n_gpus=args.gpus,
        gpu_mem_bytes=args.gpu_mem,
        load=None if args.as_recorded else args.load,
        load_basis=LoadBasis(args.load_basis),
        last_days=args.last_days,
        window_days=args.days,
        policies=policies,
        seeds=tuple(range(args.seed, args.seed + args.seeds)),
        interference=args.interference,
        real_util=args.real_util,
        preempt=args.preempt,
        checkpoint_s=args.checkpoint_s,
    )


def _check_ranges(args: argparse.Namespace) -> None:
    problems = []
    if args.gpus < 1:
        problems.append("--gpus must be at least 1")
    if args.seeds < 1:
        problems.append("--seeds must be at least 1")
    if args.jobs < 1:
        problems.append("--jobs must be at least 1")
    if not (math.isfinite(args.load) and args.load > 0):
        problems.append("--load must be a positive number")
    if not 0 < args.real_util <= 1:
        problems.append("--real-util must be in (0, 1]")
    if args.last_days is not None and args.last_days <= 0:
        problems.append("--last-days must be positive")
    if not (math.isfinite(args.checkpoint_s) and args.checkpoint_s >= 0):
        problems.append("--checkpoint-s must be a number >= 0")
    if args.last_days is not None and args.days is not None:
        problems.append("give --last-days or --days, not both")
    if problems:
        raise CliError("; ".join(problems), EXIT_USAGE)


def cmd_sim_run(args: argparse.Namespace) -> int:
    outcome = _run(args)
    if args.json:
        print(json.dumps(_finite(outcome_as_json(outcome)), indent=2, default=str))
    else:
        print(summary_table(outcome))
    return 0


def cmd_sim_report(args: argparse.Namespace) -> int:
    from gpugate.sim.report import ReportError, write_report

    outcome = _run(args)
    command = "gpugate " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv else ""
    try:
        path = write_report(outcome, Path(args.out), command)
    except ReportError as exc:
        raise CliError(str(exc)) from None
    print(summary_table(outcome))
    print(f"\nreport: {path}")
    return 0


def cmd_sim_policies(args: argparse.Namespace) -> int:
    from gpugate.sim.policies import POLICIES

    width = max(len(name) for name in POLICIES)
    for name, (_, what) in POLICIES.items():
        print(f"{name:<{width}}  {what}")
    return 0


def _run(args: argparse.Namespace) -> Comparison:
    from gpugate.sim.csvio import WorkloadError
    from gpugate.sim.experiment import run_experiment

    exp = experiment_from_args(args)
    if exp.trace is not None and not Path(exp.trace).is_file():
        raise CliError(f"no such trace file: {exp.trace}", EXIT_USAGE)
    progress = None if args.no_progress else ProgressLine(len(exp.policies) * len(exp.seeds))
    try:
        outcome = run_experiment(exp, progress)
    except WorkloadError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    finally:
        if progress is not None:
            progress.close()
    return outcome


class ProgressLine:
    """The simulator's progress line: which run, how far."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.seen: set[tuple[str, int]] = set()
        self.line = StatusLine(width=78)

    def __call__(self, policy: str, seed: int, done: int, total: int) -> None:
        self.seen.add((policy, seed))
        if self.line.due(final=done >= total):
            self.line.write(
                f"run {len(self.seen)}/{self.runs}: {policy} seed {seed}: {done}/{total} jobs"
                f" ended ({self.line.elapsed_s:.0f} s)"
            )

    def close(self) -> None:
        self.line.close()


def summary_table(outcome: Comparison) -> str:
    exp = outcome.experiment
    header = (
        f"{exp.trace or 'synthetic'}: {len(outcome.workloads[exp.seeds[0]].jobs)} jobs,"
        f" {exp.n_gpus} GPUs, offered load {outcome.offered_load:.2f}"
        f" (whole-GPU {outcome.whole_gpu_load:.2f}), {len(exp.seeds)} seed(s), mean ± 95% CI"
    )
    top = _top_priority(outcome)
    cols = [
        "policy",
        "avg JCT h",
        "median h",
        "p95 h",
        f"p95 wait h (prio {top})",
        "util %",
        "OOM",
        "failed",
    ]
    rows = [cols]
    for s in outcome.summaries:
        e = s.estimates
        rows.append([
            s.policy,
            _hours(e["jct_mean_s"]),
            _hours(e["jct_median_s"]),
            _hours(e["jct_p95_s"]),
            _hours(e.get(f"queue_p95_s[priority {top}]")),
            str(e["util_mean_pct"]),
            str(e["oom_crashes"]),
            str(e["failed_oom"]),
        ])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([header, *lines])


def _top_priority(outcome: Comparison) -> int:
    jobs = outcome.workloads[outcome.experiment.seeds[0]].jobs
    return max((j.priority for j in jobs), default=0)


def _hours(estimate: Any) -> str:
    if estimate is None or math.isnan(estimate.mean):
        return "-"
    half = estimate.half_width / 3600
    mean = estimate.mean / 3600
    return f"{mean:.2f} ± {half:.2f}" if estimate.n > 1 and half > 0 else f"{mean:.2f}"


def outcome_as_json(outcome: Comparison) -> dict[str, Any]:
    return {
        "experiment": outcome.experiment.describe(),
        "offered_load": outcome.offered_load,
        "whole_gpu_load": outcome.whole_gpu_load,
        "policies": {
            s.policy: {
                "estimates": {
                    k: {"mean": v.mean, "ci95": v.half_width, "n": v.n}
                    for k, v in s.estimates.items()
                },
                "runs": [m.as_dict() for m in s.runs],
            }
            for s in outcome.summaries
        },
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN: a metric with no data (e.g. no job of that priority) is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
