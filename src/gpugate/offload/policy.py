"""How a call's variant and device are chosen: the learned model, and the baselines it
is measured against (always one variant, an MKL-style size threshold, StarPU-style
history with power-law regression).

Every chooser sees the same ``Option`` list (variant x device, with what is queued on
the device and how busy it is) and learns from the same ``Measurement`` records, so the
benchmark compares choices and nothing else. Choosers are pure apart from their own
learned state and, for the learned one, a seeded random generator used to explore.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from gpugate.offload.costmodel import ModelBook, Prediction, decades
from gpugate.offload.task import HOST

if TYPE_CHECKING:
    from gpugate.offload.devices import Device
    from gpugate.offload.task import CallFeatures, Variant

EXPLORE_SD = 0.15  # explore a variant while its prediction is unsure by more than ~15%
STALENESS_RUNS = 2000.0  # runs of other options that double an unrun option's variance


class Option(NamedTuple):
    """One way to run a call: ``variant`` on ``device``. ``backlog_s`` is the predicted
    time until the device is free; ``contention`` the cost model's ``z`` for it now.
    (A NamedTuple: made several times per decision, and cheaper than a dataclass.)"""

    variant: Variant
    device: Device
    backlog_s: float = 0.0
    contention: float = 0.0
    feasible: bool = True
    why_not: str = ""


@dataclass(frozen=True, slots=True)
class Transfer:
    device: Device  # the GPU whose link is used
    direction: str  # "h2d" or "d2h"
    nbytes: int


class Measurement(NamedTuple):
    """One measured run: the compute (device synchronized) and the transfers apart."""

    kind: str
    variant: str
    device_label: str  # "" on the CPU: keys learned models with GPUs
    dtype: str
    work: float
    contention: float
    compute_s: float
    transfer_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.compute_s + self.transfer_s


def compute_key(kind: str, variant: str, dtype: str, device_label: str) -> str:
    """``matmul/cpu:numba/float32``; a GPU's model also names the GPU's model."""
    key = f"{kind}/{variant}/{dtype}"
    return f"{key}@{device_label}" if device_label else key


def transfer_key(direction: str, device_label: str) -> str:
    return f"transfer/{direction}@{device_label}"


def memory_of(device: Device) -> str:
    """The name of the memory a device computes in (``host`` for the CPU)."""
    return device.name if device.is_gpu else HOST


def transfers(call: CallFeatures, device: Device, gpus: Mapping[str, Device]) -> list[Transfer]:
    """The moves running ``call`` on ``device`` takes: inputs that live elsewhere come in
    (through the host), and the result goes back to where the inputs lived."""
    here = memory_of(device)
    moves = []
    for where, nbytes in call.resident.items():
        if where == here or nbytes == 0:
            continue
        if where != HOST:
            moves.append(Transfer(gpus[where], "d2h", nbytes))
        if device.is_gpu:
            moves.append(Transfer(device, "h2d", nbytes))
    if call.home != here and call.out_bytes:
        if device.is_gpu:
            moves.append(Transfer(device, "d2h", call.out_bytes))
        if call.home != HOST:
            moves.append(Transfer(gpus[call.home], "h2d", call.out_bytes))
    return moves


@dataclass(frozen=True, slots=True)
class Estimate:
    """The learned model's view of one option."""

    compute: Prediction
    transfer_s: float

    @property
    def run_s(self) -> float:
        return self.compute.seconds + self.transfer_s


def estimate(
    book: ModelBook, call: CallFeatures, option: Option, gpus: Mapping[str, Device]
) -> Estimate:
    model = book.model(option_key(call, option))
    mean, var = model.predict_at(decades(call.work), option.contention)
    return Estimate(
        Prediction(mean, var, model.observations), predicted_transfer_s(book, call, option, gpus)
    )


_KEYS: dict[tuple[str, str, str, str], str] = {}


def option_key(call: CallFeatures, option: Option) -> str:
    """``compute_key`` of the option, memoized (it is built for every option of every
    decision)."""
    device = option.device
    parts = (call.kind, option.variant.name, call.dtype, device.label if device.is_gpu else "")
    key = _KEYS.get(parts)
    if key is None:
        key = _KEYS[parts] = compute_key(*parts)
    return key


def predicted_transfer_s(
    book: ModelBook,
    call: CallFeatures,
    option: Option,
    gpus: Mapping[str, Device],
    rng: random.Random | None = None,
) -> float:
    """Predicted seconds of the moves ``transfers`` lists (0 when nothing moves); with
    ``rng``, an unsure prediction is a draw from its posterior (see LearnedChooser)."""
    if len(call.resident) == 1 and call.home == memory_of(option.device):
        return 0.0  # the common case, answered without building the list
    moved = 0.0
    for t in transfers(call, option.device, gpus):
        model = book.model(transfer_key(t.direction, t.device.label))
        log_mean, log_var = model.predict_at(decades(t.nbytes), 0.0)
        if rng is not None and log_var > EXPLORE_SD * EXPLORE_SD:
            log_mean += math.sqrt(log_var) * rng.gauss(0.0, 1.0)
        moved += math.exp(log_mean)
    return moved


class Chooser(Protocol):
    name: str

    def choose(self, call: CallFeatures, options: Sequence[Option]) -> int:
        """The index of the option to run (options has at least one feasible entry)."""
        ...

    def observe(self, m: Measurement) -> None: ...


def first_feasible(options: Sequence[Option]) -> int:
    return next(i for i, o in enumerate(options) if o.feasible)


# ------------------------------------------------------------------------------ learned
class LearnedChooser:
    """The option expected to *finish* first: what is queued on its device, plus its
    predicted run (compute and transfers). While a prediction is unsure (relative sd
    over ``EXPLORE_SD``), it is replaced by a draw from its posterior (Thompson
    sampling): an untried variant gets tried, a clearly slower one almost never."""

    name = "learned"

    def __init__(
        self,
        book: ModelBook,
        gpus: Mapping[str, Device],
        explore: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.book = book
        self.gpus = gpus
        self.explore = explore
        self.rng = rng or random.Random(0)
        self.explored = 0

    def choose(self, call: CallFeatures, options: Sequence[Option]) -> int:
        best, best_finish, explored = -1, math.inf, False
        l = decades(call.work)  # noqa: E741 - the cost model's name
        known: dict[tuple[str, float], tuple[float, float]] = {}  # alike GPUs: one model
        for i, option in enumerate(options):
            if not option.feasible:
                continue
            key = option_key(call, option)
            predicted = known.get((key, option.contention))
            if predicted is None:
                predicted = known[key, option.contention] = self._predict(key, l, option.contention)
            log_mean, log_var = predicted
            drawn = self.explore and log_var > EXPLORE_SD * EXPLORE_SD
            if drawn:
                log_mean += math.sqrt(log_var) * self.rng.gauss(0.0, 1.0)
            finish = (
                option.backlog_s
                + math.exp(log_mean)
                + predicted_transfer_s(
                    self.book, call, option, self.gpus, self.rng if drawn else None
                )
            )
            if finish < best_finish:
                best, best_finish, explored = i, finish, drawn
        self.explored += explored
        return best

    def _predict(self, key: str, l: float, z: float) -> tuple[float, float]:  # noqa: E741
        model = self.book.model(key)
        log_mean, log_var = model.predict_at(l, z)
        # An option not run for a while grows less certain (the machine may have changed
        # since), so one that once measured slow is tried again, rarely.
        return log_mean, log_var * (1.0 + (self.book.clock - model.last_seen) / STALENESS_RUNS)

    def observe(self, m: Measurement) -> None:
        pass  # the runtime updates the shared ModelBook, which this reads


# ---------------------------------------------------------------------------- baselines
class FixedChooser:
    """Always the first of ``prefer`` that can run (``always-cpu``: the task's own CPU
    implementation; ``always-gpu``: its GPU one), else the first option that can."""

    def __init__(self, name: str, prefer: Sequence[str]) -> None:
        self.name = name
        self.prefer = tuple(prefer)

    def choose(self, call: CallFeatures, options: Sequence[Option]) -> int:
        for wanted in self.prefer:
            for i, option in enumerate(options):
                if option.feasible and _matches(option.variant.name, wanted):
                    return i
        return first_feasible(options)

    def observe(self, m: Measurement) -> None:
        pass


def _matches(variant: str, wanted: str) -> bool:
    """``gpu`` matches every GPU variant; ``cpu`` only the plain CPU one; else exact."""
    return variant == wanted or (wanted == "gpu" and variant.startswith("gpu"))


class ThresholdChooser:
    """MKL automatic offload / NVBLAS style: below a size use one variant, above it
    another. The threshold (and the pair) per kind and dtype is fitted once, on the
    calibration measurements, as the split that would have cost least; it then stays
    fixed, as those libraries' thresholds do."""

    name = "threshold"

    def __init__(self, fitted: Mapping[tuple[str, str], tuple[float, str, str]]) -> None:
        self.fitted = dict(fitted)  # (kind, dtype) -> (threshold work, below, at-or-above)

    @classmethod
    def fit(cls, measurements: Iterable[Measurement]) -> ThresholdChooser:
        table = median_table(measurements)
        fitted = {}
        for (kind, dtype), by_variant in _group_by_call(table).items():
            best = _best_split(by_variant)
            if best is not None:
                fitted[kind, dtype] = best
        return cls(fitted)

    def choose(self, call: CallFeatures, options: Sequence[Option]) -> int:
        rule = self.fitted.get((call.kind, call.dtype))
        if rule is not None:
            threshold, small, large = rule
            wanted = small if call.work < threshold else large
            for i, option in enumerate(options):
                if option.feasible and option.variant.name == wanted:
                    return i
        return first_feasible(options)

    def observe(self, m: Measurement) -> None:
        pass


def median_table(measurements: Iterable[Measurement]) -> dict[tuple[str, str, str, float], float]:
    """Median total time per (kind, dtype, variant, work)."""
    runs: dict[tuple[str, str, str, float], list[float]] = {}
    for m in measurements:
        runs.setdefault((m.kind, m.dtype, m.variant, m.work), []).append(m.total_s)
    return {key: sorted(v)[len(v) // 2] for key, v in runs.items()}


def _group_by_call(
    table: Mapping[tuple[str, str, str, float], float],
) -> dict[tuple[str, str], dict[str, dict[float, float]]]:
    grouped: dict[tuple[str, str], dict[str, dict[float, float]]] = {}
    for (kind, dtype, variant, work), seconds in table.items():
        grouped.setdefault((kind, dtype), {}).setdefault(variant, {})[work] = seconds
    return grouped


def _best_split(by_variant: Mapping[str, Mapping[float, float]]) -> tuple[float, str, str] | None:
    """The (threshold, below, above) that minimizes the summed time over the sizes every
    variant of the pair was measured at."""
    best: tuple[float, tuple[float, str, str]] | None = None
    names = sorted(by_variant)
    for small in names:
        for large in names:
            sizes = sorted(set(by_variant[small]) & set(by_variant[large]))
            for threshold in [*sizes, math.inf]:
                cost = sum(
                    by_variant[small][w] if w < threshold else by_variant[large][w] for w in sizes
                )
                if sizes and (best is None or cost < best[0]):
                    best = (cost, (threshold, small, large))
    return None if best is None else best[1]


class HistoryChooser:
    """StarPU's history-based model with its regression fallback (``dmda``): the mean
    measured time of the same variant on exactly this size if it was seen, else a power
    law ``a * work**b`` fitted on that variant's history; a variant with no model yet
    is run to calibrate it, as StarPU does. The expected finish adds the device's queue.
    Decisions and measurements may come from different threads, hence the lock."""

    name = "history"

    def __init__(self, measurements: Iterable[Measurement] = ()) -> None:
        # (kind, dtype, variant) -> work -> (runs, mean seconds)
        self._means: dict[tuple[str, str, str], dict[float, tuple[int, float]]] = {}
        self._laws: dict[tuple[str, str, str], tuple[float, float] | None] = {}
        self._lock = threading.Lock()
        for m in measurements:
            self.observe(m)

    def observe(self, m: Measurement) -> None:
        key = (m.kind, m.dtype, m.variant)
        with self._lock:
            by_work = self._means.setdefault(key, {})
            n, mean = by_work.get(m.work, (0, 0.0))
            if n == 0:
                self._laws.pop(key, None)  # a new size: refit lazily
            by_work[m.work] = (n + 1, mean + (m.total_s - mean) / (n + 1))

    def choose(self, call: CallFeatures, options: Sequence[Option]) -> int:
        best, best_finish = -1, math.inf
        with self._lock:
            for i, option in enumerate(options):
                if not option.feasible:
                    continue
                expected = self._expected_s(call, option.variant.name)
                if expected is None:
                    return i  # calibrate it
                if option.backlog_s + expected < best_finish:
                    best, best_finish = i, option.backlog_s + expected
        return best

    def expected_s(self, call: CallFeatures, variant: str) -> float | None:
        with self._lock:
            return self._expected_s(call, variant)

    def _expected_s(self, call: CallFeatures, variant: str) -> float | None:
        key = (call.kind, call.dtype, variant)
        by_work = self._means.get(key, {})
        seen = by_work.get(call.work)
        if seen is not None:
            return seen[1]
        if key not in self._laws:
            self._laws[key] = _fit_law(by_work)
        law = self._laws[key]
        return None if law is None else law[0] * call.work ** law[1]


def _fit_law(by_work: Mapping[float, tuple[int, float]]) -> tuple[float, float] | None:
    points = [
        (math.log(max(w, 1.0)), math.log(max(mean, 1e-9))) for w, (_, mean) in by_work.items()
    ]
    if len({x for x, _ in points}) < 2:
        return None
    return power_law(points)


def power_law(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least squares of ln t = ln a + b ln n over (ln n, ln t) points: (a, b)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    return math.exp(my - b * mx), b
