"""The co-location interference model: its invariants, its fitted numbers, and its fit."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpugate.sim.interference import FITTED, NONE, InterferenceModel
from gpugate.sim.interference_fit import (
    FORMS,
    FitErrors,
    FitResult,
    choose,
    fit_gavel,
    main,
    parse_gavel,
)

models = st.builds(
    InterferenceModel,
    alpha=st.floats(0.0, 4.0),
    sigma=st.floats(0.0, 0.98),
    beta=st.floats(0.0, 6.0),
    kappa=st.floats(0.0, 0.9),
)
models_and_fitted = st.one_of(st.just(FITTED), models)
demand = st.floats(0.0, 1.0)
demands = st.lists(demand, min_size=1, max_size=6)


# ---------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------
@given(models_and_fitted, demand)
def test_a_job_alone_runs_at_full_speed(model: InterferenceModel, u: float) -> None:
    assert model.speeds([u]) == [1.0]


def test_no_jobs_no_speeds() -> None:
    assert FITTED.speeds([]) == []


@given(models_and_fitted, demands)
def test_speeds_are_in_zero_one(model: InterferenceModel, us: list[float]) -> None:
    speeds = model.speeds(us)
    assert len(speeds) == len(us)
    assert all(0.0 < s <= 1.0 for s in speeds)


@given(models_and_fitted, demands, demand)
def test_a_new_job_slows_no_one_down(model: InterferenceModel, us: list[float], new: float) -> None:
    before = model.speeds(us)
    after = model.speeds([*us, new])
    assert all(a <= b + 1e-12 for a, b in zip(after, before, strict=False))


@given(models_and_fitted, st.lists(demand, min_size=2, max_size=6), st.data())
def test_a_busier_partner_speeds_no_one_up(
    model: InterferenceModel, us: list[float], data: st.DataObject
) -> None:
    partner = data.draw(st.integers(0, len(us) - 1))
    busier = us.copy()
    busier[partner] = data.draw(st.floats(us[partner], 1.0))
    before, after = model.speeds(us), model.speeds(busier)
    assert all(after[i] <= before[i] + 1e-12 for i in range(len(us)) if i != partner)


@given(models_and_fitted, demands, st.randoms(use_true_random=False))
def test_order_of_jobs_does_not_matter(
    model: InterferenceModel, us: list[float], rng: random.Random
) -> None:
    order = list(range(len(us)))
    rng.shuffle(order)
    shuffled = model.speeds([us[i] for i in order])
    speeds = model.speeds(us)
    assert shuffled == pytest.approx([speeds[i] for i in order], rel=1e-12)


@given(demands)
def test_none_never_slows_anything(us: list[float]) -> None:
    assert NONE.speeds(us) == [1.0] * len(us)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_demands_outside_zero_one_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="not in"):
        FITTED.speeds([0.5, bad])


@pytest.mark.parametrize(
    "params", [{"alpha": -1.0}, {"sigma": 1.0}, {"beta": -0.5}, {"kappa": 1.0}]
)
def test_parameters_out_of_range_are_refused(params: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="out of range"):
        InterferenceModel(**params)


# ---------------------------------------------------------------------------------------
# FITTED, by hand: speed_i = 1 / (1 + P_i / (1 - sigma + sigma * u_i)), sigma = 0.714
# ---------------------------------------------------------------------------------------
def test_fitted_parameters() -> None:
    assert (FITTED.alpha, FITTED.sigma, FITTED.beta, FITTED.kappa) == (1.0, 0.714, 0.0, 0.0)


def test_two_saturating_jobs_split_the_gpu() -> None:
    # 1 / (1 + 1 / (0.286 + 0.714)) = 1 / 2
    assert FITTED.speeds([1.0, 1.0]) == pytest.approx([0.5, 0.5])


def test_a_light_job_suffers_more_than_its_heavy_partner() -> None:
    # light: 1 / (1 + 0.6 / (0.286 + 0.714 * 0.2)) = 1 / (1 + 0.6 / 0.4288) = 0.41680
    # heavy: 1 / (1 + 0.2 / (0.286 + 0.714 * 0.6)) = 1 / (1 + 0.2 / 0.7144) = 0.78127
    assert FITTED.speeds([0.2, 0.6]) == pytest.approx([0.41680, 0.78127], abs=1e-5)


def test_three_half_busy_jobs() -> None:
    # each: 1 / (1 + 1.0 / (0.286 + 0.357)) = 0.643 / 1.643 = 0.39136
    assert FITTED.speeds([0.5, 0.5, 0.5]) == pytest.approx([0.39136] * 3, abs=1e-5)


# ---------------------------------------------------------------------------------------
# Parsing and fitting Gavel's format, on synthetic data from a known model
# ---------------------------------------------------------------------------------------
TRUE = InterferenceModel(alpha=1.0, sigma=0.6)
JOBS = ("ResNet-18 (batch size 32)", "LM (batch size 20)", "A3C", "CycleGAN", "Rec", "T1", "T2")
# Multiples of the fit's 0.02 grid, so that the truth is reachable exactly.
RANGES = {"k80": (20, 50), "p100": (10, 40), "v100": (2, 30)}


def _true_intensities() -> dict[tuple[str, str], float]:
    rng = random.Random(7)
    return {(gpu, job): rng.randint(*RANGES[gpu]) / 50 for gpu in RANGES for job in JOBS}


def _gavel_json(model: InterferenceModel, u: dict[tuple[str, str], float]) -> dict[str, Any]:
    """Gavel's layout: {gpu: {"('job', scale)": {"null": solo, "('other', 1)": [me, them]}}}."""
    raw: dict[str, Any] = {}
    for gpu in RANGES:
        solo = {job: 1.0 + i for i, job in enumerate(JOBS)}  # steps/s: only ratios matter
        table: dict[str, Any] = {}
        for a in JOBS:
            entry: dict[str, Any] = {"null": solo[a]}
            for b in JOBS:
                mine, theirs = model.speeds([u[gpu, a], u[gpu, b]])
                entry[f"('{b}', 1)"] = [mine * solo[a], theirs * solo[b]]
                entry[f"('{b}', 2)"] = [0.1, 0.1]  # multi-GPU pairs are not used
            table[f"('{a}', 1)"] = entry
            table[f"('{a}', 4)"] = {"null": 4 * solo[a]}
        raw[gpu] = table
    raw["k80"][f"('{JOBS[0]}', 1)"][f"('{JOBS[1]}', 1)"] = [0.0, 0.0]  # did not fit in memory
    raw["k80"][f"('{JOBS[1]}', 1)"][f"('{JOBS[0]}', 1)"] = [0.0, 0.0]
    raw["v100_unconsolidated"] = {"('A3C', 1)": {"null": 1.0}}
    return raw


@pytest.fixture(scope="module")
def gavel_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gavel") / "simulation_throughputs.json"
    path.write_text(json.dumps(_gavel_json(TRUE, _true_intensities())))
    return path


@pytest.fixture(scope="module")
def fitted(gavel_file: Path) -> FitResult:
    return fit_gavel(gavel_file)


def test_parse_keeps_single_gpu_pairs_that_ran(gavel_file: Path) -> None:
    pairs = parse_gavel(json.loads(gavel_file.read_text()))
    n_pairs = len(JOBS) * (len(JOBS) + 1) // 2  # unordered, a job with itself included
    assert (pairs.n_pairs, pairs.n_infeasible) == (3 * n_pairs - 1, 1)
    assert len(pairs.observations) == 3 * len(JOBS) ** 2 - 2
    a3c_alone = [o for o in pairs.observations if o.job == o.partner == "A3C"]
    assert [o.gpu for o in a3c_alone] == ["k80", "p100", "v100"]


def test_fit_recovers_the_model_that_made_the_data(fitted: FitResult) -> None:
    assert fitted.model.alpha == 1.0
    assert fitted.model.sigma == pytest.approx(TRUE.sigma, abs=0.01)
    assert fitted.errors.in_sample < 0.002
    assert fitted.errors.cross_validated < 0.002


def test_fit_recovers_the_intensities(fitted: FitResult) -> None:
    truth = _true_intensities()
    assert fitted.intensities.keys() == truth.keys()
    assert max(abs(fitted.intensities[k] - truth[k]) for k in truth) <= 0.02  # one grid step


def test_fit_beats_the_baselines(fitted: FitResult) -> None:
    best_baseline = min(b.cross_validated for b in fitted.baselines.values())
    assert fitted.errors.cross_validated < best_baseline / 3
    assert fitted.errors.leave_type_out_known <= fitted.errors.leave_type_out + 1e-12


def test_fit_is_deterministic(gavel_file: Path, fitted: FitResult) -> None:
    assert fit_gavel(gavel_file) == fitted


def _result(form_index: int, cv: float, se: float) -> FitResult:
    errors = FitErrors(cv, cv, se, cv, cv)
    return FitResult(NONE, FORMS[form_index], True, errors, {}, {}, 1, 1)


def test_choose_prefers_fewer_parameters_within_one_standard_error() -> None:
    two_free, one_free = _result(1, 0.100, 0.002), _result(0, 0.101, 0.002)
    assert choose([two_free, one_free]) is one_free
    assert choose([two_free, _result(0, 0.103, 0.002)]) is two_free


def test_main_prints_the_errors_and_the_model(
    gavel_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(gavel_file)]) == 0
    out = capsys.readouterr().out
    assert "constant: median speed" in out
    assert "FITTED = InterferenceModel(alpha=1.0, sigma=" in out
