"""The offload runtime beside a real daemon (its view of the GPUs), and its CLI."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpugate.api import schemas as api
from gpugate.offload import Runtime, SimulatedGpu, task
from gpugate.offload.policy import compute_key
from gpugate.units import GiB
from tests.integration.conftest import BIN, RunningDaemon, wait_for

pytestmark = pytest.mark.integration


def scale_task() -> Any:
    @task(kind="scale", work=lambda x: float(x.size), device_mem_bytes=lambda x: 2 * GiB)
    def scale(x: np.ndarray) -> np.ndarray:
        return x * 2

    scale.gpu(lambda x: x * 2)
    return scale


@pytest.fixture
def runtime_beside(daemon: RunningDaemon, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    """A runtime whose simulated GPU is the daemon's GPU 0 (same UUID); the GPU is known
    to run the task in 1 ms and the CPU in 1.5 ms."""
    monkeypatch.setenv("GPUGATE_SOCKET", str(daemon.home / "gpugate.sock"))
    rt = Runtime(gpus=[SimulatedGpu(index=0)], store=None, explore=False)
    for variant, label, seconds in (("cpu", "", 0.0015), ("gpu", "Simulated GPU", 0.001)):
        for _ in range(5):
            rt.book.observe(compute_key("scale", variant, "float64", label), 1e4, 0.0, seconds)
    yield rt
    rt.close()


def test_the_daemons_view_of_the_gpu_decides(
    daemon: RunningDaemon, runtime_beside: Runtime
) -> None:
    rt, scale, x = runtime_beside, scale_task(), np.ones(10_000)
    assert rt.state.current.gpu_source == "daemon"
    assert rt.explain(scale, (x,), {}).choice.device == "sim-gpu:0"

    daemon.client.sim_load(api.SimLoadRequest(gpu="0", util_pct=95.0, name="other-lab"))
    wait_for(lambda: (rt.state.current.gpus[0].util_others_pct or 0) >= 90, 10, "the load")
    busy = rt.explain(scale, (x,), {})
    assert busy.choice.device == "cpu"
    assert "others use 95%" in str(busy)


def test_memory_the_daemon_sees_taken_keeps_the_call_off_the_gpu(
    daemon: RunningDaemon, runtime_beside: Runtime
) -> None:
    rt, scale = runtime_beside, scale_task()
    daemon.client.sim_load(api.SimLoadRequest(gpu="0", mem_bytes=23 * GiB, name="big"))
    wait_for(lambda: (rt.state.current.gpus[0].mem_free_bytes or 0) < 2 * GiB, 10, "the memory")
    explanation = rt.explain(scale, (np.ones(10_000),), {})
    gpu = next(o for o in explanation.options if o.device == "sim-gpu:0")
    assert not gpu.feasible and "GPU memory" in gpu.why_not
    assert explanation.choice.device == "cpu"


# -------------------------------------------------------------------------------- CLI
@pytest.fixture
def offload_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    env = dict(os.environ, GPUGATE_OFFLOAD_MODEL=str(tmp_path / "model.json"))
    env["GPUGATE_HOME"] = str(tmp_path / "home")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "gpugate"), "offload", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def test_calibrate_then_show_then_explain(
    offload_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    done = offload_cli("calibrate", "--quick", "--no-load", "--kinds", "sobel", "--repeats", "2")
    assert done.returncode == 0, done.stderr
    assert "no GPU here" in done.stderr  # said clearly, and the CPU variants calibrated
    saved = json.loads((tmp_path / "model.json").read_text())
    variants = {m["variant"] for m in saved["measurements"] if m["kind"] == "sobel"}
    assert variants == {"cpu:numpy", "cpu:numba"}

    shown = offload_cli("show")
    assert shown.returncode == 0, shown.stderr
    assert "sobel (float32)" in shown.stdout and "*cpu:" in shown.stdout

    explained = offload_cli("explain", "sobel", "240", "--json")
    assert explained.returncode == 0, explained.stderr
    data = json.loads(explained.stdout)
    assert data["kind"] == "sobel" and data["choice"]["device"] == "cpu"
    seen = {o["variant"]: o["observations"] for o in data["options"]}
    assert seen["cpu:numpy"] > 0 and seen["cpu:numba"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("calibrate", "--kinds", "fft"), "unknown task kind fft"),
        (("calibrate", "--dtypes", "int8"), "unknown dtype int8"),
        (("calibrate", "--repeats", "0"), "--repeats must be at least 1"),
        (("explain", "matmul", "0"), "the size must be at least 1"),
    ],
)
def test_bad_input_is_a_clear_error(
    offload_cli: Callable[..., subprocess.CompletedProcess[str]],
    args: tuple[str, ...],
    message: str,
) -> None:
    result = offload_cli(*args)
    assert result.returncode == 2 and message in result.stderr


def test_an_unreadable_model_file_is_kept_and_reported(
    offload_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    model = tmp_path / "model.json"
    model.write_text("[1, 2")
    shown = offload_cli("show")
    assert shown.returncode == 0, shown.stderr
    assert "unreadable" in shown.stderr
    assert model.read_text() == "[1, 2"  # show only reads: the file is left as it was

    done = offload_cli("calibrate", "--quick", "--no-load", "--kinds", "matmul", "--repeats", "1")
    assert done.returncode == 0, done.stderr
    kept = list(tmp_path.glob("model.json.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_text() == "[1, 2"  # learning again, kept aside
    assert json.loads(model.read_text())["measurements"]


def test_show_and_explain_never_write_the_model_file(
    offload_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    assert offload_cli("show").returncode == 0
    assert offload_cli("explain", "nbody", "64").returncode == 0
    assert not (tmp_path / "model.json").exists()


def test_explain_refuses_inputs_that_would_not_fit_in_memory(
    offload_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    result = offload_cli("explain", "matmul", "1000000")
    assert result.returncode == 2 and "more than half the memory" in result.stderr


def test_reset_keeps_the_old_model_aside(
    offload_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    assert offload_cli("calibrate", "--quick", "--no-load", "--kinds", "matmul").returncode == 0
    result = offload_cli("reset")
    assert result.returncode == 0 and "kept in" in result.stdout
    assert not (tmp_path / "model.json").exists()
    assert len(list(tmp_path.glob("model.json.reset-*"))) == 1


def test_reset_waits_for_a_save_in_progress(tmp_path: Path) -> None:
    """A reset landing between a save's read and its write would be undone by the write:
    it takes the same lock as saves."""
    import time

    from gpugate.offload.store import ModelStore

    path = tmp_path / "model.json"
    path.write_text("{}")
    env = dict(os.environ, GPUGATE_OFFLOAD_MODEL=str(path), GPUGATE_HOME=str(tmp_path / "h"))
    with ModelStore(path, "m").locked():  # a save, holding the lock
        reset = subprocess.Popen(
            [str(BIN / "gpugate"), "offload", "reset"], env=env, stdout=subprocess.PIPE
        )
        time.sleep(2.5)  # time enough for the CLI to start and reach the lock
        assert reset.poll() is None and path.exists()  # waiting
    said, _ = reset.communicate(timeout=30)
    assert reset.returncode == 0 and b"kept in" in said
    assert not path.exists()


# ------------------------------------------------------------------------ a real GPU
def _cuda_devices() -> int:
    from gpugate.offload.devices import find_cuda_devices

    return len(find_cuda_devices()[0])


@pytest.mark.gpu
@pytest.mark.skipif(_cuda_devices() == 0, reason="no CUDA GPU (or no CuPy)")
def test_the_builtin_tasks_run_on_a_real_gpu_and_agree_with_the_cpu() -> None:
    import cupy

    from gpugate.offload.builtin import CALIBRATION, DTYPES

    rt = Runtime(store=None, policy="always-gpu")
    rt.trace = []
    try:
        for sweep in CALIBRATION.values():
            args = sweep.inputs(sweep.quick_sizes[-1], DTYPES["float32"])
            on_gpu = rt.run(sweep.task, args, {})
            on_cpu = sweep.task.variant("cpu:numpy").func(*args)
            for got, want in zip(_as_tuple(on_gpu), _as_tuple(on_cpu), strict=True):
                assert type(got) is np.ndarray  # NumPy in, NumPy out
                np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
        resident = rt.run(
            CALIBRATION["matmul"].task,
            [cupy.asarray(a) for a in CALIBRATION["matmul"].inputs(64, np.float32)],
            {},
        )
        assert isinstance(resident, cupy.ndarray)  # CuPy in, CuPy out
    finally:
        rt.close()
    assert {r.device for r in rt.trace} == {"cuda:0"}
    assert all(r.transfer_s > 0 for r in rt.trace[:-1]) and rt.trace[-1].transfer_s == 0


@pytest.mark.gpu
@pytest.mark.skipif(_cuda_devices() == 0, reason="no CUDA GPU (or no CuPy)")
def test_calibration_on_a_real_gpu_learns_transfers_and_kernels(
    offload_cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    done = offload_cli("calibrate", "--quick", "--kinds", "matmul,nbody")
    assert done.returncode == 0, done.stderr
    models = json.loads((tmp_path / "model.json").read_text())["models"]
    assert any(k.startswith("transfer/h2d@") for k in models)
    assert any(k.startswith("matmul/gpu/float32@") for k in models)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)
