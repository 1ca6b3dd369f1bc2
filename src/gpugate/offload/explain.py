"""``offload.explain(task, *args)``: why a call would run where it would, in numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpugate.units import format_bytes

if TYPE_CHECKING:
    from gpugate.offload.policy import Estimate, Option
    from gpugate.offload.state import SystemState
    from gpugate.offload.task import CallFeatures


@dataclass(frozen=True, slots=True)
class OptionView:
    variant: str
    device: str
    feasible: bool
    why_not: str
    compute_s: float  # predicted, median
    uncertainty: float  # relative sd of the compute prediction (0.1: +-10%)
    observations: int  # measurements the compute model has learned from
    transfer_s: float
    backlog_s: float
    contention: float
    chosen: bool

    @property
    def finish_s(self) -> float:
        return self.backlog_s + self.compute_s + self.transfer_s

    @classmethod
    def of(cls, option: Option, est: Estimate, chosen: bool) -> OptionView:
        return cls(
            variant=option.variant.name,
            device=option.device.name,
            feasible=option.feasible,
            why_not=option.why_not,
            compute_s=est.compute.seconds,
            uncertainty=est.compute.relative_sd,
            observations=est.compute.observations,
            transfer_s=est.transfer_s,
            backlog_s=option.backlog_s,
            contention=option.contention,
            chosen=chosen,
        )


@dataclass(frozen=True, slots=True)
class Explanation:
    kind: str
    call: CallFeatures
    state: SystemState
    options: tuple[OptionView, ...]
    policy: str
    unavailable: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()

    @property
    def choice(self) -> OptionView:
        return next(o for o in self.options if o.chosen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "policy": self.policy,
            "call": {
                "work": self.call.work,
                "dtype": self.call.dtype,
                "in_bytes": self.call.in_bytes,
                "out_bytes": self.call.out_bytes,
                "resident": dict(self.call.resident),
            },
            "state": {
                "cpu_count": self.state.cpu_count,
                "cpu_runnable_others": self.state.cpu_runnable_others,
                "gpu_source": self.state.gpu_source,
                "gpus": [
                    {
                        "index": g.index,
                        "uuid": g.uuid,
                        "util_others_pct": g.util_others_pct,
                        "mem_free_bytes": g.mem_free_bytes,
                    }
                    for g in self.state.gpus
                ],
                "note": self.state.note,
            },
            "options": [
                {
                    "variant": o.variant,
                    "device": o.device,
                    "feasible": o.feasible,
                    "why_not": o.why_not,
                    "compute_s": o.compute_s,
                    "uncertainty": o.uncertainty,
                    "observations": o.observations,
                    "transfer_s": o.transfer_s,
                    "backlog_s": o.backlog_s,
                    "finish_s": o.finish_s,
                    "chosen": o.chosen,
                }
                for o in self.options
            ],
            "choice": {"variant": self.choice.variant, "device": self.choice.device},
            "unavailable": list(self.unavailable),
            "advice": list(self.advice),
        }

    def __str__(self) -> str:
        return "\n".join(self._lines())

    def _lines(self) -> list[str]:
        c, s = self.call, self.state
        moved = ", ".join(f"{format_bytes(n)} on {w}" for w, n in c.resident.items()) or "none"
        lines = [
            f"task {self.kind}: work {c.work:.3g}, dtype {c.dtype}, inputs {moved},"
            f" result {format_bytes(c.out_bytes)} back to {c.home}",
            f"CPU: {s.cpu_count} cores, {s.cpu_runnable_others:.1f} runnable threads of"
            " other processes",
        ]
        for g in s.gpus:
            util = "?" if g.util_others_pct is None else f"{g.util_others_pct:.0f}%"
            free = "?" if g.mem_free_bytes is None else format_bytes(g.mem_free_bytes)
            lines.append(f"GPU{g.index}: others use {util}, {free} free ({s.gpu_source})")
        if s.note:
            lines.append(f"note: {s.note}")
        lines.append(
            f"  {'variant':<14}{'device':<10}{'compute':>11}{'+-':>6}{'seen':>6}"
            f"{'moves':>11}{'queued':>11}{'finish':>11}"
        )
        for o in self.options:
            mark = "->" if o.chosen else "  "
            lines.append(
                f"{mark}{o.variant:<14}{o.device:<10}{format_seconds(o.compute_s):>11}"
                f"{_pct(o.uncertainty):>6}{o.observations:>6}{format_seconds(o.transfer_s):>11}"
                f"{format_seconds(o.backlog_s):>11}{format_seconds(o.finish_s):>11}"
                + ("" if o.feasible else f"  cannot run: {o.why_not}")
            )
        lines.extend(f"unavailable: {u}" for u in self.unavailable)
        lines.extend(f"advice: {a}" for a in self.advice)
        if not any(o.observations for o in self.options):
            lines.append(
                "nothing learned for this task yet: predictions are the prior's;"
                " `gpugate offload calibrate` measures the built-in tasks, and every run teaches"
            )
        lines.append(self._why())
        return lines

    def _why(self) -> str:
        chosen = self.choice
        others = [o for o in self.options if o.feasible and not o.chosen]
        if self.policy != "learned":
            return f"choice: {chosen.variant} on {chosen.device} (policy {self.policy})"
        if not others:
            return f"choice: {chosen.variant} on {chosen.device}, the only option that can run"
        runner_up = min(others, key=lambda o: o.finish_s)
        ratio = runner_up.finish_s / chosen.finish_s if chosen.finish_s > 0 else math.inf
        return (
            f"choice: {chosen.variant} on {chosen.device}, expected to finish first:"
            f" {format_seconds(chosen.finish_s)} against {format_seconds(runner_up.finish_s)} for"
            f" {runner_up.variant} on {runner_up.device} ({ratio:.2f}x)"
        )


def format_seconds(seconds: float) -> str:
    if seconds == 0:
        return "0"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.0f}%" if fraction < 10 else ">999%"
