"""The offload runtime: decide, move, run, measure, learn.

One call: describe it (work, dtype, where its data lives), read the latest system state,
list the options (each variant on each device that can take it, with the device's
backlog and contention), let the chooser pick, run there (moving the data in and the
result back, each timed), and feed the measured times to the learned model, the
baselines' histories and the persisted file. ``decide`` is what must be cheap; it never
does I/O (the state comes from a sampler thread).
"""

from __future__ import annotations

import atexit
import os
import random
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from gpugate.offload import threads
from gpugate.offload.costmodel import ModelBook, cpu_contention, gpu_contention
from gpugate.offload.devices import CpuDevice, Device, find_cuda_devices
from gpugate.offload.explain import Explanation, OptionView
from gpugate.offload.policy import (
    Chooser,
    FixedChooser,
    HistoryChooser,
    LearnedChooser,
    Measurement,
    Option,
    ThresholdChooser,
    compute_key,
    estimate,
    memory_of,
    transfer_key,
)
from gpugate.offload.queues import DeviceQueue
from gpugate.offload.state import FixedState, StateSampler, StateView, SystemState, find_gpu_source
from gpugate.offload.store import ModelStore, default_model_path, machine_description
from gpugate.offload.task import CallFeatures, OffloadTask
from gpugate.units import format_bytes

POLICIES = ("learned", "always-cpu", "always-gpu", "threshold", "history")
POLICY_ENV = "GPUGATE_OFFLOAD_POLICY"
HISTORY_MAX = 20_000  # measurements kept (and saved) for the baselines
SAVE_EVERY_S = 30.0
QUEUE_DEPTH = 4


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
    decide_ns: deque[int] = field(default_factory=lambda: deque(maxlen=100_000))
    by_variant: dict[str, int] = field(default_factory=dict)


class Runtime:
    """Chooses and runs offload tasks. ``policy`` is a chooser or the name of one
    (``POLICIES``, or a variant name to always use); ``store=None`` learns in memory
    only; ``state`` defaults to a sampler of this machine (daemon, monitors, /proc)."""

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
        self.queues = {d.name: DeviceQueue(d, queue_depth) for d in (self.cpu, *gpus)}
        self.store = self._open_store(store)
        self.book, history = self.store.load() if self.store else (ModelBook(), [])
        self.history: deque[Measurement] = deque(history, maxlen=HISTORY_MAX)
        self.state = self._open_state(state)
        self.explore = explore
        self.rng = random.Random(seed)
        self.chooser = self.make_chooser(policy)
        self.stats = RuntimeStats()
        self.trace: list[RunRecord] | None = None  # set to [] to record every run
        self._warm: set[tuple[str, ...]] = set()
        self._learning = threading.RLock()
        self._last_save = time.monotonic()

    def _open_store(self, store: ModelStore | bool | None) -> ModelStore | None:
        if store is True:
            return ModelStore(
                default_model_path(self.cpu.label), machine_description(self.cpu.label)
            )
        return store or None

    def _open_state(self, state: StateView | SystemState | None) -> StateView:
        if isinstance(state, SystemState):
            return FixedState(state)
        if state is not None:
            return state
        uuids = frozenset(g.uuid for g in self._gpu_list if g.uuid)
        source, note = find_gpu_source(uuids)
        return StateSampler(source, own_busy_pct=self._own_busy_pct, note=note)

    def _own_busy_pct(self, index: int) -> float:
        for g in self._gpu_list:
            if g.index == index:
                return self.queues[g.name].busy_pct()
        return 0.0

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
        if policy.startswith(("cpu", "gpu")):
            return FixedChooser(policy, [policy])
        raise ValueError(f"unknown offload policy {policy!r} (one of {', '.join(POLICIES)})")

    # ------------------------------------------------------------------------- decide
    def decide(self, task: OffloadTask, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Decision:
        start = time.perf_counter_ns()
        call = task.describe(args, kwargs, self._gpu_list)
        options = self.options(task, call, self.state.current)
        index = self.chooser.choose(call, options)
        took = time.perf_counter_ns() - start
        self.stats.decisions += 1
        self.stats.decide_ns.append(took)
        return Decision(call, options, index, took)

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

    def _gpu_option(
        self, variant: Any, gpu: Device, call: CallFeatures, state: SystemState, now: float
    ) -> Option:
        seen = state.gpu(gpu.uuid, gpu.index)
        util = seen.util_others_pct if seen is not None else None
        backlog = self.queues[gpu.name].backlog_s(now)
        option = Option(variant, gpu, backlog, gpu_contention(util or 0.0))
        free = seen.mem_free_bytes if seen is not None else None
        need = call.device_mem_bytes - call.resident.get(gpu.name, 0)
        if free is not None and need > free:
            why = f"needs {format_bytes(need)} of GPU memory, {format_bytes(free)} free"
            return Option(variant, gpu, backlog, option.contention, False, why)
        return option

    # ---------------------------------------------------------------------------- run
    def run(self, task: OffloadTask, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Decide, then run on the calling thread (or wait in the device's queue)."""
        return self._dispatch(task, self.decide(task, args, kwargs), args, kwargs).result()

    def submit(
        self, task: OffloadTask, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> Future[Any]:
        """Decide, then queue on the chosen device; a Future of the result."""
        return self._dispatch(task, self.decide(task, args, kwargs), args, kwargs, wait=False)

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
        from unless ``learn`` is False (a warm-up)."""
        wanted = task.variant(variant)
        call = task.describe(args, kwargs, self._gpu_list)
        options = self.options(task, call, self.state.current)
        for index, option in enumerate(options):
            if option.variant is wanted and (device is None or option.device.name == device):
                decision = Decision(call, options, index, 0)
                return self._dispatch(task, decision, args, kwargs, learn=learn).result()
        raise LookupError(f"variant {variant!r} of {task.kind!r} has no device here")

    def _dispatch(
        self,
        task: OffloadTask,
        decision: Decision,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        wait: bool = True,
        learn: bool = True,
    ) -> Future[Any]:
        queued_at = time.perf_counter()
        predicted = estimate(self.book, decision.call, decision.chosen, self.gpus).run_s
        queue = self.queues[decision.chosen.device.name]

        def work() -> Any:
            return self._execute(decision, args, kwargs, predicted, queued_at, learn)

        if wait:
            return _done(queue.run(work, predicted))
        return queue.submit(work, predicted)

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
        moves: list[tuple[Device, str, int, float]] = []
        args = [self._bring(a, device, moves) for a in args]
        kwargs = {k: self._bring(v, device, moves) for k, v in kwargs.items()}
        start = time.perf_counter()
        with device.active():
            result = option.variant.func(*args, **kwargs)
            device.synchronize()
        compute_s = time.perf_counter() - start
        result = self._send_home(result, device, call.home, moves)
        learned = learn and self._learn(call, option, compute_s, moves)
        if self.trace is not None:
            self.trace.append(
                RunRecord(
                    call.kind,
                    call.work,
                    option.variant.name,
                    device.name,
                    decision.decide_ns,
                    predicted_s,
                    compute_s,
                    sum(m[3] for m in moves),
                    time.perf_counter() - queued_at,
                    learned,
                )
            )
        return result

    # ------------------------------------------------------------------------- moving
    def _bring(
        self, value: Any, device: Device, moves: list[tuple[Device, str, int, float]]
    ) -> Any:
        """``value`` in ``device``'s memory, if it is an array living elsewhere."""
        if not hasattr(value, "nbytes") or device.holds(value):
            return value
        for gpu in self._gpu_list:
            if gpu.holds(value):
                value = _timed_move(gpu, "d2h", value, moves)
                break
        if device.is_gpu and self.cpu.holds(value):
            value = _timed_move(device, "h2d", value, moves)
        return value

    def _send_home(
        self, result: Any, device: Device, home: str, moves: list[tuple[Device, str, int, float]]
    ) -> Any:
        if home == memory_of(device):
            return result
        if isinstance(result, tuple | list):
            return type(result)(self._send_home(r, device, home, moves) for r in result)
        if device.is_gpu and device.holds(result):
            result = _timed_move(device, "d2h", result, moves)
        target = self.gpus.get(home)
        if target is not None and self.cpu.holds(result):
            result = _timed_move(target, "h2d", result, moves)
        return result

    # ------------------------------------------------------------------------ learning
    def _learn(
        self,
        call: CallFeatures,
        option: Option,
        compute_s: float,
        moves: Sequence[tuple[Device, str, int, float]],
    ) -> bool:
        """Record one run. The first run of a variant (per dtype and device) in this
        process is not learned from: it pays JIT compilation and CUDA initialization."""
        device = option.device
        label = device.label if device.is_gpu else ""
        first = (call.kind, option.variant.name, call.dtype, device.name)
        m = Measurement(
            call.kind,
            option.variant.name,
            label,
            call.dtype,
            call.work,
            option.contention,
            compute_s,
            sum(move[3] for move in moves),
        )
        with self._learning:
            cold = first not in self._warm
            self._warm.add(first)
            self.stats.by_variant[option.variant.name] = (
                self.stats.by_variant.get(option.variant.name, 0) + 1
            )
            for gpu, direction, nbytes, seconds in moves:
                if ("transfer", gpu.name, direction) in self._warm:
                    self.book.observe(transfer_key(direction, gpu.label), nbytes, 0.0, seconds)
                self._warm.add(("transfer", gpu.name, direction))
            if cold:
                return False
            key = compute_key(call.kind, option.variant.name, call.dtype, label)
            self.book.observe(key, call.work, option.contention, compute_s)
            self.history.append(m)
            self.chooser.observe(m)
            self._maybe_save()
        return True

    def _maybe_save(self) -> None:
        if self.store and time.monotonic() - self._last_save > SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        """Write what was learned to the model file (if this runtime has one)."""
        if self.store is None:
            return
        with self._learning:
            self.store.save(self.book, list(self.history))
        self._last_save = time.monotonic()

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
        views = []
        for i, option in enumerate(options):
            est = estimate(self.book, call, option, self.gpus)
            views.append(OptionView.of(option, est, chosen=i == index))
        unavailable = []
        if any(v.on_gpu for v in task.variants) and not self._gpu_list:
            unavailable.append(f"GPU variants: {self.no_gpu_reason}")

        return Explanation(
            kind=task.kind,
            call=call,
            state=state,
            options=tuple(views),
            policy=chooser.name,
            unavailable=tuple(unavailable),
            advice=(threads.NOTE,) if threads.NOTE else (),
        )

    def close(self) -> None:
        for q in self.queues.values():
            q.close()
        self.save()
        self.state.close()


def _done(result: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(result)
    return future


def _timed_move(
    device: Device, direction: str, value: Any, moves: list[tuple[Device, str, int, float]]
) -> Any:
    start = time.perf_counter()
    moved = device.to_device(value) if direction == "h2d" else device.to_host(value)
    device.synchronize()
    moves.append((device, direction, int(value.nbytes), time.perf_counter() - start))
    return moved


# ------------------------------------------------------------------- the default runtime
_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process's runtime, made on first use (``$GPUGATE_OFFLOAD_POLICY`` picks the
    policy); what it learned is saved when the interpreter exits."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Runtime(policy=os.environ.get(POLICY_ENV, "learned"))
                atexit.register(_default.close)
    return _default


def configure(**options: Any) -> Runtime:
    """Replace the default runtime (``Runtime``'s keyword arguments)."""
    global _default
    with _default_lock:
        old, _default = _default, Runtime(**options)
    if old is not None:
        old.close()
    return _default
