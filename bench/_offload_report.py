"""Reporting bench/offload.py's figures: the printed tables, the bars, the charts, the JSON."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from _common import OUT_DIR, table
from _offload_measure import BASELINE, FIXED, NOT_RUN, Call, Cell, majority_picks

from gpugate.offload.builtin import CALIBRATION, TASKS


# ------------------------------------------------------------------------ printing
def print_table(name: str, scenario: dict[str, Any]) -> None:
    cells: dict[Call, Cell] = scenario["cells"]
    labels = sorted({label for c in cells.values() for label in c.times})
    rows = []
    for (kind, size), cell in sorted(cells.items()):
        medians = cell.median
        ordered = sorted(medians.values())
        margin = ordered[1] / ordered[0] if len(ordered) > 1 else None
        rows.append(
            [
                kind,
                size,
                *(medians.get(label, float("nan")) * 1000 for label in labels),
                cell.best,
                margin,
                scenario["picks"][kind, size],
            ]
        )
    print(f"\n[{name}] oracle table: median ms (compute + transfer) per option")
    print(
        table(
            [
                "kind",
                "size",
                *(f"{label} ms" for label in labels),
                "oracle pick",
                "2nd/best",
                "model pick",
            ],
            rows,
        )
    )


def print_results(name: str, scenario: dict[str, Any], has_gpu: bool) -> None:
    results = scenario["policies"]
    oracle = results["oracle"]["total_s"]
    rows = []
    for label, r in results.items():
        rows.append(
            [
                label,
                r["total_s"],
                f"{r['total_s'] / oracle:.3f}x",
                f"{100 * r['accuracy_strict']:.1f}%",
                f"{100 * r['accuracy_within_5pct']:.1f}%",
                f"{100 * r['regret']:.1f}%",
                "-"
                if r["decide_p50_us"] is None
                else f"{r['decide_p50_us']:.1f} / {r['decide_p99_us']:.1f}",
                r["overhead_us"],
                " ".join(f"{k}:{v}" for k, v in r["calls_per_option"].items()),
            ]
        )
    if not has_gpu:
        rows += [
            [label, NOT_RUN, *[NOT_RUN] * 6, ""] for label in ("always-gpu", "learned (async)")
        ]
    print(f"\n[{name}] {scenario['stream_calls']} calls a stream; total s = median of the rounds")
    print(
        table(
            [
                "policy",
                "total s",
                "vs oracle",
                "acc strict",
                "acc within 5%",
                "regret",
                "decide p50/p99 us",
                "overhead us/task",
                "calls per option",
            ],
            rows,
        )
    )
    for label, key in (("", "decisions"), (" with caches flushed", "decisions_cold")):
        d = scenario[key]
        swept = f" ({d['sweep_bytes'] >> 20} MiB swept between calls)" if d["sweep_bytes"] else ""
        print(
            f"decide() alone{label}, learned policy, {d['n']} calls{swept}: p50"
            f" {d['p50_us']:.1f} us, p99 {d['p99_us']:.1f} us, p99.9 {d['p999_us']:.1f} us,"
            f" max {d['max_us']:.0f} us"
        )
    learned = results["learned"]
    print(
        f"learned: {learned['explored']} of {learned['calls']} decisions were exploration draws;"
        f" {learned['shifts']} lasting changes followed"
    )
    check = scenario["oracle_check"]
    print(
        f"oracle check: in {check['agree']} of {check['compared']} (task, size) the table's pick"
        " is also the faster on average in the streams of the fixed policies"
    )


def bars(scenarios: dict[str, dict[str, Any]], has_gpu: bool) -> list[dict[str, Any]]:
    out = []
    for name, scenario in scenarios.items():
        r = scenario["policies"]
        learned, oracle = r["learned"], r["oracle"]["total_s"]
        fixed = {k: v["total_s"] for k, v in r.items() if k in FIXED}
        best_fixed = min(fixed, key=fixed.__getitem__)
        checks = [
            (
                "decision accuracy >= 90% (strict)",
                learned["accuracy_strict"] >= 0.9,
                f"{100 * learned['accuracy_strict']:.1f}% (within 5%: "
                f"{100 * learned['accuracy_within_5pct']:.1f}%)",
            ),
            (
                "total within 5% of the oracle",
                learned["total_s"] <= 1.05 * oracle,
                f"{learned['total_s']:.3f} s vs {oracle:.3f} s "
                f"({learned['total_s'] / oracle:.3f}x)",
            ),
            (
                "never worse than the best fixed policy",
                learned["total_s"] <= fixed[best_fixed],
                f"{learned['total_s']:.3f} s vs {best_fixed} {fixed[best_fixed]:.3f} s"
                + ("" if has_gpu else " (always-gpu: gpu)"),
            ),
            (
                "decision p99 < 50 us, in a loop of decide()",
                scenario["decisions"]["p99_us"] < 50,
                f"{scenario['decisions']['p99_us']:.1f} us",
            ),
            (
                "decision p99 < 50 us, between the stream's kernels (cold caches)",
                learned["decide_p99_us"] < 50,
                f"{learned['decide_p99_us']:.1f} us",
            ),
        ]
        out += [{"scenario": name, "bar": b, "met": met, "figure": fig} for b, met, fig in checks]
    return out


# ------------------------------------------------------------------------ charts
def charts(scenarios: dict[str, dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = [utilization_chart(plt, scenarios), totals_chart(plt, scenarios)]
    if "idle" in scenarios:
        paths.append(sizes_chart(plt, scenarios["idle"]))
    return paths


def utilization_chart(plt: Any, scenarios: dict[str, dict[str, Any]]) -> Path:
    fig, axes = plt.subplots(
        len(scenarios), 2, figsize=(10, 2.8 * len(scenarios)), squeeze=False, sharey=True
    )
    for row, (name, scenario) in enumerate(scenarios.items()):
        for col, label in enumerate((BASELINE, "learned")):
            ax, run = axes[row][col], scenario["runs"][label][0]
            t = [s[0] for s in run.util]
            ax.plot(
                t, [s[1] for s in run.util], label="CPU, whole machine", color="#2b6cb0", marker="."
            )
            ax.plot(
                t, [s[3] for s in run.util], label="CPU, this process", color="#c05621", marker="."
            )
            if any(s[2] is not None for s in run.util):
                ax.plot(t, [s[2] for s in run.util], label="GPU", color="#2f855a")
            ax.set_title(f"{name}: {label} ({run.total_s:.2f} s)", fontsize=9)
            ax.set_ylim(0, 105)
            ax.set_xlim(0, max([run.total_s, *t]) * 1.02)
            ax.set_xlabel("seconds into the stream")
            ax.legend(fontsize=7, loc="lower right")
        axes[row][0].set_ylabel("utilization %")
    return save(plt, fig, "offload-utilization.png")


def totals_chart(plt: Any, scenarios: dict[str, dict[str, Any]]) -> Path:
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.5 * len(scenarios), 4), squeeze=False)
    for ax, (name, scenario) in zip(axes[0], scenarios.items(), strict=True):
        results = scenario["policies"]
        labels = list(results)
        colors = [
            "#c05621" if k == "oracle" else "#2b6cb0" if k.startswith("learned") else "#a0aec0"
            for k in labels
        ]
        totals = [results[k]["total_s"] for k in labels]
        ax.barh(labels, totals, color=colors)
        oracle = results["oracle"]["total_s"]
        for y, total in enumerate(totals):
            ax.text(total, y, f" {total:.2f} s ({total / oracle:.2f}x)", va="center", fontsize=8)
        ax.margins(x=0.3)
        ax.axvline(oracle, color="#c05621", linestyle="--", linewidth=1)
        ax.invert_yaxis()
        ax.set_title(f"{name}: total time of the stream", fontsize=10)
        ax.set_xlabel("seconds (median of the rounds)")
        ax.tick_params(axis="y", labelsize=8)
    return save(plt, fig, "offload-totals.png")


def sizes_chart(plt: Any, idle: dict[str, Any]) -> Path:
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    cells: dict[Call, Cell] = idle["cells"]
    picks = majority_picks(idle["runs"]["learned"], cells)
    for ax, kind in zip(axes.flat, TASKS, strict=True):
        mine = sorted((c for c in cells.values() if c.kind == kind), key=lambda c: c.size)
        sizes = [c.size for c in mine]
        for label in sorted(mine[0].times):
            ax.plot(
                [c.size for c in mine],
                [c.median[label] * 1000 for c in mine],
                marker=".",
                label=label,
            )
        ax.scatter(
            [c.size for c in mine],
            [c.median[picks[c.kind, c.size]] * 1000 for c in mine],
            s=110,
            facecolors="none",
            edgecolors="black",
            label="learned's pick (most calls)",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(sizes, [str(n) for n in sizes], minor=False)
        ax.set_xticks([], minor=True)
        ax.set_title(f"{kind} (idle)", fontsize=10)
        ax.set_xlabel(CALIBRATION[kind].unit)
        ax.set_ylabel("median ms")
        ax.legend(fontsize=7)
    return save(plt, fig, "offload-sizes.png")


def save(plt: Any, fig: Any, name: str) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(OUT_DIR / name, dpi=110)
    plt.close(fig)
    return OUT_DIR / name


# ------------------------------------------------------------------------ JSON
def scenario_json(s: dict[str, Any]) -> dict[str, Any]:
    cells: dict[Call, Cell] = s["cells"]
    to_size = {(c.kind, c.work): c for c in cells.values()}
    records = []
    for label, runs in s["runs"].items():
        for run in runs:
            for i, r in enumerate(run.records):
                cell = to_size[r.kind, r.work]
                records.append(
                    {
                        "policy": label,
                        "round": run.round,
                        "seq": i,
                        "size": cell.size,
                        "oracle_pick": cell.best,
                        **asdict(r),
                    }
                )
    return {
        "oracle_table": [
            {
                "kind": c.kind,
                "size": c.size,
                "work": c.work,
                "times_s": c.times,
                "median_s": c.median,
                "oracle_pick": c.best,
                "model_pick": s["picks"][k],
            }
            for k, c in sorted(cells.items())
        ],
        "stream_calls": s["stream_calls"],
        "policies": s["policies"],
        "oracle_check": s["oracle_check"],
        "decisions": s["decisions"],
        "decisions_cold": s["decisions_cold"],
        "utilization": {label: [run.util for run in runs] for label, runs in s["runs"].items()},
        "records": records,
    }
