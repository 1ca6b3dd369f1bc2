"""What a simulation run is judged by, and the confidence intervals over seeds.

JCT (job completion time) is end minus submit, over the jobs that completed; jobs that
crashed out of memory more often than allowed, or that were refused, are counted apart
(a policy must not look fast by losing work). Queueing delay is submit to first start.
Utilization is the time-weighted mean over the GPUs of the observed utilization.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from gpugate.sim.engine import JobRecord, Outcome, SimResult, Timeline

# two-sided 95% Student t quantiles by degrees of freedom (a handful of seeds is the norm)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Metrics:
    policy: str
    jobs: int
    completed: int
    refused: int
    failed_oom: int  # gave up after too many out-of-memory crashes
    oom_crashes: int  # every crash, retried or not
    jct_mean_s: float
    jct_median_s: float
    jct_p95_s: float
    queue_p95_by_priority_s: dict[int, float]
    makespan_s: float
    util_mean_pct: float
    above_headroom_frac: float  # of GPU-time spent above the headroom line
    jain_fairness: float | None  # across users; None with fewer than two users
    passes: int = 0
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(result: SimResult, headroom_pct: float = 90.0) -> Metrics:
    records = result.records
    done = [r for r in records if r.outcome == Outcome.COMPLETED]
    jcts = sorted(r.jct_s for r in done)
    first_submit = min((r.job.submit_s for r in records), default=0.0)
    last_end = max((r.end_s for r in records if r.end_s is not None), default=first_submit)
    util, above = utilization(result.timeline, headroom_pct)
    return Metrics(
        policy=result.policy_name,
        jobs=len(records),
        completed=len(done),
        refused=sum(1 for r in records if r.outcome == Outcome.REFUSED),
        failed_oom=sum(1 for r in records if r.outcome == Outcome.FAILED_OOM),
        oom_crashes=sum(r.oom_crashes for r in records),
        jct_mean_s=statistics.fmean(jcts) if jcts else math.nan,
        jct_median_s=percentile(jcts, 50),
        jct_p95_s=percentile(jcts, 95),
        queue_p95_by_priority_s=queue_p95_by_priority(done),
        makespan_s=last_end - first_submit,
        util_mean_pct=util,
        above_headroom_frac=above,
        jain_fairness=jain_by_user(done),
        passes=result.passes,
        wall_s=result.wall_s,
    )


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks; ``sorted_values`` ascending."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def queue_p95_by_priority(done: Sequence[JobRecord]) -> dict[int, float]:
    delays: dict[int, list[float]] = defaultdict(list)
    for record in done:
        delays[record.job.priority].append(record.queue_delay_s)
    return {p: percentile(sorted(d), 95) for p, d in sorted(delays.items(), reverse=True)}


def jain_by_user(done: Sequence[JobRecord]) -> float | None:
    """Jain's index over users of their mean normalized progress ``run_s / JCT`` (1: their
    jobs never waited nor slowed down). 1.0 is perfectly fair, 1/n is one user served."""
    per_user: dict[str, list[float]] = defaultdict(list)
    for record in done:
        if record.job.user:
            per_user[record.job.user].append(record.job.run_s / max(record.jct_s, 1e-9))
    if len(per_user) < 2:
        return None
    means = [statistics.fmean(v) for v in per_user.values()]
    return sum(means) ** 2 / (len(means) * sum(m * m for m in means))


def utilization(timeline: Timeline, headroom_pct: float) -> tuple[float, float]:
    """Time-weighted mean utilization (%) over GPUs, and the fraction of GPU-time above the
    headroom line. Samples are step functions: each holds until the next one."""
    total = util = above = 0.0
    at = timeline.at_s
    for i in range(len(at) - 1):
        dt = at[i + 1] - at[i]
        if dt <= 0:
            continue
        gpus = timeline.util_pct[i]
        total += dt * len(gpus)
        util += dt * sum(gpus)
        above += dt * sum(1 for u in gpus if u > headroom_pct)
    if total == 0:
        return 0.0, 0.0
    return util / total, above / total


# --------------------------------------------------------------------------- over seeds
@dataclass(frozen=True, slots=True)
class Estimate:
    """Mean over seeds with the half-width of its 95% confidence interval."""

    mean: float
    half_width: float
    n: int

    def __str__(self) -> str:
        if self.n < 2 or self.half_width == 0:
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {self.half_width:.2g}"


@dataclass(frozen=True, slots=True)
class Summary:
    policy: str
    runs: Sequence[Metrics]
    estimates: Mapping[str, Estimate] = field(default_factory=dict)


SCALAR_METRICS = (
    "jct_mean_s",
    "jct_median_s",
    "jct_p95_s",
    "makespan_s",
    "util_mean_pct",
    "above_headroom_frac",
    "oom_crashes",
    "failed_oom",
    "refused",
)


def estimate(values: Sequence[float]) -> Estimate:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return Estimate(math.nan, math.nan, 0)
    mean = statistics.fmean(finite)
    if len(finite) < 2:
        return Estimate(mean, 0.0, len(finite))
    return Estimate(
        mean, t95(len(finite) - 1) * statistics.stdev(finite) / math.sqrt(len(finite)), len(finite)
    )


def t95(dof: int) -> float:
    known = [d for d in _T95 if d <= dof]
    return _T95[max(known)] if known else _T95[1]


def summarize_runs(policy: str, runs: Sequence[Metrics]) -> Summary:
    estimates = {name: estimate([float(getattr(m, name)) for m in runs]) for name in SCALAR_METRICS}
    priorities = sorted({p for m in runs for p in m.queue_p95_by_priority_s}, reverse=True)
    for p in priorities:
        values = [m.queue_p95_by_priority_s.get(p, math.nan) for m in runs]
        estimates[f"queue_p95_s[priority {p}]"] = estimate(values)
    jain = [m.jain_fairness for m in runs if m.jain_fairness is not None]
    if jain:
        estimates["jain_fairness"] = estimate(jain)
    return Summary(policy, runs, estimates)
