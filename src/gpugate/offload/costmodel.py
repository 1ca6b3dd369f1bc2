"""The learned cost model: how long one variant of a task takes, from what it is given
and what the machine is doing. Pure: no clock, no I/O; fit and predict only.

For each (kind, variant, dtype) it keeps a ridge regression of the log of the run time,

    ln(seconds) = w0 + w1*l + w2*l**2 + w3*z + w4*z*l

where ``l = log10(work / 1e6)`` (the task's work in decades around a million units) and
``z`` is the contention of the device the variant runs on (``cpu_contention`` and
``gpu_contention`` below). The log makes errors relative (a 10 us task and a 10 s task
count alike), ``l**2`` bends the line where a fixed launch cost gives way to throughput,
and the two ``z`` terms make a busy device a multiplicative slowdown that may depend on
size. Transfers are modelled the same way with the bytes moved as the work and no ``z``.

It learns online: each measurement updates exponentially-forgotten sufficient statistics
(``FORGET`` per observation, so the model follows a machine that changes) and the weights
are re-solved. The ridge is anchored at a physical prior (time proportional to work; a
device half taken is about twice as slow) rather than at zero, so a model that has never
seen a loaded machine still predicts that load slows it down, and the prior's pull
vanishes as data arrives. Prediction returns the mean of ``ln(seconds)`` and its variance
(parameter uncertainty only), which the chooser uses to explore while it is unsure.

A lasting change that the features do not explain (16 runs in a row off by more than
two standard deviations, all the same way) moves what was learned by the change and
keeps only a little of it (``SHIFT_KEEP``), so that the model follows the machine in a
few dozen runs instead of a thousand.

Several processes on one machine learn into one model file. Each model remembers the
statistics it last read or wrote (``synced``) and how it has transformed them since
(scaled by forgetting and shifts: ``log_kept``; moved by shifts: ``moved``), so what it
learned itself is ``stats - exp(log_kept) * relevelled(synced, moved)``; a save adds
that to the file's current statistics, transformed alike, so every process's runs
count and none overwrites another's
(``ModelBook.sync_point``, ``merge``, ``ModelBook.rebase``).

Prediction is plain Python on five numbers: a decision among three variants costs a few
microseconds (a scikit-learn ``predict()`` on one row costs hundreds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

N_FEATURES = 5
FORGET = 0.998  # per observation: the last ~500 observations of a key dominate
_LN_MILLISECOND = math.log(1e-3)
_LN10 = math.log(10.0)
# Prior mean of the weights: 1e6 work units take 1 ms; time proportional to work (a
# decade of work is a decade of time); no bend; contention z slows down by e**z.
PRIOR_MEAN = (_LN_MILLISECOND, _LN10, 0.0, 1.0, 0.0)
# A transfer's: a megabyte in 100 us (about 10 GB/s, a PCIe 3/4 link), proportional.
TRANSFER_PRIOR_MEAN = (math.log(1e-4), _LN10, 0.0, 0.0, 0.0)
TRANSFER_PREFIX = "transfer/"
# Ridge strength toward the prior, per weight. Weak on level and slope (the first two
# observations decide them), stronger on the bend (prefer a straight line until the data
# insists) and on the contention terms (a machine is rarely seen loaded; keep the prior).
PRIOR_STRENGTH = (1e-3, 1e-2, 0.3, 2.0, 2.0)
PRIOR_NOISE_VAR = 0.05  # of ln(seconds): about 22% run-to-run spread until measured
NOISE_PRIOR_WEIGHT = 2.0  # observations' worth of belief in PRIOR_NOISE_VAR
OUTLIER_SD = 3.0
MAX_SLOPE = 1.5 * _LN10  # steepest extrapolation: time grows as work**1.5
# A lasting change (a slower clock, a new driver, another tenant the load features miss)
# shows as runs off the prediction the same way, one after another; forgetting at
# FORGET alone would take a thousand runs to follow it. SHIFT_RUNS runs in a row beyond
# SHIFT_LIMIT standard deviations, all too slow or all too fast, move what was learned
# by the least of their deviations and keep SHIFT_KEEP of it: the level is about right
# at once, the shape is kept until new runs say otherwise. The run is long because
# busy machines have bursts: beside busy processes a BLAS call was 100x slower for
# several calls in a row, and a burst taken for a change makes the variant look slow
# until it is tried again. Gaussian noise makes such a run about once in 10**26 runs.
SHIFT_RUNS = 16
SHIFT_LIMIT = 2.0
SHIFT_KEEP = 0.1
_LN_FORGET = math.log(FORGET)
SOLVE_EVERY_RUN_UNTIL = 32
SOLVE_EVERY = 4
_STRENGTH = np.array(PRIOR_STRENGTH)
_RIDGE = np.diag(_STRENGTH)
FITTED_DOF = 3  # weights the data pins down (level, slope, bend) before residuals are noise


def decades(work: float) -> float:
    """``l``: the work in decades around a million units (1e6 -> 0.0, 1e9 -> 3.0)."""
    return math.log10(max(work, 1.0)) - 6.0


def cpu_contention(runnable_others: float, cpu_count: int) -> float:
    """``z`` for a CPU variant: ln(1 + runnable threads of other processes per core).
    A parallel loop over every core runs about (1 + R/C) times slower beside R others."""
    return math.log1p(max(runnable_others, 0.0) / max(cpu_count, 1))


def gpu_contention(util_others_pct: float) -> float:
    """``z`` for a GPU variant: -ln(1 - others' utilization), capped at 95%. A GPU whose
    SMs others keep busy a fraction u of the time gives a kernel about 1/(1-u) of its time."""
    busy = min(max(util_others_pct, 0.0), 95.0) / 100.0
    return -math.log1p(-busy)


def features(work: float, contention: float) -> tuple[float, float, float, float, float]:
    """The regression's inputs for one call (see the module docstring)."""
    l = decades(work)  # noqa: E741 - the equation's name
    return (1.0, l, l * l, contention, contention * l)


@dataclass(frozen=True, slots=True)
class Prediction:
    """``ln(seconds)`` expected and the variance of that expectation; ``observations``
    is how many measurements (forgotten ones included) the model has seen."""

    log_mean: float
    log_var: float
    observations: int

    @property
    def seconds(self) -> float:
        """The median run time (``exp`` of the mean log)."""
        return math.exp(self.log_mean)

    @property
    def relative_sd(self) -> float:
        """Uncertainty as a fraction of the prediction (0.1: about +-10%)."""
        return math.sqrt(max(self.log_var, 0.0))


@dataclass(slots=True)
class LogLinearModel:
    """One online ridge regression of ln(seconds) (see the module docstring).

    ``gram`` and ``moment`` are the forgotten sums of x x^T and x y over observations;
    ``weights`` and ``inverse`` (of gram + ridge) are re-solved after each update and
    kept as tuples so that ``predict`` never touches NumPy.
    """

    gram: list[list[float]] = field(default_factory=lambda: _zeros(N_FEATURES, N_FEATURES))
    moment: list[float] = field(default_factory=lambda: [0.0] * N_FEATURES)
    low: float = math.inf  # the smallest and largest l observed: beyond them the bend
    high: float = -math.inf  # is not extrapolated (see predict_at)
    square_sum: float = 0.0  # forgotten sum of y**2
    weight_sum: float = 0.0  # forgotten count of observations
    noise_var: float = PRIOR_NOISE_VAR
    observations: int = 0
    last_seen: int = 0  # the book's clock at the last update (see ModelBook.clock)
    stale: bool = False  # updated since the last solve
    streak: tuple[float, ...] = ()  # the last runs' residuals, if all off the same way
    shifts: int = 0  # lasting changes seen (and followed) in this process
    # The statistics as last read from or written to the model file (None: never); the
    # updates since, how the synced statistics were transformed since (the log of the
    # factor they were scaled by, how far they were moved) and the range of l seen
    # since: what this process learned itself (``AtSave``).
    synced: tuple[float, ...] | None = None
    synced_observations: int = 0
    updates_since_sync: int = 0
    log_kept: float = 0.0
    moved: float = 0.0
    low_since_sync: float = math.inf
    high_since_sync: float = -math.inf
    prior_mean: tuple[float, ...] = PRIOR_MEAN
    weights: tuple[float, ...] = PRIOR_MEAN
    inverse: tuple[tuple[float, ...], ...] = field(
        default_factory=lambda: tuple(
            tuple(1.0 / s if i == j else 0.0 for j, s in enumerate(PRIOR_STRENGTH))
            for i in range(N_FEATURES)
        )
    )

    def predict(self, x: Sequence[float]) -> Prediction:
        mean, var = self.predict_at(x[1], x[3])
        return Prediction(mean, var, self.observations)

    def predict_at(self, l: float, z: float) -> tuple[float, float]:  # noqa: E741
        """(mean, variance) of ln(seconds) at ``l`` decades of work and contention ``z``:
        ``w . x`` and ``noise * x' A^-1 x`` written out, since this is the decision's
        inner loop (about a microsecond)."""
        w = self.weights
        ll, zl = l * l, z * l
        a = self.inverse
        quad = (
            a[0][0]
            + ll * ll * a[2][2]
            + l * l * a[1][1]
            + z * z * a[3][3]
            + zl * zl * a[4][4]
            + 2.0
            * (
                l * (a[0][1] + ll * a[1][2] + z * a[1][3] + zl * a[1][4])
                + ll * (a[0][2] + z * a[2][3] + zl * a[2][4])
                + z * (a[0][3] + zl * a[3][4])
                + zl * a[0][4]
            )
        )
        if self.low <= l <= self.high or self.low > self.high:
            mean = w[0] + w[1] * l + w[2] * ll + w[3] * z + w[4] * zl
        else:
            # Outside the sizes seen, continue the curve in a straight line from its edge,
            # its slope kept between flat and work**1.5 (a matmul's time in its elements):
            # a quadratic in log-log would keep bending up (or down) for ever.
            edge = min(max(l, self.low), self.high)
            at_edge = w[0] + w[1] * edge + w[2] * edge * edge + w[3] * z + w[4] * z * edge
            slope = min(max(w[1] + 2.0 * w[2] * edge + w[4] * z, 0.0), MAX_SLOPE)
            mean = at_edge + slope * (l - edge)
        return mean, self.noise_var * quad

    def update(self, x: Sequence[float], seconds: float) -> None:
        """Learn from one measured run of ``seconds`` (> 0) with inputs ``x``; a run
        with a number that is not finite (a NaN work, say) is ignored, since it would
        poison the sums for ever."""
        if not (math.isfinite(seconds) and all(map(math.isfinite, x))):
            return
        y = self._clipped(x, math.log(max(seconds, 1e-9)))
        self.low, self.high = min(self.low, x[1]), max(self.high, x[1])
        self.low_since_sync = min(self.low_since_sync, x[1])
        self.high_since_sync = max(self.high_since_sync, x[1])
        self.square_sum = FORGET * self.square_sum + y * y
        self.weight_sum = FORGET * self.weight_sum + 1.0
        for i in range(N_FEATURES):
            self.moment[i] = FORGET * self.moment[i] + x[i] * y
            row = self.gram[i]
            for j in range(N_FEATURES):
                row[j] = FORGET * row[j] + x[i] * x[j]
        self.observations += 1
        self.updates_since_sync += 1
        self.log_kept += _LN_FORGET
        # Re-solving costs ~20 us, most of a call's overhead; once a model has seen a few
        # dozen runs, one more barely moves it, so it is re-solved every few runs.
        self.stale = True
        if self.observations <= SOLVE_EVERY_RUN_UNTIL or self.observations % SOLVE_EVERY == 0:
            self._solve()

    def _clipped(self, x: Sequence[float], y: float) -> float:
        """``y`` pulled to within ``OUTLIER_SD`` standard deviations of the prediction.
        One run that a page fault or a context switch made 30 times slower would
        otherwise move a log-space least-squares fit far; a model that is still unsure
        (wide prediction) clips nothing. A real change is told from noise by its
        persistence (``_shifted``), and then followed at once."""
        mean, var = self.predict_at(x[1], x[3])
        sd = math.sqrt(self.noise_var + var)
        if self._shifted(y - mean, sd):
            mean, var = self.predict_at(x[1], x[3])
            sd = math.sqrt(self.noise_var + var)
        limit = OUTLIER_SD * sd
        return min(max(y, mean - limit), mean + limit)

    def _shifted(self, residual: float, sd: float) -> bool:
        """Count the runs in a row off by more than ``SHIFT_LIMIT`` sd the same way; at
        ``SHIFT_RUNS``, move the statistics by their least residual, keep
        ``SHIFT_KEEP`` of them (the prior's pull and the uncertainty grow back
        accordingly) and say so."""
        if abs(residual) <= SHIFT_LIMIT * sd:
            self.streak = ()
            return False
        if self.streak and (self.streak[0] > 0) != (residual > 0):
            self.streak = ()
        self.streak = (*self.streak, residual)
        if len(self.streak) < SHIFT_RUNS:
            return False
        self.shift(min(self.streak, key=abs))  # what every run of the streak showed
        return True

    def shift(self, by: float, keep: float = SHIFT_KEEP) -> None:
        """Move what was learned by ``by`` (in ln seconds) and keep ``keep`` of it."""
        self.set_stats(transformed(self.stats(), math.log(keep), by))
        self.log_kept += math.log(keep)
        self.moved += by
        self.streak = ()
        self.shifts += 1

    def _solve(self) -> None:
        gram = np.array(self.gram)
        moment = np.array(self.moment)
        inverse = np.linalg.inv(gram + _RIDGE)
        weights = inverse @ (moment + _STRENGTH * np.array(self.prior_mean))
        self.inverse = tuple(map(tuple, inverse.tolist()))
        self.weights = tuple(weights.tolist())
        self.noise_var = self._noise_var(weights, gram, moment)
        self.stale = False

    def _noise_var(
        self, w: np.ndarray[Any, Any], gram: np.ndarray[Any, Any], moment: np.ndarray[Any, Any]
    ) -> float:
        """The residual variance of the fit, ``(SSE + prior) / (n - dof + prior weight)``,
        with SSE from the sufficient statistics: sum y^2 - 2 w.m + w' G w."""
        sse = self.square_sum - 2.0 * float(w @ moment) + float(w @ gram @ w)
        dof = max(self.weight_sum - FITTED_DOF, 0.0)
        noise = (max(sse, 0.0) + NOISE_PRIOR_WEIGHT * PRIOR_NOISE_VAR) / (dof + NOISE_PRIOR_WEIGHT)
        return max(noise, 1e-6)

    # ------------------------------------------------------------------- merging
    def stats(self) -> tuple[float, ...]:
        """The sufficient statistics, flat: gram (row by row), moment, sum of y**2 and
        the forgotten count; what adds up when processes merge what they learned."""
        return (
            *(v for row in self.gram for v in row),
            *self.moment,
            self.square_sum,
            self.weight_sum,
        )

    def set_stats(self, stats: Sequence[float]) -> None:
        n = N_FEATURES
        self.gram = [list(stats[i * n : (i + 1) * n]) for i in range(n)]
        self.moment = list(stats[n * n : n * n + n])
        self.square_sum, self.weight_sum = stats[-2], stats[-1]
        self._solve()

    def mark_synced(self) -> None:
        """What this model holds now is what the file holds."""
        self.synced = self.stats()
        self.synced_observations = self.observations
        self.updates_since_sync = 0
        self.log_kept, self.moved = 0.0, 0.0
        self.low_since_sync, self.high_since_sync = math.inf, -math.inf

    def to_dict(self) -> dict[str, Any]:
        if self.stale:  # so that a model read back predicts exactly as this one
            self._solve()
        return {
            "gram": self.gram,
            "moment": self.moment,
            "low": self.low if self.observations else None,
            "high": self.high if self.observations else None,
            "square_sum": self.square_sum,
            "weight_sum": self.weight_sum,
            "observations": self.observations,
            "prior_mean": list(self.prior_mean),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogLinearModel:
        """Rebuild from ``to_dict``; raises ValueError on anything malformed."""
        gram = [[float(v) for v in row] for row in data["gram"]]
        moment = [float(v) for v in data["moment"]]
        if len(gram) != N_FEATURES or any(len(r) != N_FEATURES for r in gram):
            raise ValueError("gram is not 5x5")
        if len(moment) != N_FEATURES:
            raise ValueError("moment does not have 5 entries")
        model = cls(
            gram=gram,
            moment=moment,
            low=math.inf if data["low"] is None else float(data["low"]),
            high=-math.inf if data["high"] is None else float(data["high"]),
            square_sum=float(data["square_sum"]),
            weight_sum=float(data["weight_sum"]),
            observations=int(data["observations"]),
            prior_mean=tuple(float(v) for v in data["prior_mean"]),
        )
        if len(model.prior_mean) != N_FEATURES:
            raise ValueError("prior_mean does not have 5 entries")
        if not all(
            map(math.isfinite, [*moment, *(v for row in gram for v in row), model.square_sum])
        ):
            raise ValueError("not finite")
        model._solve()
        model.mark_synced()
        return model


def new_model(key: str) -> LogLinearModel:
    """A model with the prior its key calls for (compute or transfer)."""
    if key.startswith(TRANSFER_PREFIX):
        model = LogLinearModel(prior_mean=TRANSFER_PRIOR_MEAN, weights=TRANSFER_PRIOR_MEAN)
        return model
    return LogLinearModel()


_NO_STATS = (0.0,) * (N_FEATURES * N_FEATURES + N_FEATURES + 2)
_MOMENT = N_FEATURES * N_FEATURES  # where the moment starts in ``stats()``


def relevelled(stats: Sequence[float], by: float) -> tuple[float, ...]:
    """The statistics of the same runs with every ln(seconds) moved by ``by``: the
    moment gains ``by * sum(x)`` (the gram's first column, x0 being 1) and the sum of
    squares ``2 by sum(y) + by**2 n``. Moves add up, and commute with scaling."""
    if by == 0.0:
        return tuple(stats)
    n = N_FEATURES
    moment = [stats[_MOMENT + i] + by * stats[i * n] for i in range(n)]
    square_sum = stats[-2] + 2.0 * by * stats[_MOMENT] + by * by * stats[-1]
    return (*stats[:_MOMENT], *moment, square_sum, stats[-1])


@dataclass(frozen=True, slots=True)
class AtSave:
    """One model as a save began: its statistics and observations, and what it learned
    since its last sync (updates, the scaling of the synced statistics, the range of l)."""

    stats: tuple[float, ...]
    observations: int
    updates: int
    log_kept: float
    moved: float
    synced: tuple[float, ...]
    synced_observations: int
    low: float
    high: float

    whole: bool = False  # to be written as if never synced (see ``of``)

    @classmethod
    def of(cls, model: LogLinearModel, whole: bool = False) -> AtSave:
        """``whole``: all the model holds counts as its own (the file is rewritten from
        this process's models, the one there being unreadable)."""
        return cls(
            model.stats(),
            model.observations,
            model.updates_since_sync,
            model.log_kept,
            model.moved,
            _NO_STATS if whole else model.synced or _NO_STATS,
            0 if whole else model.synced_observations,
            model.low if whole else model.low_since_sync,
            model.high if whole else model.high_since_sync,
            whole,
        )

    @property
    def changed(self) -> bool:
        """Whether the model learned or shifted since its sync (or is to be written whole)."""
        return bool(self.updates or self.log_kept or self.moved or self.whole)

    @classmethod
    def nothing(cls) -> AtSave:
        return cls(_NO_STATS, 0, 0, 0.0, 0.0, _NO_STATS, 0, math.inf, -math.inf)

    def own_stats(self) -> list[float]:
        """What this process learned since its last sync: its statistics less the synced
        ones, transformed as it transformed its own since (forgetting, shifts)."""
        return _plus(self.stats, self.transformed(self.synced), -1.0)

    def transformed(self, stats: Sequence[float]) -> tuple[float, ...]:
        """``stats`` as this model transformed its synced statistics since its sync."""
        return transformed(stats, self.log_kept, self.moved)


def merge(
    on_disk: ModelBook, at_save: Mapping[str, AtSave], move_once: bool = True
) -> dict[str, LogLinearModel]:
    """What the model file should now hold: its current models (``on_disk``, which other
    processes may have saved into since this one last read it) with what this process
    learned since (``at_save``) added, as if those runs had come after theirs. A key this
    process did not change is the file's as it is; one the file lacks (never saved, or
    reset) is this process's own learning alone. With ``move_once``, a shift this process
    made is not applied to a file that another process already moved to the same level
    (``_already_moved``)."""
    merged = dict(on_disk.models)
    for key, mine in at_save.items():
        if not mine.changed:
            continue  # nothing learned here since the last sync: the file's is current
        disk = on_disk.models.get(key)
        if disk is None and mine.observations == mine.synced_observations:
            continue  # shifted, but with no runs of its own to write
        base = _NO_STATS
        if disk is not None:
            base = mine.transformed(disk.stats())
            if move_once and mine.moved and _already_moved(key, disk, mine):
                # another process saw the same change and saved it: move the file once
                base = transformed(disk.stats(), mine.updates * _LN_FORGET, 0.0)
        model = new_model(key)
        model.observations = mine.observations - mine.synced_observations
        model.low, model.high = mine.low, mine.high
        if disk is not None:
            model.observations += disk.observations
            model.low, model.high = min(model.low, disk.low), max(model.high, disk.high)
        model.set_stats(_plus(base, mine.own_stats()))
        merged[key] = model
    return merged


def _already_moved(key: str, disk: LogLinearModel, mine: AtSave) -> bool:
    """Whether the file's model already sits at the level this process shifted to: where
    this process ran, its prediction is nearer this process's (moved) one than where that
    one was before the move. Then another process followed the same change of the
    machine into the file, and moving the file again would overshoot."""
    ours = new_model(key)
    ours.set_stats(mine.stats)
    at = (mine.low + mine.high) / 2 if mine.low <= mine.high else 0.0
    gap = disk.predict_at(at, 0.0)[0] - ours.predict_at(at, 0.0)[0]
    return abs(gap) < abs(gap + mine.moved)


def _plus(a: Sequence[float], b: Sequence[float], times: float = 1.0) -> list[float]:
    return [u + times * v for u, v in zip(a, b, strict=True)]


def transformed(stats: Sequence[float], log_kept: float, moved: float) -> tuple[float, ...]:
    """``stats`` moved by ``moved`` and scaled by ``exp(log_kept)``: what forgetting and
    shifts did to a model's statistics over some runs (see ``relevelled``)."""
    kept = math.exp(log_kept)
    return tuple(kept * v for v in relevelled(stats, moved))


def _zeros(rows: int, cols: int) -> list[list[float]]:
    return [[0.0] * cols for _ in range(rows)]


class ModelBook:
    """Every learned model of one machine, by key (``matmul/cpu:numba/float32``,
    ``transfer/h2d/cuda:0``). An unseen key predicts from the prior."""

    def __init__(self, models: Mapping[str, LogLinearModel] | None = None) -> None:
        self.models: dict[str, LogLinearModel] = dict(models or {})
        self.clock = 0  # observations of every key so far (staleness of a key's model)
        self._priors = (LogLinearModel(), new_model(TRANSFER_PREFIX))

    def predict(self, key: str, work: float, contention: float = 0.0) -> Prediction:
        return self.model(key).predict(features(work, contention))

    def model(self, key: str) -> LogLinearModel:
        """The model of ``key`` (the prior's, shared and never updated, if unseen)."""
        model = self.models.get(key)
        if model is None:
            return self._priors[key.startswith(TRANSFER_PREFIX)]
        return model

    def observe(self, key: str, work: float, contention: float, seconds: float) -> bool:
        """Learn from one run; True if it revealed a lasting change (see SHIFT_LIMIT)."""
        model = self.models.get(key)
        if model is None:
            model = self.models[key] = new_model(key)
        self.clock += 1
        model.last_seen = self.clock
        shifts = model.shifts
        model.update(features(work, contention), seconds)
        return model.shifts != shifts

    def to_dict(self) -> dict[str, Any]:
        return {key: model.to_dict() for key, model in sorted(self.models.items())}

    def sync_point(self, whole: bool = False) -> dict[str, AtSave]:
        """Every model as a save begins (cheap copies: taken under the learner's lock).
        ``whole``: each as if never synced (see ``AtSave.of``)."""
        return {key: AtSave.of(model, whole) for key, model in self.models.items()}

    def rebase(self, written: Mapping[str, LogLinearModel], at_save: Mapping[str, AtSave]) -> None:
        """Adopt ``written`` (``merge``'s result, now in the file) as the synced statistics
        of each model it holds, keeping what was learned here since ``at_save`` on top of
        it. A model the file lacks is left as it is (it is merged at the next save),
        except one that only shifted (``merge`` skips it): what it holds counts as
        synced, so that its shift is not applied again, to others' runs, later."""
        for key, mine in at_save.items():
            model = self.models.get(key)
            if key not in written and mine.changed and model is not None:
                model.synced, model.synced_observations = mine.stats, mine.observations
                model.updates_since_sync -= mine.updates
                model.log_kept, model.moved = (
                    model.log_kept - mine.log_kept,
                    model.moved - mine.moved,
                )
        for key, merged in written.items():
            model = self.models.get(key)
            if model is None:  # learned by another process only
                model = self.models[key] = new_model(key)
            mine = at_save.get(key) or AtSave.nothing()
            since = model.updates_since_sync - mine.updates  # updates while the save ran
            written_stats = merged.stats()
            untouched = since == 0 and model.log_kept == mine.log_kept and model.moved == mine.moved
            if untouched and not mine.changed and written_stats == model.synced:
                continue  # nobody learned anything about it
            # what happened to the statistics while the save ran, applied to the written
            # ones and taken off the ones held then: S = T(W) + (S_now - T(S_held))
            log_kept, moved = model.log_kept - mine.log_kept, model.moved - mine.moved
            model.set_stats(
                _plus(
                    transformed(written_stats, log_kept, moved),
                    _plus(model.stats(), transformed(mine.stats, log_kept, moved), -1.0),
                )
            )
            if merged.observations != mine.observations:  # others' runs, or a reset
                model.last_seen = self.clock
            model.observations = merged.observations + (model.observations - mine.observations)
            model.low, model.high = min(model.low, merged.low), max(model.high, merged.high)
            model.synced = written_stats
            model.synced_observations = merged.observations
            model.updates_since_sync = since
            model.log_kept, model.moved = log_kept, moved
            model.streak = ()  # its runs were off a model that is no more
            if since == 0:
                model.low_since_sync, model.high_since_sync = math.inf, -math.inf

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelBook:
        return cls({str(k): LogLinearModel.from_dict(v) for k, v in data.items()})
