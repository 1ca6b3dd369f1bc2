"""The offload runtime: decide, move, run, measure, learn.

One call: describe it (work, dtype, where its data lives), read the latest system state,
list the options (each variant on each device that can take it, with the device's
backlog and contention), let the chooser pick, run there (moving the data in and the
result back, each timed), and feed the measured times to the learned model, the
baselines' histories and the model file. ``decide`` is what must be cheap; it never does
I/O (the state comes from a sampler thread).

A GPU variant that fails (a CUDA out-of-memory error, say) is retried once on the CPU,
and the failed option is left out of decisions for ``FAILED_COOLDOWN_S``; ``explain``
says why. An error of a CPU variant is the caller's.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from gpugate.offload import threads
from gpugate.offload.costmodel import cpu_contention, gpu_contention
from gpugate.offload.devices import CpuDevice, Device, find_cuda_devices
from gpugate.offload.explain import Explanation, OptionView
from gpugate.offload.learning import Learner
from gpugate.offload.moving import Move, Mover
from gpugate.offload.policy import (
    Chooser,
    FixedChooser,
    HistoryChooser,
    LearnedChooser,
    Option,
    ThresholdChooser,
    estimate,
    first_feasible,
)
from gpugate.offload.queues import DeviceQueue
from gpugate.offload.state import FixedState, StateSampler, StateView, SystemState, find_gpu_source
from gpugate.offload.store import ModelStore
from gpugate.offload.task import CallFeatures, OffloadTask, Variant
from gpugate.units import format_bytes

POLICIES = ("learned", "always-cpu", "always-gpu", "threshold", "history")
QUEUE_DEPTH = 4
FAILED_COOLDOWN_S = 60.0
log = logging.getLogger("gpugate.offload")


@dataclass(frozen=True, slots=True)
class Decision:
    call: CallFeatures
    options: tuple[Option, ...]
    index: int
    decide_ns: int  # features + state + options + choice

    @property
    def chosen(self) -> Option:
        return self.options[self.index]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One executed call, for benchmarks (``Runtime.trace``)."""

    kind: str
    work: float
    variant: str
    device: str
    decide_ns: int
    predicted_s: float
    compute_s: float
    transfer_s: float
    wall_s: float  # from the call to its result, queueing included
    learned: bool  # False for a first (warm-up, JIT) run


@dataclass
class RuntimeStats:
    decisions: int = 0
    decide_ns: list[int] = field(default_factory=list)  # the last MAX_KEPT
    by_variant: dict[str, int] = field(default_factory=dict)
    gpu_failures: int = 0
    MAX_KEPT = 100_000


class Runtime:
    """Chooses and runs offload tasks. ``policy`` is a chooser or the name of one
    (``POLICIES``, or ``cpu``/``gpu``/``cpu:<label>``/``gpu:<label>`` for one variant);
    ``store``: True for this machine's model file, None or False to learn in memory
    only, or a ``ModelStore``; ``state`` defaults to a sampler of this machine (daemon,
    monitors, /proc)."""

    def __init__(
        self,
        *,
        gpus: Sequence[Device] | None = None,
        state: StateView | SystemState | None = None,
        policy: str | Chooser = "learned",
        store: ModelStore | bool | None = True,
        explore: bool = True,
        seed: int = 0,
        queue_depth: int = QUEUE_DEPTH,
    ) -> None:
        self.cpu = CpuDevice()
        self.no_gpu_reason = ""
        if gpus is None:
            gpus, self.no_gpu_reason = find_cuda_devices()
        elif not gpus:
            self.no_gpu_reason = "this runtime was given no GPU"
        self.gpus: dict[str, Device] = {g.name: g for g in gpus}
        self._gpu_list = tuple(gpus)
        self.mover = Mover(self.cpu, gpus)
        self.queues = {d.name: DeviceQueue(d, queue_depth) for d in (self.cpu, *gpus)}
        self.learner = Learner(self._open_store(store), lambda m: self.chooser.observe(m))
        self.book = self.learner.book
        self.explore = explore
        self.rng = random.Random(seed)
        self.chooser = self.make_chooser(policy)
        self.state = self._open_state(state)
        self.stats = RuntimeStats()
        self.trace: list[RunRecord] | None = None  # set to [] to record every run
        self._failed: dict[tuple[str, str], tuple[float, str]] = {}  # until, why

    @property
    def store(self) -> ModelStore | None:
        return self.learner.store

    @property
    def history(self) -> Sequence[Any]:
        return self.learner.history

    def _open_store(self, store: ModelStore | bool | None) -> ModelStore | None:
        if store is True:
            return ModelStore.of_machine(self.cpu.label)
        return store or None

    def _open_state(self, state: StateView | SystemState | None) -> StateView:
        if isinstance(state, SystemState):
            return FixedState(state)
        if state is not None:
            return state
        source, note = find_gpu_source(self._gpu_list)
        return StateSampler(source, own=self, note=note)

    # what this process does on a GPU itself (state.Own), for the sampler
    def busy_pct(self, uuid: str, index: int) -> float:
        gpu = self._gpu_named(uuid, index)
        return self.queues[gpu.name].busy_pct() if gpu else 0.0

    def pooled_free_bytes(self, uuid: str, index: int) -> int:
        gpu = self._gpu_named(uuid, index)
        return gpu.pooled_free_bytes() if gpu else 0

    def _gpu_named(self, uuid: str, index: int) -> Device | None:
        """Our device that a monitor calls ``uuid`` (``index`` if UUIDs are unknown)."""
        for g in self._gpu_list:
            if (g.uuid == uuid) if (g.uuid and uuid) else (g.index == index):
                return g
        return None

    def make_chooser(self, policy: str | Chooser) -> Chooser:
        if not isinstance(policy, str):
            return policy
        if policy == "learned":
            return LearnedChooser(self.book, self.gpus, self.explore, self.rng)
        if policy == "always-cpu":
            return FixedChooser(policy, ["cpu"])
        if policy == "always-gpu":
            return FixedChooser(policy, ["gpu", "cpu"])
        if policy == "threshold":
            return ThresholdChooser.fit(self.history)
        if policy == "history":
            return HistoryChooser(self.history)
        if policy in ("cpu", "gpu") or policy.startswith(("cpu:", "gpu:")):
            return FixedChooser(policy, [policy])
        raise ValueError(
            f"unknown offload policy {policy!r} (one of {', '.join(POLICIES)},"
            " or a variant: cpu, gpu, cpu:<label>, gpu:<label>)"
        )

    # ------------------------------------------------------------------------- decide
    def decide(self, task: OffloadTask, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Decision:
        start = time.perf_counter_ns()
        call = task.describe(args, kwargs, self._gpu_list)
        options = self.options(task, call, self.state.current)
        index = self.chooser.choose(call, options)
        if index < 0:  # nothing comparable (a NaN work, say): the first that can run
            index = first_feasible(options)
        took = time.perf_counter_ns() - start
        self._count(took)
        return Decision(call, options, index, took)

    def _count(self, decide_ns: int) -> None:
        stats = self.stats
        stats.decisions += 1
        stats.decide_ns.append(decide_ns)
        if len(stats.decide_ns) > 2 * stats.MAX_KEPT:
            del stats.decide_ns[: stats.MAX_KEPT]

    def options(
        self, task: OffloadTask, call: CallFeatures, state: SystemState
    ) -> tuple[Option, ...]:
        now = time.monotonic()
        cpu_z = cpu_contention(state.cpu_runnable_others, state.cpu_count)
        options = []
        for variant in task.variants:
            if not variant.on_gpu:
                backlog = self.queues["cpu"].backlog_s(now)
                options.append(Option(variant, self.cpu, backlog, cpu_z))
                continue
            for gpu in self._gpu_list:
                options.append(self._gpu_option(variant, gpu, call, state, now))
        return tuple(options)

    def placements(self, task: OffloadTask) -> list[tuple[str, str]]:
        """Every (variant, device name) a call of ``task`` can run as here."""
        return [
            (v.name, d.name)
            for v in task.variants
            for d in (self._gpu_list if v.on_gpu else [self.cpu])
        ]

    def _gpu_option(
        self, variant: Variant, gpu: Device, call: CallFeatures, state: SystemState, now: float
    ) -> Option:
        seen = state.gpu(gpu.uuid, gpu.index)
        util = seen.util_others_pct if seen is not None else None
        backlog = self.queues[gpu.name].backlog_s(now)
        z = gpu_contention(util or 0.0)
        if self._failed:
            failed = self._failed.get((variant.name, gpu.name))
            if failed is not None and failed[0] > now:
                return Option(variant, gpu, backlog, z, False, failed[1])
        free = seen.mem_free_bytes if seen is not None else None
        need = call.device_mem_bytes - call.resident.get(gpu.name, 0)
        if free is not None and need > free:
            why = f"needs {format_bytes(need)} of GPU memory, {format_bytes(free)} free"
            return Option(variant, gpu, backlog, z, False, why)
        return Option(variant, gpu, backlog, z)

    # ---------------------------------------------------------------------------- run
    def run(self, task: OffloadTask, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Decide, then run on the calling thread (or wait in the device's queue)."""
        decision = self.decide(task, args, kwargs)
        work, predicted = self._work(decision, args, kwargs, learn=True)
        return self.queues[decision.chosen.device.name].run(work, predicted)

    def submit(
        self, task: OffloadTask, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Future[Any]:
        """Decide, then queue on the chosen device; a Future of the result."""
        decision = self.decide(task, args, kwargs)
        work, predicted = self._work(decision, args, kwargs, learn=True)
        return self.queues[decision.chosen.device.name].submit(work, predicted)

    def run_variant(
        self,
        task: OffloadTask,
        variant: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        device: str | None = None,
        learn: bool = True,
    ) -> Any:
        """Run one named variant, measured (calibration, the benchmark's oracle); learned
        from unless ``learn`` is False (a warm-up). Its failure is the caller's."""
        wanted = task.variant(variant)
        call = task.describe(args, kwargs, self._gpu_list)
        options = self.options(task, call, self.state.current)
        for index, option in enumerate(options):
            if option.variant is wanted and (device is None or option.device.name == device):
                decision = Decision(call, options, index, 0)
                work, predicted = self._work(decision, args, kwargs, learn, fallback=False)
                return self.queues[option.device.name].run(work, predicted)
        raise LookupError(f"variant {variant!r} of {task.kind!r} has no device here")

    def _work(
        self,
        decision: Decision,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        learn: bool,
        fallback: bool = True,
    ) -> tuple[Any, float]:
        """The closure a device queue runs for this decision, and its predicted time."""
        queued_at = time.perf_counter()
        predicted = estimate(self.book, decision.call, decision.chosen, self.gpus).run_s

        def work() -> Any:
            try:
                return self._execute(decision, args, kwargs, predicted, queued_at, learn)
            except Exception as exc:
                if not (fallback and decision.chosen.device.is_gpu):
                    raise
                return self._after_gpu_failure(decision, args, kwargs, exc)

        return work, predicted

    def _after_gpu_failure(
        self, decision: Decision, args: Sequence[Any], kwargs: Mapping[str, Any], exc: Exception
    ) -> Any:
        """Leave the failed option out for a while and run the call on the CPU instead."""
        option = decision.chosen
        why = f"failed {time.strftime('%H:%M:%S')}: {type(exc).__name__}: {exc}"[:200]
        until = time.monotonic() + FAILED_COOLDOWN_S
        self._failed[option.variant.name, option.device.name] = (until, why)
        self.stats.gpu_failures += 1
        log.warning(
            "offload %s on %s %s; running it on the CPU",
            decision.call.kind,
            option.device.name,
            why,
        )
        cpu = [i for i, o in enumerate(decision.options) if not o.device.is_gpu and o.feasible]
        index = self.chooser.choose(decision.call, [decision.options[i] for i in cpu])
        retry = Decision(decision.call, decision.options, cpu[max(index, 0)], 0)
        work, predicted = self._work(retry, args, kwargs, learn=True, fallback=False)
        return self.queues["cpu"].run(work, predicted)

    def _execute(
        self,
        decision: Decision,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        predicted_s: float,
        queued_at: float,
        learn: bool,
    ) -> Any:
        option, call = decision.chosen, decision.call
        device = option.device
        moves: list[Move] = []
        args = [self.mover.bring(a, device, moves) for a in args]
        kwargs = {k: self.mover.bring(v, device, moves) for k, v in kwargs.items()}
        start = time.perf_counter()
        with device.active():
            result = option.variant.func(*args, **kwargs)
            device.synchronize()
        compute_s = time.perf_counter() - start
        result = self.mover.send_home(result, device, call.home, moves)
        learned = learn and self.learner.record(call, option, compute_s, moves)
        name = option.variant.name
        self.stats.by_variant[name] = self.stats.by_variant.get(name, 0) + 1
        if self.trace is not None:
            transfer = sum(m.seconds for m in moves)
            wall = time.perf_counter() - queued_at
            self.trace.append(
                RunRecord(
                    call.kind,
                    call.work,
                    name,
                    device.name,
                    decision.decide_ns,
                    predicted_s,
                    compute_s,
                    transfer,
                    wall,
                    learned,
                )
            )
        return result

    def save(self) -> None:
        """Write what was learned to the model file now (if this runtime has one)."""
        self.learner.save()

    # ------------------------------------------------------------------------- explain
    def explain(
        self, task: OffloadTask, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Explanation:
        """What each option is predicted to cost now, and what would be chosen (without
        the exploration draw). Runs nothing."""
        return self.explain_in(task, args, kwargs, self.state.current)

    def explain_in(
        self, task: OffloadTask, args: Sequence[Any], kwargs: Mapping[str, Any], state: SystemState
    ) -> Explanation:
        """``explain`` as if the machine were in ``state``."""
        call = task.describe(args, kwargs, self._gpu_list)
        options = self.options(task, call, state)
        chooser = self.chooser
        if isinstance(chooser, LearnedChooser):
            chooser = LearnedChooser(self.book, self.gpus, explore=False)
        index = chooser.choose(call, options)
        index = index if index >= 0 else first_feasible(options)
        views = tuple(
            OptionView.of(o, estimate(self.book, call, o, self.gpus), chosen=i == index)
            for i, o in enumerate(options)
        )
        unavailable = []
        if any(v.on_gpu for v in task.variants) and not self._gpu_list:
            unavailable.append(f"GPU variants: {self.no_gpu_reason}")
        return Explanation(
            kind=task.kind,
            call=call,
            state=state,
            options=views,
            policy=chooser.name,
            unavailable=tuple(unavailable),
            advice=(threads.NOTE,) if threads.NOTE else (),
        )

    def close(self) -> None:
        """Finish what is queued, save what was learned, stop the sampler."""
        for q in self.queues.values():
            q.close()
        self.learner.close()
        self.state.close()
