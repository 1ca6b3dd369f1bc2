"""A dependency-free "training" job that yields its GPU slot when gpugate asks, then resumes.

It fits y = 3x + 2 with plain minibatch SGD on a fixed pseudo-random dataset. Nothing here
needs a GPU; the point is the protocol a real training loop follows:

1. call ``gpugate.preemptible()`` first, so that the daemon's SIGUSR1 reaches the loop (under
   gpugate it is ignored until a handler is in place; elsewhere it would kill the
   process outright);
2. when relaunched after yielding (``gpugate.resuming()``), load the checkpoint and continue;
3. poll ``gpugate.preempt_requested()`` once per step; when it is True, save a checkpoint and
   call ``gpugate.exit_for_requeue()`` (exit status 75), and gpugate requeues the job in place.

Run it under gpugate::

    gpugate submit --preempt checkpoint --checkpoint ckpt.json -- \\
        python examples/preemptible_train.py

or on its own (then it never gets asked to yield, and checkpoints to ./checkpoint.json)::

    python examples/preemptible_train.py --steps 2000

The run is deterministic: each step's minibatch is drawn from a generator seeded with the step
index alone, and the checkpoint stores the weights as JSON (which round-trips floats exactly),
so an interrupted-and-resumed run ends with bit-identical weights to an uninterrupted one.
The final weights are printed as ``result w=... b=...`` and written to ``result.json`` next to
the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from typing import Any

import gpugate

DATASET_SIZE = 256
BATCH_SIZE = 8
LEARNING_RATE = 0.05
PROGRESS_EVERY = 100


def make_dataset() -> list[tuple[float, float]]:
    """A fixed noisy sample of y = 3x + 2; the same on every launch (seeded with 0)."""
    rng = random.Random(0)
    data = []
    for _ in range(DATASET_SIZE):
        x = rng.uniform(-1.0, 1.0)
        data.append((x, 3.0 * x + 2.0 + rng.gauss(0.0, 0.1)))
    return data


def sgd_step(step: int, w: float, b: float, data: list[tuple[float, float]]) -> tuple[float, float]:
    """One minibatch update. The batch depends only on ``step``, so no generator state has to
    survive a restart: resuming at step K replays exactly the updates an unbroken run makes."""
    batch = random.Random(step).sample(data, BATCH_SIZE)
    grad_w = 0.0
    grad_b = 0.0
    for x, y in batch:
        err = w * x + b - y
        grad_w += 2.0 * err * x
        grad_b += 2.0 * err
    return w - LEARNING_RATE * grad_w / BATCH_SIZE, b - LEARNING_RATE * grad_b / BATCH_SIZE


def write_json_atomically(path: str, payload: dict[str, Any]) -> None:
    """Write to a temporary file and rename it over ``path``: a job killed mid-write (the daemon
    escalates if a job ignores the request too long) leaves the previous checkpoint intact."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str) -> tuple[int, float, float]:
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    return int(state["step"]), float(state["w"]), float(state["b"])


def main(argv: list[str] | None = None) -> int:
    # First, before anything slow: take SIGUSR1 as the request to yield.
    gpugate.preemptible()

    parser = argparse.ArgumentParser(description="Fit y = 3x + 2, yielding when gpugate asks.")
    parser.add_argument("--steps", type=int, default=2000, help="SGD steps in all")
    parser.add_argument(
        "--step-sleep",
        type=float,
        default=0.002,
        help="seconds to sleep per step, standing in for real work (does not change results)",
    )
    args = parser.parse_args(argv)

    ckpt = gpugate.checkpoint_path(default="checkpoint.json")
    assert ckpt is not None  # a default was given
    result_path = os.path.join(os.path.dirname(os.path.abspath(ckpt)), "result.json")
    data = make_dataset()

    step, w, b = 0, 0.0, 0.0
    if gpugate.resuming():
        if os.path.exists(ckpt):
            step, w, b = load_checkpoint(ckpt)
            print(f"resumed at step {step}", flush=True)
        else:
            print(f"asked to resume but {ckpt} does not exist; starting over", flush=True)

    while step < args.steps:
        if gpugate.preempt_requested():
            # ``step`` counts completed updates, so it is also the next one to run.
            write_json_atomically(ckpt, {"step": step, "w": w, "b": b})
            print(f"checkpointed at step {step}", flush=True)
            gpugate.exit_for_requeue()
        w, b = sgd_step(step, w, b, data)
        step += 1
        if step % PROGRESS_EVERY == 0:
            print(f"step {step}", flush=True)
        if args.step_sleep > 0:
            time.sleep(args.step_sleep)

    write_json_atomically(result_path, {"steps": step, "w": w, "b": b})
    print(f"result w={w!r} b={b!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
