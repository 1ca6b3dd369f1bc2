"""The learned cost model and the choosers, on synthetic cost functions (no clock)."""

from __future__ import annotations

import json
import math
import random

import pytest

from gpugate.offload.costmodel import (
    LogLinearModel,
    ModelBook,
    cpu_contention,
    features,
    merge,
)
from gpugate.offload.policy import (
    HistoryChooser,
    LearnedChooser,
    Measurement,
    ThresholdChooser,
    compute_key,
)
from tests.unit.offload_fakes import (
    GPU,
    call,
    cpu_cost,
    gpu_cost,
    options,
    teach,
    true_crossover,
)

GPUS = {GPU.name: GPU}


def trained_book(n: int = 200) -> ModelBook:
    book = ModelBook()
    teach(book, "cpu", "", cpu_cost, n, seed=1)
    teach(book, "gpu", GPU.label, gpu_cost, n, seed=2)
    return book


def learned_crossover(book: ModelBook) -> float:
    """Bisect (in log work) where the predicted CPU and GPU times cross."""
    cpu = compute_key("synthetic", "cpu", "float32", "")
    gpu = compute_key("synthetic", "gpu", "float32", GPU.label)
    low, high = 2.0, 9.0
    for _ in range(60):
        mid = (low + high) / 2
        faster_on_gpu = book.predict(gpu, 10**mid).seconds < book.predict(cpu, 10**mid).seconds
        low, high = (low, mid) if faster_on_gpu else (mid, high)
    return 10**low


def test_the_model_learns_where_the_gpu_starts_to_win() -> None:
    book = trained_book()
    assert learned_crossover(book) == pytest.approx(true_crossover(), rel=0.5)


def test_the_learned_chooser_picks_the_faster_device_across_sizes() -> None:
    chooser = LearnedChooser(trained_book(), GPUS, explore=False)
    right = total = 0
    for exponent in [2 + i * 0.1 for i in range(71)]:
        work = 10**exponent
        if 0.5 < work / true_crossover() < 2.0:
            continue  # within 2x of the crossover both are about as fast
        faster = 0 if cpu_cost(work) < gpu_cost(work) else 1
        right += chooser.choose(call(work), options()) == faster
        total += 1
    assert right == total


def test_an_untrained_model_does_not_know_the_crossover() -> None:
    # the test above is not passing by accident: the prior alone gets it wrong
    book = ModelBook()
    assert not 0.5 < learned_crossover(book) / true_crossover() < 2.0


def test_load_on_the_cpu_moves_the_work_to_the_gpu() -> None:
    """A parallel CPU variant slows down by (1 + R/C) beside R runnable threads on C
    cores; taught so, the model sends a call the idle CPU would win to the GPU."""
    book = ModelBook()
    rng_load = [0.0, 0.0, 2.0, 4.0]  # runnable others per core, mostly idle
    teach(
        book,
        "cpu",
        "",
        cpu_cost,
        300,
        seed=3,
        contention=lambda rng: cpu_contention(rng.choice(rng_load) * 2, 2),
        slowdown=math.exp,
    )
    teach(book, "gpu", GPU.label, gpu_cost, 200, seed=4)
    chooser = LearnedChooser(book, GPUS, explore=False)
    work = true_crossover() / 2.5  # the idle CPU is about 1.6x faster here
    assert cpu_cost(work) < gpu_cost(work)
    assert chooser.choose(call(work), options(cpu_z=0.0)) == 0
    loaded = cpu_contention(2 * 2, 2)  # two runnable threads per core: 3x slower
    assert chooser.choose(call(work), options(cpu_z=loaded)) == 1


def test_without_ever_seeing_load_the_prior_still_says_load_slows_down() -> None:
    book = trained_book()
    key = compute_key("synthetic", "cpu", "float32", "")
    idle = book.predict(key, 1e6, 0.0).seconds
    busy = book.predict(key, 1e6, cpu_contention(4, 2)).seconds
    assert busy > 2 * idle


def test_outside_the_sizes_seen_the_prediction_grows_at_most_as_work_to_the_1_5() -> None:
    model = LogLinearModel()
    rng = random.Random(5)
    for _ in range(50):  # a strongly bent curve, seen only between 1e3 and 1e5
        work = 10 ** rng.uniform(3, 5)
        model.update(features(work, 0.0), 1e-12 * work**2.2)
    at_edge = math.exp(model.predict(features(1e5, 0.0)).log_mean)
    far = math.exp(model.predict(features(1e8, 0.0)).log_mean)
    assert far <= at_edge * 1e3**1.5 * 1.01  # not the quadratic's runaway
    assert far > at_edge * 1e3  # but still more than proportional, as seen


def test_uncertainty_shrinks_with_data_and_grows_away_from_it() -> None:
    model = LogLinearModel()
    before = model.predict(features(1e6, 0.0)).log_var
    rng = random.Random(6)
    for _ in range(100):
        work = 10 ** rng.uniform(5, 7)
        model.update(features(work, 0.0), cpu_cost(work) * math.exp(rng.gauss(0, 0.05)))
    inside = model.predict(features(1e6, 0.0)).log_var
    outside = model.predict(features(1e10, 0.0)).log_var
    assert inside < before / 100
    assert outside > 10 * inside


def test_one_wild_measurement_barely_moves_a_confident_model() -> None:
    model = LogLinearModel()
    for i in range(200):
        work = 10 ** (3 + (i % 40) / 10)
        model.update(features(work, 0.0), cpu_cost(work))
    before = model.predict(features(1e5, 0.0)).seconds
    model.update(features(1e5, 0.0), 50 * cpu_cost(1e5))  # a page-fault storm
    assert model.predict(features(1e5, 0.0)).seconds == pytest.approx(before, rel=0.05)


def test_exploration_tries_an_unknown_variant_and_stops_once_it_is_known() -> None:
    book = ModelBook()
    teach(book, "cpu", "", cpu_cost, 100, seed=7)
    chooser = LearnedChooser(book, GPUS, explore=True, rng=random.Random(8))
    work = 1e4  # the CPU is 5x faster here
    first = [chooser.choose(call(work), options()) for _ in range(50)]
    assert 1 in first  # the never-run GPU variant was tried
    teach(book, "gpu", GPU.label, gpu_cost, 100, seed=9)
    later = [chooser.choose(call(work), options()) for _ in range(500)]
    assert later.count(1) <= 2  # a variant known to be 5x slower is left alone


def test_the_model_survives_a_round_trip_through_json() -> None:
    book = trained_book(50)
    again = ModelBook.from_dict(json.loads(json.dumps(book.to_dict())))
    for key in book.models:
        for work in (1e2, 1e5, 1e9):
            a, b = book.predict(key, work, 0.3), again.predict(key, work, 0.3)
            assert (a.log_mean, a.log_var, a.observations) == pytest.approx(
                (b.log_mean, b.log_var, b.observations)
            )


@pytest.mark.parametrize(
    "broken",
    [
        {"gram": [[0.0]], "moment": [0.0] * 5},
        {"gram": [[math.nan] * 5] * 5, "moment": [0.0] * 5},
    ],
)
def test_a_malformed_model_is_refused(broken: dict[str, object]) -> None:
    data = LogLinearModel().to_dict() | broken
    with pytest.raises(ValueError):
        LogLinearModel.from_dict(data)


# ------------------------------------------------------------------ lasting changes
def runs_until_within(book: ModelBook, factor: float, rng: random.Random) -> int:
    """Runs at ``factor`` times the old cost until the model predicts within 20%."""
    for n in range(1, 3000):
        work = 10 ** rng.uniform(4, 8)
        book.observe(KEY, work, 0.0, factor * 2e-9 * work * math.exp(rng.gauss(0, 0.1)))
        errors = [
            abs(book.predict(KEY, w).seconds / (factor * 2e-9 * w) - 1) for w in (1e5, 1e6, 1e7)
        ]
        if max(errors) < 0.2:
            return n
    return 3000


@pytest.mark.parametrize("factor", [3.0, 1 / 3])
def test_a_lasting_change_is_followed_in_a_few_dozen_runs(factor: float) -> None:
    rng = random.Random(4)
    book = ModelBook()
    assert runs_until_within(book, 1.0, rng) < 50
    for _ in range(500):  # a well-settled model
        work = 10 ** rng.uniform(4, 8)
        book.observe(KEY, work, 0.0, 2e-9 * work * math.exp(rng.gauss(0, 0.1)))
    assert runs_until_within(book, factor, rng) < 60  # forgetting alone: about 700
    assert book.models[KEY].shifts == 1


def test_noise_and_wild_runs_are_not_taken_for_a_change() -> None:
    rng = random.Random(5)
    book = ModelBook()
    for _ in range(10_000):
        work = 10 ** rng.uniform(3, 8)
        noise = 0.4 if work < 1e5 else 0.03  # small calls are noisier
        seconds = 2e-9 * work * math.exp(rng.gauss(0, noise))
        seconds *= 10.0 if rng.random() < 0.02 else 1.0  # a page-fault storm now and then
        shifted = book.observe(KEY, work, 0.0, seconds)
        assert not shifted
    assert book.predict(KEY, 1e6).seconds == pytest.approx(2e-3, rel=0.05)


def test_a_burst_of_slow_runs_is_not_taken_for_a_change() -> None:
    """Beside busy processes, a BLAS call can be 100x slower several calls in a row."""
    rng = random.Random(6)
    book = feed_new([10 ** rng.uniform(4, 8) for _ in range(300)])
    for _ in range(10):
        work = 10 ** rng.uniform(4, 8)
        book.observe(KEY, work, 0.0, rng.uniform(5, 100) * 2e-9 * work**1.1)
    assert book.models[KEY].shifts == 0
    assert book.predict(KEY, 1e6).seconds < 1.5 * 2e-9 * 1e6**1.1


# ---------------------------------------------- several processes, one model file
KEY = compute_key("synthetic", "cpu", "float32", "")


def feed(book: ModelBook, works: list[float], key: str = KEY) -> None:
    """Runs on an exact power law (nothing is clipped as an outlier, so the order in
    which runs arrive is all that differs between one model and merged ones)."""
    for work in works:
        book.observe(key, work, 0.0, 2e-9 * work**1.1)


def save(book: ModelBook, file: dict[str, object]) -> dict[str, object]:
    """What a process's save does to the file (as JSON), and to the process's book."""
    at = book.sync_point()
    merged = merge(ModelBook.from_dict(file), at)
    book.rebase(merged, at)
    return json.loads(json.dumps({key: m.to_dict() for key, m in merged.items()}))


def assert_same_models(a: ModelBook, b: ModelBook, predictions: bool = True) -> None:
    """Same statistics; and the same predictions, unless ``predictions`` is False (the
    range of sizes a model saw may be wider than its runs: see ``ModelBook.rebase``)."""
    assert a.models.keys() == b.models.keys()
    for key, model in a.models.items():
        other = b.models[key]
        assert model.observations == other.observations
        assert model.stats() == pytest.approx(other.stats(), rel=1e-9, abs=1e-9)
        for work in (1e3, 1e6, 1e9) if predictions else ():
            assert a.predict(key, work).log_mean == pytest.approx(b.predict(key, work).log_mean)


def test_two_processes_saving_into_one_file_keep_both_their_runs() -> None:
    first_runs, second_runs = [1e4, 1e5, 1e6] * 10, [1e7, 3e7, 1e8] * 10
    file = save(feed_new([1e5] * 5), {})  # what a calibration left
    one, two = ModelBook.from_dict(file), ModelBook.from_dict(file)
    feed(one, first_runs)
    feed(two, second_runs)
    file = save(one, file)
    file = save(two, file)  # last, but it does not overwrite the first's runs
    alone = feed_new([1e5] * 5 + first_runs + second_runs)  # one process saw everything
    assert_same_models(ModelBook.from_dict(file), alone)
    assert_same_models(two, alone)  # and the saver learned the other's runs
    file = save(one, file)  # nothing new from the first: the file stays
    assert_same_models(ModelBook.from_dict(file), alone)
    assert_same_models(one, alone)


def feed_new(works: list[float]) -> ModelBook:
    book = ModelBook()
    feed(book, works)
    return book


def test_runs_learned_while_a_save_is_written_go_in_the_next_save() -> None:
    book = feed_new([1e5, 1e6] * 5)
    at = book.sync_point()
    written = merge(ModelBook(), at)
    feed(book, [1e7] * 4)  # while the file was being written
    book.rebase(written, at)
    assert_same_models(book, feed_new([1e5, 1e6] * 5 + [1e7] * 4))
    file = save(book, {key: m.to_dict() for key, m in written.items()})
    assert_same_models(ModelBook.from_dict(file), feed_new([1e5, 1e6] * 5 + [1e7] * 4))


def test_a_model_only_another_process_learned_is_taken_up_at_the_next_save() -> None:
    other_key = compute_key("synthetic", "cpu:numba", "float32", "")
    mine, theirs = ModelBook(), ModelBook()
    feed(mine, [1e5] * 3)
    feed(theirs, [1e6] * 4, key=other_key)
    file = save(mine, save(theirs, {}))
    assert mine.models[other_key].observations == 4
    assert_same_models(ModelBook.from_dict(file), mine)


def test_a_change_one_process_saw_is_followed_in_the_file() -> None:
    file = save(feed_new([1e5, 1e6, 1e7] * 100), {})
    seen_it, other = ModelBook.from_dict(file), ModelBook.from_dict(file)
    for work in [1e5, 1e6, 1e7] * 20:  # three times slower from now on
        seen_it.observe(KEY, work, 0.0, 3 * 2e-9 * work**1.1)
    assert seen_it.models[KEY].shifts == 1
    file = save(seen_it, file)
    assert_same_models(ModelBook.from_dict(file), seen_it)  # the old runs forgotten there too
    save(other, file)
    assert other.predict(KEY, 1e6).seconds == pytest.approx(3 * 2e-9 * 1e6**1.1, rel=0.05)


@pytest.mark.parametrize("seed", range(40))
def test_any_interleaving_of_saves_equals_one_model_fed_the_files_runs_in_order(
    seed: int,
) -> None:
    """Three processes learning three keys, saving into one file: with runs learned while
    a save is written, writes that fail, shifts and resets. The file must hold what one
    model would, fed every saved event (runs and shifts) in the order the file got them.
    (Each shift counts: ``move_once``, which spares a file a second move to the same
    level, is tested apart.)"""
    rng = random.Random(seed)
    keys = [compute_key(f"k{i}", "cpu", "float32", "") for i in range(3)]
    Event = tuple[str, str, float]  # key, "run" or "shift", work or the shift's size
    file: dict[str, object] = {}
    in_file: list[Event] = []
    books = [ModelBook() for _ in range(3)]
    unsaved: list[list[Event]] = [[] for _ in books]

    def learn(i: int) -> None:
        key = rng.choice(keys)
        model = books[i].models.get(key)
        if model is not None and rng.random() < 0.2:
            by = rng.uniform(-0.01, 0.01)  # small: no run is clipped or streaks after it
            model.shift(by, keep=0.5)
            unsaved[i].append((key, "shift", by))
        else:
            work = 10 ** rng.uniform(3, 9)
            feed(books[i], [work], key)
            unsaved[i].append((key, "run", work))

    for _ in range(60):
        i, op = rng.randrange(3), rng.random()
        if op < 0.5:
            learn(i)
        elif op < 0.95:
            at_save = books[i].sync_point()
            saving, unsaved[i] = unsaved[i], []
            merged = merge(ModelBook.from_dict(file), at_save, move_once=False)
            for _ in range(rng.randrange(3)):
                learn(i)  # while the file is written
            if rng.random() < 0.2:  # the write failed: all still unsaved, in order
                unsaved[i] = saving + unsaved[i]
                continue
            file = json.loads(json.dumps({key: m.to_dict() for key, m in merged.items()}))
            books[i].rebase(merged, at_save)
            in_file += saving
        else:  # gpugate offload reset
            file, in_file = {}, []

    alone = ModelBook()
    for key, what, value in in_file:
        if what == "run":
            feed(alone, [value], key)
        elif key in alone.models:
            alone.models[key].shift(value, keep=0.5)
    assert_same_models(ModelBook.from_dict(file), alone, predictions=False)


def test_a_change_every_process_saw_moves_the_file_once() -> None:
    """Each process learning into the file sees the machine slow down 10x and follows it;
    each save must not move the file again (two moves: 24 ms predicted for 10 ms)."""
    file = save(feed_new([1e6] * 300), {})
    books = [ModelBook.from_dict(file) for _ in range(3)]
    for book in books:
        for _ in range(17):
            book.observe(KEY, 1e6, 0.0, 10 * 2e-9 * 1e6**1.1)
        assert book.models[KEY].shifts == 1
    for book in books:
        file = save(book, file)
    truth = 10 * 2e-9 * 1e6**1.1
    assert ModelBook.from_dict(file).predict(KEY, 1e6).seconds == pytest.approx(truth, rel=0.2)
    assert books[0].predict(KEY, 1e6).seconds == pytest.approx(truth, rel=0.2)


def test_after_a_reset_a_running_process_saves_only_what_it_learned_since() -> None:
    book = ModelBook.from_dict(save(feed_new([1e5] * 20), {}))
    feed(book, [1e6] * 3)
    file = save(book, {})  # the file was deleted (gpugate offload reset)
    assert ModelBook.from_dict(file).models[KEY].observations == 3


# --------------------------------------------------------------------------- baselines
def measurements(works: list[float]) -> list[Measurement]:
    made = []
    for work in works:
        made.append(Measurement("synthetic", "cpu", "", "float32", work, 0.0, cpu_cost(work)))
        made.append(Measurement("synthetic", "gpu", "x", "float32", work, 0.0, gpu_cost(work)))
    return made


def test_the_threshold_is_fitted_where_the_measurements_cross() -> None:
    chooser = ThresholdChooser.fit(measurements([10**e for e in range(2, 10)]))
    threshold, below, above = chooser.fitted["synthetic", "float32"]
    assert (below, above) == ("cpu", "gpu")
    assert 1e4 < threshold <= 1e5  # the true crossover is 7.9e4
    assert chooser.choose(call(1e3), options()) == 0
    assert chooser.choose(call(1e7), options()) == 1


def test_the_threshold_ignores_load() -> None:
    chooser = ThresholdChooser.fit(measurements([10**e for e in range(2, 10)]))
    assert chooser.choose(call(2e4), options(cpu_z=5.0)) == 0  # what MKL would do


def test_history_uses_exact_sizes_then_a_power_law() -> None:
    chooser = HistoryChooser(measurements([1e3, 1e4, 1e6, 1e8]))
    assert chooser.expected_s(call(1e4), "gpu") == pytest.approx(gpu_cost(1e4))
    interpolated = chooser.expected_s(call(1e7), "cpu")
    assert interpolated is not None and interpolated == pytest.approx(cpu_cost(1e7), rel=0.3)
    assert chooser.choose(call(1e8), options()) == 1


def test_history_calibrates_a_variant_it_has_no_model_for() -> None:
    only_cpu = [m for m in measurements([1e3, 1e4]) if m.variant == "cpu"]
    assert HistoryChooser(only_cpu).choose(call(1e3), options()) == 1
