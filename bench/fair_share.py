"""Fair-share convergence: two users, one submitting 10x more jobs, on the simulator.

    python bench/fair_share.py [--hours 48] [--gpus 8] [--out docs/img/fair_share.png]

Both users want more than the machine: "heavy" submits 60 one-GPU, one-hour jobs an
hour, "light" 6 (10x fewer), on 8 GPUs. Both have equal shares. It runs the same
workload through the simulator's copy of the daemon's core three times: fair share off
(``fair_share_weight = 0``), on with the defaults (2 points; aging 0.05 points an hour),
and on without aging; and prints light's share of the GPU time in 6-hour windows.
Without fair share it stays near its share of the submissions (about 9%). With it, it
should move towards its 50%; aging pulls the other way, as the heavy user's backlog
(and so its oldest job's wait) grows without bound. Writes a chart of all three.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

from gpugate.core.policy import Policy
from gpugate.sim.engine import SimConfig, SimResult, Simulation
from gpugate.sim.interference import NONE
from gpugate.sim.job import SimJob
from gpugate.units import GiB

HOUR = 3600.0
WINDOW_H = 6


def workload(hours: int) -> list[SimJob]:
    """Heavy: a job every minute; light: one every 10 minutes; each 1 GPU for 1 hour."""
    jobs: list[SimJob] = []
    for minute in range(hours * 60):
        users = ["heavy"] + (["light"] if minute % 10 == 0 else [])
        for user in users:
            jobs.append(
                SimJob(
                    id=len(jobs),
                    submit_s=minute * 60.0,
                    run_s=HOUR,
                    gpus=1,
                    mem_bytes=20 * GiB,
                    util_pct=90.0,
                    declared_mem_bytes=20 * GiB,
                    declared_util_pct=90.0,
                    user=user,
                    command=f"train-{user}",
                )
            )
    return jobs


def gpu_hours_by_window(result: SimResult, hours: int) -> dict[str, list[float]]:
    """Each user's GPU-hours run in each window (runs split across windows)."""
    windows = hours // WINDOW_H
    out = {"heavy": [0.0] * windows, "light": [0.0] * windows}
    for record in result.records:
        if record.start_s is None or record.end_s is None:
            continue
        for w in range(windows):
            lo, hi = w * WINDOW_H * HOUR, (w + 1) * WINDOW_H * HOUR
            overlap = min(hi, record.end_s) - max(lo, record.start_s)
            if overlap > 0:
                out[record.job.user][w] += overlap * record.job.gpus / HOUR
    return out


def light_share(by_window: dict[str, list[float]]) -> list[float]:
    return [
        100 * light / (light + heavy) if light + heavy else 0.0
        for light, heavy in zip(by_window["light"], by_window["heavy"], strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=int, default=48, help="hours of submissions")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--out", type=Path, help="write the chart here (PNG)")
    args = parser.parse_args()
    jobs = workload(args.hours)
    print(
        f"# {platform.machine()}, Python {platform.python_version()}; {len(jobs)} jobs"
        f" ({sum(j.user == 'heavy' for j in jobs)} heavy, {sum(j.user == 'light' for j in jobs)}"
        f" light) of 1 GPU x 1 h over {args.hours} h on {args.gpus} GPUs"
    )
    config = SimConfig(args.gpus, 32 * GiB)
    shares = {}
    for label, policy in (
        ("fair share off", Policy(fair_share_weight=0.0)),
        ("on (defaults)", Policy()),
        ("on, no aging", Policy(aging_per_hour=0.0)),
    ):
        result = Simulation(jobs, policy, NONE, config, label).run()
        shares[label] = light_share(gpu_hours_by_window(result, args.hours))
    print(f"light's share of the GPU time per {WINDOW_H} h window (%):")
    print("window  " + "  ".join(f"{label:>15}" for label in shares))
    for w in range(args.hours // WINDOW_H):
        row = "  ".join(f"{shares[label][w]:15.1f}" for label in shares)
        print(f"{w * WINDOW_H:>3}-{(w + 1) * WINDOW_H:<3} {row}")
    if args.out is not None:
        chart(shares, args.out)
        print(f"chart: {args.out}")


def chart(shares: dict[str, list[float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, values in shares.items():
        hours = [WINDOW_H * (w + 0.5) for w in range(len(values))]
        ax.plot(hours, values, marker="o", label=label)
    ax.axhline(50, color="grey", linestyle="--", linewidth=1, label="equal share (50%)")
    ax.set_xlabel("hours since the start")
    ax.set_ylabel("light user's share of GPU time (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Fair share: two users, one submitting 10x more jobs")
    ax.legend(loc="center right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
