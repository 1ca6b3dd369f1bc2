"""A PyTorch training loop that yields its GPU slot when gpugate asks, then resumes.

A small MLP learns y = sin(3x) + x/2 with SGD and momentum. The protocol is the one of
``preemptible_train.py`` (the dependency-free version), in a real framework:

1. ``gpugate.preemptible()`` first, so the daemon's SIGUSR1 reaches the loop;
2. when relaunched after yielding (``gpugate.resuming()``), load model, optimizer and step
   from the checkpoint and continue;
3. poll ``gpugate.preempt_requested()`` once per step; when True, save and call
   ``gpugate.exit_for_requeue()`` (exit 75): gpugate requeues the job in its place.

Run it under gpugate (``pip install torch==2.13.0``: the CPU build is enough)::

    gpugate submit --preempt checkpoint --checkpoint ckpt.pt -- \\
        python examples/preemptible_torch.py

Deterministic: one thread, deterministic algorithms, and each step's minibatch drawn from a
generator seeded with the step index alone; the checkpoint holds the model's and the
optimizer's state exactly. So a run interrupted and resumed any number of times ends with
bit-identical weights to an uninterrupted one (``result.json`` next to the checkpoint).
It runs on a GPU when the job was given one (``CUDA_VISIBLE_DEVICES``), else on the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

import gpugate

BATCH = 64


def model_and_optimizer() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def batch(step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The minibatch of ``step``: a function of the step alone, so resuming repeats it."""
    generator = torch.Generator().manual_seed(step)
    x = torch.rand(BATCH, 1, generator=generator) * 4 - 2
    return x.to(device), (torch.sin(3 * x) + x / 2).to(device)


def save(path: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Atomically: a job killed while saving leaves the previous checkpoint intact."""
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    gpugate.preemptible()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--step-sleep", type=float, default=0.0, help="seconds per step")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    checkpoint = Path(gpugate.checkpoint_path(default="checkpoint.pt") or "checkpoint.pt")
    model, optimizer = model_and_optimizer()
    model.to(device)
    start = 0
    if gpugate.resuming() and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        print(f"resumed at step {start}", flush=True)

    loss_fn = nn.MSELoss()
    for step in range(start, args.steps):
        if gpugate.preempt_requested():
            save(checkpoint, step, model, optimizer)
            print(f"checkpointed at step {step}", flush=True)
            gpugate.exit_for_requeue()
        x, y = batch(step, device)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        if step % 100 == 0:
            print(f"step {step} loss {loss.item():.5f}", flush=True)
        time.sleep(args.step_sleep)

    weights = [repr(v) for p in model.parameters() for v in p.detach().cpu().flatten().tolist()]
    result = checkpoint.with_name("result.json")
    result.write_text(json.dumps({"weights": weights}))
    print(f"result loss {loss.item()!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
