"""Fitting the interference model on Gavel's measured pairs (docs/interference.md).

    python -m gpugate.sim.interference_fit PATH/simulation_throughputs.json [--compare]

Kept apart from ``interference`` so the simulator imports only the model it runs.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import random
import statistics
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from gpugate.sim.interference import GAVEL_GPUS, InterferenceModel


# ---------------------------------------------------------------------------------------
# Gavel's measurements
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PairObservation:
    """One job's throughput while it shared a GPU with ``partner``, relative to alone."""

    gpu: str
    job: str
    partner: str
    speed: float


@dataclass(frozen=True, slots=True)
class GavelPairs:
    observations: tuple[PairObservation, ...]
    n_pairs: int  # measured (gpu, {job, partner}) pairs, a job paired with itself included
    n_infeasible: int  # pairs recorded as 0 steps/s for both jobs: they did not fit together


def _job_key(key: str) -> tuple[str, int]:
    """Gavel's keys are Python tuples written out: "('ResNet-18 (batch size 16)', 1)"."""
    name, scale = ast.literal_eval(key)
    return str(name), int(scale)


def parse_gavel(raw: Mapping[str, Any]) -> GavelPairs:
    """The single-GPU (scale 1) pairs of Gavel's ``simulation_throughputs.json``."""
    observations: list[PairObservation] = []
    measured: set[tuple[str, ...]] = set()
    infeasible: set[tuple[str, ...]] = set()
    for gpu in GAVEL_GPUS:
        table = {_job_key(key): entry for key, entry in raw.get(gpu, {}).items()}
        solo = {job: float(entry["null"]) for (job, scale), entry in table.items() if scale == 1}
        for (job, _), entry in ((key, e) for key, e in table.items() if key[1] == 1):
            for other_key, value in entry.items():
                if other_key == "null" or _job_key(other_key)[1] != 1:
                    continue
                partner = _job_key(other_key)[0]
                mine, theirs = float(value[0]), float(value[1])
                pair = (gpu, *sorted((job, partner)))
                if mine == 0 and theirs == 0:
                    infeasible.add(pair)
                    continue
                measured.add(pair)
                observations.append(PairObservation(gpu, job, partner, mine / solo[job]))
    return GavelPairs(tuple(observations), len(measured), len(infeasible))


def read_gavel(path: str | Path) -> GavelPairs:
    with Path(path).open(encoding="utf-8") as f:
        return parse_gavel(json.load(f))


# ---------------------------------------------------------------------------------------
# Fitting: latent intensities on a grid, global parameters by pattern search
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Form:
    """A candidate: the model's equation with ``free`` parameters fitted, ``fixed`` ones set,
    and the others at 0 (their no-interference value)."""

    name: str
    description: str
    free: tuple[tuple[str, float, float, float], ...]  # (parameter, low, high, start)
    fixed: tuple[tuple[str, float], ...] = ()

    def model(self, values: Sequence[float]) -> InterferenceModel:
        free = {name: v for (name, *_), v in zip(self.free, values, strict=True)}
        return InterferenceModel(**dict(self.fixed), **free)


# alpha and the scale of the intensities are one degree of freedom in (d) and (e): scaling
# every u by c is undone by another (alpha, sigma), so they fix alpha = 1 (a saturating job
# time-slices: 1 / (1 + P_i)), which also makes the most intense Gavel job u = 1.
_SIGMA = ("sigma", 0.0, 0.98, 0.5)
FORMS = (
    Form("a", "time slicing, U**-beta once U > 1", (("beta", 1.0, 6.0, 2.0),)),
    Form("b", "(a) times (1 - kappa)", (("beta", 1.0, 6.0, 2.0), ("kappa", 0.0, 0.5, 0.1))),
    Form("c", "1 / (1 + alpha * P_i)", (("alpha", 0.0, 8.0, 1.0),)),
    Form("d", "1 / (1 + P_i / (1 - sigma + sigma * u_i))", (_SIGMA,), (("alpha", 1.0),)),
    Form("d'", "(d) with alpha fitted too", (("alpha", 0.0, 8.0, 1.0), _SIGMA)),
    Form(
        "e",
        "(d) times (b)",
        (_SIGMA, ("beta", 0.0, 6.0, 0.5), ("kappa", 0.0, 0.5, 0.05)),
        (("alpha", 1.0),),
    ),
)
CHOSEN_FORM = FORMS[3]

# Latent intensities live on this grid, so that for fixed global parameters one table of
# pair speeds serves every coordinate-descent step (pure Python; numpy is not a dependency).
_GRID = tuple(i / 50 for i in range(51))
_START_LEVEL = 50
_COARSE = 5  # coarse step of the level search
_WINDOW = 2  # levels either side searched while trying global values
_STEP_TOLERANCE = 1 / 256  # of each parameter's range
_MAX_SWEEPS = 30


@dataclass(frozen=True, slots=True)
class _Table:
    """Speeds of pairs on the grid: ``rows[a][b]`` is the speed of a job at level ``a``
    sharing with one at ``b``; ``columns[b][a]`` is the same number, for the other lookup."""

    rows: list[list[float]]
    columns: list[list[float]]


def _pair_table(model: InterferenceModel) -> _Table:
    rows = [[1.0] * len(_GRID) for _ in _GRID]
    for a, ua in enumerate(_GRID):
        for b in range(a, len(_GRID)):
            rows[a][b], rows[b][a] = model.speeds((ua, _GRID[b]))
    return _Table(rows, [list(column) for column in zip(*rows, strict=True)])


@dataclass(slots=True)
class _Latent:
    """What one latent intensity is fitted on: (speed, other latent) pairs."""

    as_job: list[tuple[float, int]] = field(default_factory=list)
    as_partner: list[tuple[float, int]] = field(default_factory=list)
    with_itself: list[float] = field(default_factory=list)


# An observation as the fitter sees it: (latent of the job, latent of the partner, speed).
_Obs = tuple[int, int, float]


def _index(observations: Iterable[_Obs], n_latents: int) -> list[_Latent]:
    latents = [_Latent() for _ in range(n_latents)]
    for job, partner, speed in observations:
        if job == partner:
            latents[job].with_itself.append(speed)
        else:
            latents[job].as_job.append((speed, partner))
            latents[partner].as_partner.append((speed, job))
    return latents


def _best_level(
    table: _Table, levels: Sequence[int], latent: _Latent, near: int | None = None
) -> int:
    """The grid level minimising this latent's absolute error, the other latents held fixed.

    Searched within ``_WINDOW`` levels of ``near``, or else coarse to fine (every
    ``_COARSE``-th level, then the best one's neighbours): each latent's error is close to
    unimodal in its own level, and the whole grid would cost 4 times as much.
    """
    as_job = [(speed, levels[partner]) for speed, partner in latent.as_job]
    as_partner = [(speed, levels[job]) for speed, job in latent.as_partner]

    def error(level: int) -> float:
        row, column = table.rows[level], table.columns[level]
        return (
            sum(abs(speed - row[other]) for speed, other in as_job)
            + sum(abs(speed - column[other]) for speed, other in as_partner)
            + sum(abs(speed - row[level]) for speed in latent.with_itself)
        )

    def around(level: int, width: int) -> range:
        return range(max(0, level - width), min(len(_GRID), level + width + 1))

    if near is not None:
        return min(around(near, _WINDOW), key=error)  # ties: the lowest level
    coarse = min(range(0, len(_GRID), _COARSE), key=error)
    return min(around(coarse, _COARSE - 1), key=error)


def _sweep(table: _Table, levels: list[int], latents: Sequence[_Latent], local: bool) -> bool:
    """One coordinate-descent pass over the latents with data; True if any moved.

    ``local`` searches each latent near its current level only.
    """
    moved = False
    for i, latent in enumerate(latents):
        if latent.as_job or latent.as_partner or latent.with_itself:
            best = _best_level(table, levels, latent, levels[i] if local else None)
            moved |= best != levels[i]
            levels[i] = best
    return moved


def _mae(table: _Table, levels: Sequence[int], observations: Sequence[_Obs]) -> float:
    error = sum(abs(s - table.rows[levels[j]][levels[p]]) for j, p, s in observations)
    return error / len(observations)


@dataclass(frozen=True, slots=True)
class _Fit:
    model: InterferenceModel
    table: _Table
    levels: list[int]
    error: float  # in-sample MAE


def _converge(
    form: Form,
    values: list[float],
    levels: list[int],
    latents: Sequence[_Latent],
    train: Sequence[_Obs],
    local: bool,
) -> _Fit:
    """The latents re-fitted for these global values, from ``levels``: by one local sweep
    (cheap, to try a value), or by full sweeps until none moves."""
    table = _pair_table(form.model(values))
    levels = levels.copy()
    if local:
        _sweep(table, levels, latents, local=True)
    else:
        for _ in range(_MAX_SWEEPS):
            if not _sweep(table, levels, latents, local=False):
                break
    return _Fit(form.model(values), table, levels, _mae(table, levels, train))


def _fit(form: Form, train: Sequence[_Obs], n_latents: int) -> _Fit:
    """Pattern search on the global parameters, starting from ``form``'s start values and
    halving the steps when no move helps; each trial re-fits the latents locally."""
    latents = _index(train, n_latents)
    values = [start for _, _, _, start in form.free]
    steps = [(high - low) / 4 for _, low, high, _ in form.free]
    best = _converge(form, values, [_START_LEVEL] * n_latents, latents, train, local=False)
    while any(s > _STEP_TOLERANCE * (p[2] - p[1]) for s, p in zip(steps, form.free, strict=True)):
        improved = False
        for k, (_, low, high, _) in enumerate(form.free):
            for sign in (1.0, -1.0):
                trial = values.copy()
                trial[k] = min(high, max(low, values[k] + sign * steps[k]))
                fit = _converge(form, trial, best.levels, latents, train, local=True)
                if fit.error < best.error - 1e-12:
                    values, best, improved = trial, fit, True
                    break
        if not improved:
            steps = [s / 2 for s in steps]
    return _converge(form, values, best.levels, latents, train, local=False)


# ---------------------------------------------------------------------------------------
# Evaluation: in-sample, k-fold over pairs, leave one job type out
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FitErrors:
    """Mean absolute error of normalised throughput (paired / solo steps per second)."""

    in_sample: float
    cross_validated: float  # k folds over unordered job-type pairs (all GPU models at once)
    cross_validated_se: float  # standard error of that mean, from the spread over folds
    leave_type_out: float  # the left-out type gets the median intensity of the others
    leave_type_out_known: float  # its intensity fitted on its own pairs: an optimistic bound


@dataclass(frozen=True, slots=True)
class FitResult:
    model: InterferenceModel
    form: Form
    per_gpu: bool  # latent intensities per (GPU model, job type), or one per job type
    errors: FitErrors
    baselines: dict[str, FitErrors]
    intensities: dict[tuple[str, str], float]  # (GPU model or "*", job type) -> intensity
    n_observations: int
    n_pairs: int


def _latent_ids(pairs: GavelPairs, per_gpu: bool) -> dict[tuple[str, str], int]:
    keys = {
        ((o.gpu if per_gpu else "*"), job) for o in pairs.observations for job in (o.job, o.partner)
    }
    return {key: i for i, key in enumerate(sorted(keys))}


def _pair_folds(observations: Sequence[PairObservation], k: int) -> list[int]:
    """Fold of each observation; both jobs of a pair, on every GPU model, share a fold."""
    pairs = sorted({tuple(sorted((o.job, o.partner))) for o in observations})
    random.Random(0).shuffle(pairs)
    fold_of = {pair: i % k for i, pair in enumerate(pairs)}
    return [fold_of[tuple(sorted((o.job, o.partner)))] for o in observations]


def _latent_obs(ids: Mapping[tuple[str, str], int], per_gpu: bool, o: PairObservation) -> _Obs:
    group = o.gpu if per_gpu else "*"
    return ids[group, o.job], ids[group, o.partner], o.speed


class _Predictor(Protocol):
    def __call__(self, o: PairObservation, /) -> float: ...

    def calibrated(self, held_out: Sequence[PairObservation]) -> _Predictor:
        """The same fit, with the intensities it never saw fitted on ``held_out``."""
        ...


@dataclass(frozen=True, slots=True)
class _Baseline:
    by_gpu: Mapping[str, float]
    default: float

    def __call__(self, o: PairObservation, /) -> float:
        return self.by_gpu.get(o.gpu, self.default)

    def calibrated(self, held_out: Sequence[PairObservation]) -> _Baseline:
        return self


def _median_speed(train: Sequence[PairObservation]) -> _Baseline:
    return _Baseline({}, statistics.median(o.speed for o in train))


def _median_speed_per_gpu(train: Sequence[PairObservation]) -> _Baseline:
    gpus = {o.gpu for o in train}
    by_gpu = {g: statistics.median(o.speed for o in train if o.gpu == g) for g in gpus}
    return _Baseline(by_gpu, statistics.median(o.speed for o in train))


BASELINES: dict[str, Callable[[Sequence[PairObservation]], _Baseline]] = {
    "no interference (speed 1)": lambda train: _Baseline({}, 1.0),
    "constant: median speed": _median_speed,
    "constant: median per GPU model": _median_speed_per_gpu,
}


@dataclass(frozen=True, slots=True)
class _LatentPredictor:
    model: InterferenceModel
    ids: Mapping[tuple[str, str], int]
    per_gpu: bool
    table: _Table
    levels: list[int]  # latents the fit never saw sit at their GPU model's median
    unseen: frozenset[int]

    def __call__(self, o: PairObservation, /) -> float:
        job, partner, _ = _latent_obs(self.ids, self.per_gpu, o)
        return self.table.rows[self.levels[job]][self.levels[partner]]

    def calibrated(self, held_out: Sequence[PairObservation]) -> _LatentPredictor:
        obs = (_latent_obs(self.ids, self.per_gpu, o) for o in held_out)
        latents = _index(obs, len(self.levels))
        levels = self.levels.copy()
        for i in sorted(self.unseen):
            if latents[i].as_job or latents[i].as_partner or latents[i].with_itself:
                levels[i] = _best_level(self.table, levels, latents[i])
        return replace(self, levels=levels)


def _latent_fitter(
    form: Form, ids: Mapping[tuple[str, str], int], per_gpu: bool
) -> Callable[[Sequence[PairObservation]], _LatentPredictor]:
    def fit(train: Sequence[PairObservation]) -> _LatentPredictor:
        obs = [_latent_obs(ids, per_gpu, o) for o in train]
        fitted = _fit(form, obs, len(ids))
        seen = {i for job, partner, _ in obs for i in (job, partner)}
        levels = fitted.levels.copy()
        for group in {g for g, _ in ids}:
            members = [i for (g, _), i in ids.items() if g == group]
            typical = statistics.median_low(
                [levels[i] for i in members if i in seen] or [_START_LEVEL]
            )
            for i in members:
                if i not in seen:
                    levels[i] = typical
        unseen = frozenset(ids.values()) - seen
        return _LatentPredictor(fitted.model, ids, per_gpu, fitted.table, levels, unseen)

    return fit


def _abs_error(predict: _Predictor, test: Iterable[PairObservation]) -> float:
    return sum(abs(o.speed - predict(o)) for o in test)


def _evaluate(
    fit: Callable[[Sequence[PairObservation]], _Predictor],
    observations: Sequence[PairObservation],
    folds: int,
    progress: Callable[[str], None],
) -> FitErrors:
    """Errors of ``fit`` in-sample, by k-fold over pairs and leaving each job type out."""
    types = sorted({o.job for o in observations})
    n_fits = 1 + folds + len(types)
    progress(f"fit 1/{n_fits}")
    in_sample = _abs_error(fit(observations), observations) / len(observations)
    fold_of = _pair_folds(observations, folds)
    fold_errors = []
    for k in range(folds):
        progress(f"fit {2 + k}/{n_fits}")
        train = [o for o, f in zip(observations, fold_of, strict=True) if f != k]
        test = [o for o, f in zip(observations, fold_of, strict=True) if f == k]
        fold_errors.append(_abs_error(fit(train), test) / len(test))
    cv = sum(e * fold_of.count(k) for k, e in enumerate(fold_errors)) / len(observations)
    cv_se = statistics.stdev(fold_errors) / math.sqrt(folds)
    unknown = known = 0.0
    n_left_out = 0
    for i, t in enumerate(types):
        progress(f"fit {2 + folds + i}/{n_fits}")
        test = [o for o in observations if t in (o.job, o.partner)]
        predict = fit([o for o in observations if t not in (o.job, o.partner)])
        unknown += _abs_error(predict, test)
        known += _abs_error(predict.calibrated(test), test)
        n_left_out += len(test)
    return FitErrors(in_sample, cv, cv_se, unknown / n_left_out, known / n_left_out)


def fit_pairs(
    pairs: GavelPairs,
    form: Form = CHOSEN_FORM,
    *,
    per_gpu: bool = True,
    folds: int = 5,
    progress: Callable[[str], None] = lambda _: None,
) -> FitResult:
    """Fit ``form`` on measured pairs and measure it and the baselines. Deterministic."""
    obs = pairs.observations
    if not 2 <= folds <= len({frozenset((o.job, o.partner)) for o in obs}):
        raise ValueError(f"cannot split these pairs into {folds} folds")
    ids = _latent_ids(pairs, per_gpu)
    fit = _latent_fitter(form, ids, per_gpu)
    errors = _evaluate(fit, obs, folds, progress)
    full = fit(obs)
    baselines = {name: _evaluate(b, obs, folds, lambda _: None) for name, b in BASELINES.items()}
    intensities = {key: _GRID[full.levels[i]] for key, i in ids.items()}
    return FitResult(
        full.model, form, per_gpu, errors, baselines, intensities, len(obs), pairs.n_pairs
    )


def choose(results: Sequence[FitResult]) -> FitResult:
    """The one-standard-error rule: of the fits whose CV error is within one standard error
    of the best, the one with fewest fitted parameters (then the lowest CV error)."""
    best = min(results, key=lambda r: r.errors.cross_validated)
    limit = best.errors.cross_validated + best.errors.cross_validated_se
    tied = [r for r in results if r.errors.cross_validated <= limit]
    return min(tied, key=lambda r: (len(r.form.free), r.errors.cross_validated))


def fit_gavel(path: str | Path, *, progress: Callable[[str], None] = lambda _: None) -> FitResult:
    """Read Gavel's ``simulation_throughputs.json`` and fit the chosen form on its pairs."""
    return fit_pairs(read_gavel(path), progress=progress)


# ---------------------------------------------------------------------------------------
# Command line: python -m gpugate.sim.interference_fit PATH [--compare]
# ---------------------------------------------------------------------------------------
def pair_totals(pairs: GavelPairs) -> dict[str, list[float]]:
    """Both jobs' speeds summed, per measured pair, by GPU model (> 1: sharing gains)."""
    totals: dict[tuple[str, ...], float] = {}
    for o in pairs.observations:
        key = (o.gpu, *sorted((o.job, o.partner)))
        # A job paired with itself is one observation standing for both jobs.
        totals[key] = totals.get(key, 0.0) + o.speed * (2 if o.job == o.partner else 1)
    return {g: [t for (gpu, *_), t in totals.items() if gpu == g] for g in GAVEL_GPUS}


def _data_lines(pairs: GavelPairs) -> list[str]:
    by_gpu = pair_totals(pairs)
    by_gpu["all"] = [t for totals in by_gpu.values() for t in totals]
    lines = [
        f"{len(pairs.observations)} job speeds in {pairs.n_pairs} measured pairs "
        f"({pairs.n_infeasible} more did not fit in memory together)",
        f"{'GPU':<6}{'pairs':>7}{'median pair total':>19}{'pairs with total < 1':>22}",
    ]
    for gpu, totals in by_gpu.items():
        losing = sum(t < 1 for t in totals) / len(totals)
        lines.append(f"{gpu:<6}{len(totals):>7}{statistics.median(totals):>19.2f}{losing:>22.0%}")
    return lines


def _error_lines(results: Sequence[FitResult], folds: int) -> list[str]:
    def row(label: str, e: FitErrors) -> str:
        return (
            f"{label:<62}{e.in_sample:>10.4f}{e.cross_validated:>10.4f}"
            f"{e.cross_validated_se:>8.4f}{e.leave_type_out:>10.4f}{e.leave_type_out_known:>10.4f}"
        )

    header = f"{'in-sample':>10}{f'{folds}-fold CV':>10}{'(SE)':>8}{'LOTO':>10}{'LOTO*':>10}"
    return [
        f"{'MAE of normalised throughput':<62}{header}",
        *(row(_label(r), r.errors) for r in results),
        *(row(name, errors) for name, errors in results[0].baselines.items()),
        "LOTO: leave one job type out, which gets the median of the others' intensities;",
        "LOTO*: its intensity fitted on its own pairs instead (optimistic: as if known).",
    ]


def _intensity_lines(result: FitResult) -> list[str]:
    gpus = sorted({g for g, _ in result.intensities})
    lines = [f"  {'job type':<34}" + "".join(f"{g:>6}" for g in gpus)]
    for job in sorted({j for _, j in result.intensities}):
        cells = (result.intensities.get((g, job)) for g in gpus)
        lines.append(
            f"  {job:<34}" + "".join(f"{'-':>6}" if u is None else f"{u:>6.2f}" for u in cells)
        )
    return lines


def _label(r: FitResult) -> str:
    return f"({r.form.name}) {r.form.description}, u {'per GPU model' if r.per_gpu else 'shared'}"


def _progress(label: str) -> Callable[[str], None]:
    """Overwrites one line on a terminal; logs get a single line per fitted form."""
    if not sys.stderr.isatty():
        print(f"fitting {label}", file=sys.stderr)
        return lambda _: None
    return lambda step: print(f"\r\033[Kfitting {label}: {step}", end="", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gpugate.sim.interference",
        description="Fit the GPU co-location interference model on Gavel's measured pairs.",
    )
    parser.add_argument("path", help="Gavel's simulation_throughputs.json")
    parser.add_argument(
        "--compare", action="store_true", help="fit every candidate form, both ways (about 90 s)"
    )
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    pairs = read_gavel(args.path)
    runs = [(f, g) for f in FORMS for g in (True, False)] if args.compare else [(CHOSEN_FORM, True)]
    results = [
        fit_pairs(pairs, form, per_gpu=per_gpu, folds=args.folds, progress=_progress(form.name))
        for form, per_gpu in runs
    ]
    if sys.stderr.isatty():
        print(file=sys.stderr)
    best = choose(results)
    print("\n".join(_data_lines(pairs)), end="\n\n")
    print("\n".join(_error_lines(results, args.folds)), end="\n\n")
    if args.compare:
        print("chosen: the fewest fitted parameters within one standard error of the best CV")
    print(f"form {_label(best)}")
    print(f"FITTED = {best.model!r}")
    print("intensities u (grid step 0.02):", *_intensity_lines(best), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
