"""The offload runtime end to end on the CPU and a simulated GPU: data movement, where
results go, queues, learning, persistence, explanations, and life without a GPU."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpugate.offload import Runtime, SimulatedGpu, task
from gpugate.offload.devices import SimulatedGpuArray, find_cuda_devices
from gpugate.offload.policy import compute_key
from gpugate.offload.state import GpuState, SystemState, idle_state
from gpugate.offload.store import ModelStore
from gpugate.offload.task import OffloadTask
from gpugate.units import MiB


def make_task(gpu_seen: list[type] | None = None) -> OffloadTask:
    @task(kind="scale", work=lambda x: float(x.size))
    def scale(x: np.ndarray) -> np.ndarray:
        return x * 2

    @scale.gpu
    def _(x: Any) -> Any:
        if gpu_seen is not None:
            gpu_seen.append(type(x))
        return x * 2

    return scale


@pytest.fixture
def gpu() -> SimulatedGpu:
    return SimulatedGpu(index=0, link_bytes_per_s=1e12, link_latency_s=0.0)


@pytest.fixture
def runtime(gpu: SimulatedGpu) -> Iterator[Runtime]:
    rt = Runtime(gpus=[gpu], state=idle_state(2), store=None, explore=False)
    yield rt
    rt.close()


def test_a_gpu_variant_gets_device_arrays_and_the_caller_gets_numpy_back(
    gpu: SimulatedGpu,
) -> None:
    seen: list[type] = []
    scale = make_task(seen)
    rt = Runtime(gpus=[gpu], state=idle_state(2), store=None, policy="gpu")
    x = np.arange(6.0)
    result = rt.run(scale, (x,), {})
    rt.close()
    assert seen == [SimulatedGpuArray]
    assert type(result) is np.ndarray and result.tolist() == (x * 2).tolist()


def test_a_list_of_arrays_is_moved_item_by_item_and_counted(gpu: SimulatedGpu) -> None:
    seen: list[list[type]] = []

    @task(kind="stack")
    def stack(frames: list[np.ndarray], scale: float) -> np.ndarray:
        return np.stack(frames) * scale

    @stack.gpu
    def _(frames: list[Any], scale: float) -> Any:
        seen.append([type(f) for f in frames])
        return np.stack(frames).view(SimulatedGpuArray) * scale

    frames = [np.full(100, float(i)) for i in range(3)]
    rt = Runtime(gpus=[gpu], state=idle_state(2), store=None, policy="gpu")
    call = stack.describe((frames, 2.0), {}, [gpu])
    assert (call.in_bytes, call.work) == (3 * 800, 300.0)
    result = rt.run(stack, (frames, 2.0), {})
    ignored = stack.describe(([1.0] * 10, 2.0), {}, [gpu])  # numbers, not arrays
    rt.close()
    assert seen == [[SimulatedGpuArray] * 3]
    assert type(result) is np.ndarray and result.tolist() == (np.stack(frames) * 2).tolist()
    assert ignored.in_bytes == 0


def test_data_already_on_the_gpu_stays_there_and_costs_no_transfer(
    runtime: Runtime, gpu: SimulatedGpu
) -> None:
    scale = make_task()
    on_gpu = gpu.to_device(np.ones(1000))
    explanation = runtime.explain(scale, (on_gpu,), {})
    by_device = {o.device: o for o in explanation.options}
    assert by_device["sim-gpu:0"].transfer_s == 0
    assert by_device["cpu"].transfer_s > 0  # down to the host and the result back up
    runtime.chooser = runtime.make_chooser("cpu")
    result = runtime.run(scale, (on_gpu,), {})
    assert gpu.holds(result)  # computed on the CPU, returned to where the input lived


def test_transfers_are_measured_and_learned(runtime: Runtime) -> None:
    scale = make_task()
    runtime.chooser = runtime.make_chooser("gpu")
    for _ in range(3):  # the first transfers of a link are its warm-up
        runtime.run(scale, (np.ones(1 << 16),), {})
    keys = set(runtime.book.models)
    assert "transfer/h2d@Simulated GPU" in keys and "transfer/d2h@Simulated GPU" in keys


def test_the_first_run_of_a_variant_is_not_learned_from(runtime: Runtime) -> None:
    scale = make_task()
    runtime.trace = []
    key = compute_key("scale", "cpu", "float64", "")
    runtime.chooser = runtime.make_chooser("cpu")
    runtime.run(scale, (np.ones(10),), {})
    assert key not in runtime.book.models  # JIT compilation, cold caches
    runtime.run(scale, (np.ones(10),), {})
    assert runtime.book.models[key].observations == 1
    assert [r.learned for r in runtime.trace] == [False, True]


def test_a_call_too_big_for_the_free_gpu_memory_runs_on_the_cpu(gpu: SimulatedGpu) -> None:
    state = SystemState(2, 0.0, (GpuState(0, str(gpu.uuid), "sim", 0.0, 1 * MiB),), "test")
    rt = Runtime(gpus=[gpu], state=state, store=None, policy="always-gpu")
    scale = make_task()
    big = np.ones(1 << 20)  # 8 MiB in, 8 MiB out
    explanation = rt.explain(scale, (big,), {})
    gpu_option = next(o for o in explanation.options if o.device == "sim-gpu:0")
    assert not gpu_option.feasible and "free" in gpu_option.why_not
    rt.trace = []
    rt.run(scale, (big,), {})
    rt.close()
    assert rt.trace[0].device == "cpu"


def test_without_a_gpu_everything_runs_on_the_cpu_and_explain_says_why() -> None:
    rt = Runtime(gpus=[], state=idle_state(2), store=None, policy="always-gpu")
    scale = make_task()
    assert rt.run(scale, (np.ones(3),), {}).tolist() == [2.0, 2.0, 2.0]
    text = str(rt.explain(scale, (np.ones(3),), {}))
    rt.close()
    assert "unavailable: GPU variants" in text
    assert "sim-gpu" not in text


def test_a_cpu_only_job_sees_no_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    devices, why = find_cuda_devices()
    assert devices == [] and "CPU-only" in why


def test_without_cupy_the_reason_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(__import__("sys").modules, "cupy", None)  # import fails
    devices, why = find_cuda_devices()
    assert devices == [] and "offload-cuda" in why


def test_a_busy_gpu_sends_the_call_to_the_cpu(gpu: SimulatedGpu) -> None:
    """Known: 1 ms on the idle GPU, 1.5 ms on the CPU. Others keep the GPU 90% busy."""
    scale = make_task()
    choices = []
    for util in (0.0, 90.0):
        state = SystemState(2, 0.0, (GpuState(0, str(gpu.uuid), "sim", util, 10 * MiB),), "x")
        rt = Runtime(gpus=[gpu], state=state, store=None, explore=False)
        for variant, label, seconds in (("cpu", "", 0.0015), ("gpu", "Simulated GPU", 0.001)):
            for _ in range(5):
                key = compute_key("scale", variant, "float64", label)
                rt.book.observe(key, 1e4, 0.0, seconds)
        choices.append(rt.explain(scale, (np.ones(10_000),), {}).choice.variant)
        rt.close()
    assert choices == ["gpu", "cpu"]


# ------------------------------------------------------------------------------ queues
def slow_task(active: list[int], peak: list[int], lock: threading.Lock) -> OffloadTask:
    """Both variants take 40 ms and record how many run at once."""

    def body(x: Any) -> Any:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.04)
        with lock:
            active[0] -= 1
        return x

    slow = task(body, kind="slow", work=lambda x: 1e6)
    slow.gpu(body)
    return slow


def test_submitted_tasks_keep_the_cpu_and_the_gpu_busy_at_once(runtime: Runtime) -> None:
    active, peak, lock = [0], [0], threading.Lock()
    slow = slow_task(active, peak, lock)
    for variant, label in (("cpu", ""), ("gpu", "Simulated GPU")):
        for _ in range(5):  # both known to take 40 ms
            runtime.book.observe(compute_key("slow", variant, "float64", label), 1e6, 0.0, 0.04)
    runtime.trace = []
    futures = [runtime.submit(slow, (np.ones(4),), {}) for _ in range(8)]
    results = [f.result(timeout=30) for f in futures]
    assert all(r.tolist() == [1.0] * 4 for r in results)
    devices = [r.device for r in runtime.trace]
    assert devices.count("cpu") >= 2 and devices.count("sim-gpu:0") >= 2
    assert peak[0] == 2  # one at a time per device, both devices at once


def test_a_failing_variant_fails_its_future_and_the_queue_goes_on(runtime: Runtime) -> None:
    def boom(x: Any) -> Any:
        raise RuntimeError("kernel failed")

    bad = task(boom, kind="bad")
    future = runtime.submit(bad, (np.ones(2),), {})
    with pytest.raises(RuntimeError, match="kernel failed"):
        future.result(timeout=10)
    assert runtime.submit(make_task(), (np.ones(2),), {}).result(timeout=10).tolist() == [2, 2]


# --------------------------------------------------------------------------- explain
def test_explain_shows_every_option_the_state_and_the_choice(runtime: Runtime) -> None:
    scale = make_task()
    for variant, label, seconds in (("cpu", "", 0.004), ("gpu", "Simulated GPU", 0.001)):
        for _ in range(5):
            runtime.book.observe(compute_key("scale", variant, "float64", label), 1e5, 0.0, seconds)
    explanation = runtime.explain(scale, (np.ones(100_000),), {})
    text = str(explanation)
    assert "->gpu" in text.replace(" ", "") and "choice: gpu on sim-gpu:0" in text
    assert "CPU: 2 cores" in text
    data = json.loads(json.dumps(explanation.to_dict()))
    assert data["choice"] == {"variant": "gpu", "device": "sim-gpu:0"}
    assert {o["variant"] for o in data["options"]} == {"cpu", "gpu"}
    cpu = next(o for o in data["options"] if o["variant"] == "cpu")
    assert cpu["compute_s"] == pytest.approx(0.004, rel=0.2)


def test_explain_runs_nothing(runtime: Runtime) -> None:
    calls: list[int] = []
    counted = task(lambda x: calls.append(1), kind="counted")
    runtime.explain(counted, (np.ones(1),), {})
    assert calls == []


# ----------------------------------------------------------------------- persistence
def test_what_was_learned_is_saved_and_loaded(tmp_path: Path, gpu: SimulatedGpu) -> None:
    store = ModelStore(tmp_path / "model.json", "test machine")
    scale = make_task()
    rt = Runtime(gpus=[gpu], state=idle_state(2), store=store, policy="cpu")
    for _ in range(4):
        rt.run(scale, (np.ones(50),), {})
    rt.close()
    again = Runtime(gpus=[gpu], state=idle_state(2), store=store)
    key = compute_key("scale", "cpu", "float64", "")
    assert again.book.models[key].observations == 3
    assert len(again.history) == 3 and again.history[0].variant == "cpu"
    again.close()


def test_two_runtimes_learning_into_one_file_both_count(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    first = Runtime(gpus=[], state=idle_state(2), store=ModelStore(path, "m"), policy="cpu")
    second = Runtime(gpus=[], state=idle_state(2), store=ModelStore(path, "m"), policy="cpu")
    for _ in range(4):
        first.run(make_task(), (np.ones(50),), {})
    for _ in range(6):
        second.run(make_task(), (np.ones(5000),), {})
    first.close()
    second.close()  # saved last: the first's runs stay in the file all the same
    key = compute_key("scale", "cpu", "float64", "")
    again = Runtime(gpus=[], state=idle_state(2), store=ModelStore(path, "m"))
    assert again.book.models[key].observations == 3 + 5  # each process's first is a warm-up
    assert sorted(m.work for m in again.history) == [50.0] * 3 + [5000.0] * 5
    assert second.book.models[key].observations == 8  # the last saver took up the first's
    again.close()


def test_processes_saving_into_one_file_at_once_lose_no_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "m.json"
    script = f"""
import sys, time
from pathlib import Path
import numpy as np
from gpugate.offload import Runtime, learning, task
from gpugate.offload.state import idle_state
from gpugate.offload.store import ModelStore
learning.SAVE_EVERY_S = 0.002  # save nearly all the time, into the same file as the others
store = ModelStore(Path({str(path)!r}), "m")
rt = Runtime(gpus=[], state=idle_state(2), store=store, policy="cpu")
scale = task(lambda x: x * 2, kind="scale")
for _ in range(int(sys.argv[1])):
    rt.run(scale, (np.ones(10),), {{}})
    time.sleep(0.001)
rt.close()
"""
    runs = [150, 200, 250]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)]) for n in runs]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    saved = json.loads(path.read_text())
    key = compute_key("scale", "cpu", "float64", "")
    assert saved["models"][key]["observations"] == sum(n - 1 for n in runs)
    assert len(saved["measurements"]) == sum(n - 1 for n in runs)


def test_runs_learned_while_a_full_history_is_saved_reach_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpugate.offload import learning

    monkeypatch.setattr(learning, "HISTORY_MAX", 5)
    store = ModelStore(tmp_path / "m.json", "m")
    rt = Runtime(gpus=[], state=idle_state(2), store=store, policy="cpu")
    scale = make_task()
    for n in range(1, 9):  # 7 learned: more than the history holds
        rt.run(scale, (np.ones(n),), {})
    write = store.save_snapshot

    def write_while_calls_go_on(models: Any, history: Any) -> None:
        write(models, history)
        rt.run(scale, (np.ones(50),), {})
        rt.run(scale, (np.ones(60),), {})

    monkeypatch.setattr(store, "save_snapshot", write_while_calls_go_on)
    rt.save()
    monkeypatch.setattr(store, "save_snapshot", write)
    rt.close()
    saved = json.loads((tmp_path / "m.json").read_text())
    assert [m["work"] for m in saved["measurements"]] == [6.0, 7.0, 8.0, 50.0, 60.0]
    assert saved["models"][compute_key("scale", "cpu", "float64", "")]["observations"] == 9


def test_a_save_that_cannot_read_the_file_fails_and_the_next_one_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path / "m.json", "m")
    rt = Runtime(gpus=[], state=idle_state(2), store=store, policy="cpu")
    for _ in range(3):
        rt.run(make_task(), (np.ones(5),), {})
    read = store.read_for_merge

    def flaky() -> Any:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store, "read_for_merge", flaky)
    with pytest.raises(OSError, match="Input/output"):
        rt.save()
    monkeypatch.setattr(store, "read_for_merge", read)
    rt.close()  # saved now: nothing was lost, and the store still writes
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["models"][compute_key("scale", "cpu", "float64", "")]["observations"] == 2


def test_a_save_waits_for_another_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gpugate.offload import store as store_module

    monkeypatch.setattr(store_module, "LOCK_WAIT_S", 0.2)
    store = ModelStore(tmp_path / "m.json", "m")
    rt = Runtime(gpus=[], state=idle_state(2), store=store, policy="cpu")
    for _ in range(3):
        rt.run(make_task(), (np.ones(5),), {})
    with ModelStore(tmp_path / "m.json", "m").locked():  # another process's save, stuck
        with pytest.raises(OSError, match="held the lock"):
            rt.save()
        rt.close()  # does not hang: the save at exit fails, said once
    assert "held the lock" in caplog.text
    assert not (tmp_path / "m.json").exists()


def test_a_file_garbled_between_saves_is_set_aside_and_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    store = ModelStore(path, "m")
    rt = Runtime(gpus=[], state=idle_state(2), store=store, policy="cpu")
    other = make_task()
    other.kind = "other"
    for task_ in (make_task(), make_task(), other, other):
        rt.run(task_, (np.ones(5),), {})
    rt.save()
    rt.run(make_task(), (np.ones(5),), {})  # learned since; "other" not
    path.write_text("garbled")
    rt.close()
    saved = json.loads(path.read_text())
    assert saved["models"][compute_key("scale", "cpu", "float64", "")]["observations"] == 2
    assert saved["models"][compute_key("other", "cpu", "float64", "")]["observations"] == 1
    assert len(saved["measurements"]) == 3
    assert [p.read_text() for p in tmp_path.glob("m.json.unreadable-*")] == ["garbled"]


def test_an_unreadable_model_file_is_kept_aside_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text("{not json")
    rt = Runtime(gpus=[], state=idle_state(2), store=ModelStore(path, "m"), policy="cpu")
    assert not rt.book.models
    rt.run(make_task(), (np.ones(5),), {})
    rt.run(make_task(), (np.ones(5),), {})
    rt.close()
    aside = list(tmp_path.glob("model.json.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_text() == "{not json"
    assert json.loads(path.read_text())["format"] == 1


def test_the_model_file_is_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    store = ModelStore(path, "m")
    rt = Runtime(gpus=[], state=idle_state(2), store=store, policy="cpu")
    rt.run(make_task(), (np.ones(5),), {})
    rt.save()
    rt.close()
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]  # no temporary left


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown offload policy"):
        Runtime(gpus=[], state=idle_state(2), store=None, policy="fastest")


def test_a_variant_name_is_unique() -> None:
    scale = make_task()
    with pytest.raises(ValueError, match="already has"):
        scale.gpu(lambda x: x)


# ------------------------------------------------------------------ robustness (review)
def test_a_task_that_calls_another_task_on_its_device_does_not_deadlock(
    runtime: Runtime,
) -> None:
    inner = make_task()
    runtime.chooser = runtime.make_chooser("cpu")

    @task(kind="outer")
    def outer(x: np.ndarray) -> np.ndarray:
        return runtime.run(inner, (x,), {}) + 1

    assert runtime.run(outer, (np.ones(2),), {}).tolist() == [3.0, 3.0]
    assert runtime.submit(outer, (np.ones(2),), {}).result(timeout=10).tolist() == [3.0, 3.0]


def test_closing_finishes_what_is_queued_and_refuses_more(gpu: SimulatedGpu) -> None:
    from gpugate.offload.queues import QueueClosed

    rt = Runtime(gpus=[gpu], state=idle_state(2), store=None, policy="cpu")
    slow = task(lambda x: time.sleep(0.02) or x, kind="sleepy")
    futures = [rt.submit(slow, (np.ones(1),), {}) for _ in range(3)]
    rt.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(QueueClosed):
        rt.submit(slow, (np.ones(1),), {})


def test_a_failing_gpu_variant_falls_back_to_the_cpu_and_is_left_out(
    gpu: SimulatedGpu,
) -> None:
    calls: list[str] = []

    @task(kind="fragile", work=lambda x: float(x.size))
    def fragile(x: np.ndarray) -> np.ndarray:
        calls.append("cpu")
        return x + 1

    @fragile.gpu
    def _(x: Any) -> Any:
        calls.append("gpu")
        raise MemoryError("out of memory allocating 8 GiB")

    rt = Runtime(gpus=[gpu], state=idle_state(2), store=None, policy="gpu")
    assert rt.run(fragile, (np.zeros(3),), {}).tolist() == [1.0, 1.0, 1.0]
    assert rt.run(fragile, (np.zeros(3),), {}).tolist() == [1.0, 1.0, 1.0]
    explanation = rt.explain(fragile, (np.zeros(3),), {})
    rt.close()
    assert calls == ["gpu", "cpu", "cpu"]  # tried once, then left out
    gpu_option = next(o for o in explanation.options if o.device == "sim-gpu:0")
    assert not gpu_option.feasible and "MemoryError" in gpu_option.why_not
    assert rt.stats.gpu_failures == 1
    assert rt.queues["sim-gpu:0"].backlog_s(time.monotonic()) == 0.0


def test_a_failing_cpu_variant_is_the_callers_error(runtime: Runtime) -> None:
    def broken(x: Any) -> Any:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        runtime.run(task(broken, kind="broken"), (np.ones(1),), {})
    assert runtime.queues["cpu"].backlog_s(time.monotonic()) == 0.0


def test_a_slow_link_is_timed_as_transfer_not_compute() -> None:
    slow_link = SimulatedGpu(index=0, link_bytes_per_s=2e8, link_latency_s=0.0)
    rt = Runtime(gpus=[slow_link], state=idle_state(2), store=None, policy="gpu")
    rt.trace = []
    x = np.ones(1 << 20)  # 8 MiB: at least 40 ms each way
    rt.run(make_task(), (x,), {})
    on_gpu = slow_link.to_device(x)
    rt.run(make_task(), (on_gpu,), {})
    rt.close()
    moved, resident = rt.trace
    assert moved.transfer_s >= 2 * x.nbytes / 2e8  # in and back
    assert moved.compute_s < moved.transfer_s
    assert resident.transfer_s == 0.0  # its data was on the GPU already


def test_array_subclasses_are_moved_like_arrays(tmp_path: Path, gpu: SimulatedGpu) -> None:
    seen: list[type] = []
    mapped = np.memmap(tmp_path / "x.bin", dtype=np.float64, mode="w+", shape=(8,))
    rt = Runtime(gpus=[gpu], state=idle_state(2), store=None, policy="gpu")
    rt.run(make_task(seen), (mapped,), {})
    rt.close()
    assert seen == [SimulatedGpuArray]


def test_decisions_and_learning_from_several_threads_at_once(gpu: SimulatedGpu) -> None:
    rt = Runtime(gpus=[gpu], state=idle_state(2), store=None, policy="history")
    scale = make_task()
    errors: list[BaseException] = []

    def caller(seed: int) -> None:
        try:
            for i in range(60):  # a new size every call: the history refits as it goes
                rt.run(scale, (np.ones(1 + (seed * 1000 + i) % 977),), {})
        except BaseException as exc:
            errors.append(exc)

    callers = [threading.Thread(target=caller, args=(s,)) for s in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(timeout=60)
    rt.close()
    assert errors == []
    assert rt.stats.decisions == 240


def test_a_model_file_that_cannot_be_written_does_not_fail_the_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gpugate.offload import learning

    class FullDisk(ModelStore):
        def save_snapshot(self, models: Any, history: Any) -> None:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(learning, "SAVE_EVERY_S", 0.01)
    rt = Runtime(gpus=[], state=idle_state(2), store=FullDisk(tmp_path / "m.json", "m"))
    for _ in range(20):
        rt.run(make_task(), (np.ones(4),), {})
        time.sleep(0.005)
    rt.close()
    assert "No space left on device" in caplog.text
    assert caplog.text.count("could not save") == 1  # said once, not at every call
    with pytest.raises(OSError):
        rt.save()  # asked for explicitly (calibrate), the failure is the caller's


def test_a_model_file_of_the_wrong_shape_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text('{"format": 1, "models": [], "measurements": {}}')
    rt = Runtime(gpus=[], state=idle_state(2), store=ModelStore(path, "m"))
    rt.close()
    assert not rt.book.models
    assert len(list(tmp_path.glob("model.json.unreadable-*"))) == 1


def test_the_default_runtime_saves_what_it_learned_at_exit(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = f"""
import numpy as np
from gpugate import offload
from gpugate.offload.store import ModelStore
offload.configure(store=ModelStore(__import__("pathlib").Path({str(tmp_path / "m.json")!r}), "m"),
                  gpus=[], policy="cpu")
scale = offload.task(lambda x: x * 2, kind="scale")
for _ in range(4):
    scale(np.ones(3))
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    saved = json.loads((tmp_path / "m.json").read_text())
    assert len(saved["measurements"]) == 3  # four runs, the first a warm-up


def test_a_device_queue_counts_what_waits_and_what_runs_late() -> None:
    from gpugate.offload.devices import CpuDevice
    from gpugate.offload.queues import DeviceQueue

    q = DeviceQueue(CpuDevice(), depth=4)
    started, release = threading.Event(), threading.Event()

    def blocked() -> int:
        started.set()
        release.wait(10)
        return 1

    running = q.submit(blocked, predicted_s=0.001)
    started.wait(10)
    waiting = q.submit(lambda: 2, predicted_s=5.0)
    time.sleep(0.01)  # the first is now past its 1 ms prediction
    backlog = q.backlog_s(time.monotonic())
    assert 5.0 < backlog < 5.01  # the queued 5 s, plus a tenth of the late one
    release.set()
    assert (running.result(10), waiting.result(10)) == (1, 2)
    assert q.backlog_s(time.monotonic()) == 0.0
    q.close()


def test_the_busy_gpu_phase_loads_every_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpugate.offload import loadgen
    from gpugate.offload.calibrate import phases

    started: list[list[str]] = []

    class Recorded:
        def __init__(self, argv: list[str], **_: Any) -> None:
            started.append(argv)

        def kill(self) -> None:
            pass

        def wait(self) -> int:
            return 0

    monkeypatch.setattr(loadgen.subprocess, "Popen", Recorded)
    busy = [p for p in phases([2], 0.6, [0, 1]) if p.measures == "gpu"]
    assert len(busy) == 1
    with busy[0].condition():
        pass
    assert [(argv[-2], argv[-1]) for argv in started] == [("0.6", "0"), ("0.6", "1")]
    assert [p.name for p in phases([2], None, [0])] == ["idle", "2 busy CPU processes"]
