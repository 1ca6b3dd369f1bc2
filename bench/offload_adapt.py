#!/usr/bin/env python3
"""How fast the learned cost model follows a lasting change, and whether bursts fool it.

A model settles on 500 runs of one variant (sizes spread over four decades, log-normal
noise), then every size becomes ``factor`` times slower (or faster). Reported: the runs
until it predicts within 20% at 1e5, 1e6 and 1e7 units of work, with the shift detector
(gpugate's) and with forgetting alone (the detector switched off), for a few factors and
noise levels; then how many shifts bursts of 5-100x slower runs trigger in 20,000 runs.
Counts of runs, seeded: no timing, so the figures are the same on any machine.

Usage: bench/offload_adapt.py
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import header, machine_info, table, write_json

from gpugate.offload import costmodel
from gpugate.offload.costmodel import ModelBook

KEY = "k/cpu/float32"
LIMIT = 5000
SHIFT_RUNS = costmodel.SHIFT_RUNS  # gpugate's; switched off for "forgetting alone"


def cost(work: float) -> float:
    return 1e-3 * work / 1e6


def runs_to_follow(factor: float, noise: float, detector: bool, seed: int = 0) -> int | None:
    costmodel.SHIFT_RUNS = SHIFT_RUNS if detector else 10**9
    rng, book = random.Random(seed), ModelBook()
    for _ in range(500):
        work = 10 ** rng.uniform(4, 8)
        book.observe(KEY, work, 0.0, cost(work) * math.exp(rng.gauss(0, noise)))
    for n in range(1, LIMIT):
        work = 10 ** rng.uniform(4, 8)
        book.observe(KEY, work, 0.0, factor * cost(work) * math.exp(rng.gauss(0, noise)))
        off = [abs(book.predict(KEY, w).seconds / (factor * cost(w)) - 1) for w in (1e5, 1e6, 1e7)]
        if max(off) < 0.2:
            return n
    return None


def shifts_in_bursts(chance: float, lengths: tuple[int, int], seed: int = 0) -> int:
    """Shifts over 20,000 runs where a burst of 5-100x slower runs starts with ``chance``."""
    costmodel.SHIFT_RUNS = SHIFT_RUNS
    rng, book, left = random.Random(seed), ModelBook(), 0
    for _ in range(20_000):
        work = 10 ** rng.uniform(4, 8)
        seconds = cost(work) * math.exp(rng.gauss(0, 0.15))
        if left == 0 and rng.random() < chance:
            left = rng.randint(*lengths)
        if left:
            seconds *= rng.uniform(5, 100)
            left -= 1
        book.observe(KEY, work, 0.0, seconds)
    return book.models[KEY].shifts


def main() -> int:
    header("offload: following a lasting change (counts of runs, seeded)", machine_info())
    rows, results = [], []
    for factor in (3.0, 1.5, 1 / 3):
        for noise in (0.05, 0.2):
            with_detector = runs_to_follow(factor, noise, detector=True)
            alone = runs_to_follow(factor, noise, detector=False)
            results.append(
                {"factor": factor, "noise_sd": noise, "runs": with_detector, "forgetting": alone}
            )
            rows.append([f"{factor:.2f}x", f"{noise}", str(with_detector), str(alone)])
    print(table(["change", "noise sd (ln)", "runs, gpugate", "runs, forgetting alone"], rows))
    bursts = [
        (0.01, (3, 12), shifts_in_bursts(0.01, (3, 12))),
        (0.03, (2, 8), shifts_in_bursts(0.03, (2, 8))),
    ]
    for chance, lengths, shifts in bursts:
        print(
            f"bursts of {lengths[0]}-{lengths[1]} runs 5-100x slower, starting with chance"
            f" {chance} a run: {shifts} shifts in 20,000 runs"
        )
    costmodel.SHIFT_RUNS = SHIFT_RUNS
    write_json(
        "offload_adapt",
        {"follow": results, "bursts": [{"chance": c, "shifts": s} for c, _, s in bursts]},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
