"""The job-side half of checkpoint-and-requeue: gpugate.preempt, its lazy exports from
``gpugate``, and examples/preemptible_train.py run end to end as the daemon would drive it
(preempt file, then SIGUSR1 to the process group, exit 75, relaunch with GPUGATE_RESUME=1)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gpugate
from gpugate import preempt
from gpugate.preempt import (
    CHECKPOINT_ENV,
    PREEMPT_FILE_ENV,
    PREEMPT_SIGNAL,
    REQUEUE_EXIT_CODE,
    RESUME_ENV,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "preemptible_train.py"
SRC = Path(gpugate.__file__).resolve().parents[1]
STEPS = 2000


@pytest.fixture(autouse=True)
def clean_preempt_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no request, no handler of ours and none of the job variables (the
    suite itself might run under gpugate), and leaves SIGUSR1 as it found it."""
    for name in (PREEMPT_FILE_ENV, RESUME_ENV, CHECKPOINT_ENV, "GPUGATE_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    original = signal.getsignal(PREEMPT_SIGNAL)
    preempt._reset_for_tests()
    yield
    preempt._reset_for_tests()
    signal.signal(PREEMPT_SIGNAL, original)


# --- the helper -----------------------------------------------------------------------------


def test_the_protocol_constants() -> None:
    assert REQUEUE_EXIT_CODE == 75
    assert PREEMPT_SIGNAL == signal.SIGUSR1
    assert (PREEMPT_FILE_ENV, RESUME_ENV, CHECKPOINT_ENV) == (
        "GPUGATE_PREEMPT_FILE",
        "GPUGATE_RESUME",
        "GPUGATE_CHECKPOINT",
    )


def test_not_requested_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert preempt.preempt_requested() is False
    monkeypatch.setenv(PREEMPT_FILE_ENV, str(tmp_path / "preempt"))
    assert preempt.preempt_requested() is False


def test_requested_once_the_file_appears(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flag = tmp_path / "preempt"
    monkeypatch.setenv(PREEMPT_FILE_ENV, str(flag))
    assert preempt.preempt_requested() is False
    flag.touch()
    assert preempt.preempt_requested() is True
    flag.unlink()
    assert preempt.preempt_requested() is True, "a request once seen must not be withdrawn"


def test_requested_after_the_signal() -> None:
    preempt.preemptible()
    assert signal.getsignal(PREEMPT_SIGNAL) is preempt._on_preempt_signal
    assert preempt.preempt_requested() is False
    os.kill(os.getpid(), PREEMPT_SIGNAL)
    assert preempt.preempt_requested() is True


def test_polling_installs_the_handler_on_first_use() -> None:
    assert signal.getsignal(PREEMPT_SIGNAL) is not preempt._on_preempt_signal
    assert preempt.preempt_requested() is False
    # Checked before sending: without the handler the signal would kill the test run.
    assert signal.getsignal(PREEMPT_SIGNAL) is preempt._on_preempt_signal
    os.kill(os.getpid(), PREEMPT_SIGNAL)
    assert preempt.preempt_requested() is True


def test_preemptible_is_idempotent_and_the_test_hook_restores_the_old_handler() -> None:
    def sentinel(signum: int, frame: Any) -> None:
        raise AssertionError("the sentinel handler must not run")

    signal.signal(PREEMPT_SIGNAL, sentinel)
    preempt.preemptible()
    preempt.preemptible()
    assert signal.getsignal(PREEMPT_SIGNAL) is preempt._on_preempt_signal
    preempt._reset_for_tests()
    assert signal.getsignal(PREEMPT_SIGNAL) is sentinel


def test_from_another_thread_it_skips_the_handler_and_relies_on_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = tmp_path / "preempt"
    monkeypatch.setenv(PREEMPT_FILE_ENV, str(flag))
    before = signal.getsignal(PREEMPT_SIGNAL)
    seen: list[object] = []

    def worker() -> None:
        try:
            preempt.preemptible()
            seen.append(preempt.preempt_requested())
            flag.touch()
            seen.append(preempt.preempt_requested())
        except BaseException as exc:  # the point is that nothing escapes
            seen.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [False, True]
    assert signal.getsignal(PREEMPT_SIGNAL) is before
    # The main thread can still install it later: the thread's attempt did not count.
    preempt.preemptible()
    assert signal.getsignal(PREEMPT_SIGNAL) is preempt._on_preempt_signal


class RecordingStream:
    def __init__(self, fail: bool = False) -> None:
        self.flushed = False
        self.fail = fail

    def flush(self) -> None:
        if self.fail:
            raise ValueError("I/O operation on closed file")
        self.flushed = True


def test_exit_for_requeue_flushes_and_exits_75(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = RecordingStream(), RecordingStream()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    cleaned_up = False
    with pytest.raises(SystemExit) as exc_info:
        try:
            preempt.exit_for_requeue()
        finally:
            cleaned_up = True
    assert exc_info.value.code == 75
    assert out.flushed and err.flushed
    assert cleaned_up


def test_exit_for_requeue_survives_a_broken_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", RecordingStream(fail=True))
    monkeypatch.setattr(sys, "stderr", None)
    with pytest.raises(SystemExit) as exc_info:
        preempt.exit_for_requeue()
    assert exc_info.value.code == REQUEUE_EXIT_CODE


@pytest.mark.parametrize(
    ("value", "expected"), [(None, False), ("1", True), ("0", False), ("true", False), ("", False)]
)
def test_resuming_reads_the_env(
    value: str | None, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is not None:
        monkeypatch.setenv(RESUME_ENV, value)
    assert preempt.resuming() is expected


def test_checkpoint_path_reads_the_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert preempt.checkpoint_path() is None
    assert preempt.checkpoint_path(default="ckpt.pt") == "ckpt.pt"
    monkeypatch.setenv(CHECKPOINT_ENV, "/data/run7/ckpt.pt")
    assert preempt.checkpoint_path() == "/data/run7/ckpt.pt"
    assert preempt.checkpoint_path(default="ckpt.pt") == "/data/run7/ckpt.pt"


def test_gpugate_exports_the_helpers() -> None:
    for name in (
        "preempt_requested",
        "exit_for_requeue",
        "resuming",
        "checkpoint_path",
        "preemptible",
        "REQUEUE_EXIT_CODE",
    ):
        assert name in gpugate.__all__
        assert getattr(gpugate, name) is getattr(preempt, name)
    with pytest.raises(AttributeError):
        _ = gpugate.no_such_thing  # type: ignore[attr-defined]


def test_importing_gpugate_loads_nothing_and_touches_no_signal() -> None:
    """Lazy on purpose: the CLI imports gpugate and must not pay for, or be changed by, the
    job-side helpers. Checked in a fresh interpreter, since this one has them loaded."""
    code = (
        "import signal, sys\n"
        "before = signal.getsignal(signal.SIGUSR1)\n"
        "import gpugate\n"
        "assert 'gpugate.preempt' not in sys.modules, 'loaded eagerly'\n"
        "import gpugate.preempt\n"
        "assert signal.getsignal(signal.SIGUSR1) is before, 'import installed a handler'\n"
        "assert gpugate.preempt_requested is gpugate.preempt.preempt_requested\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=job_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


# --- the example, end to end ----------------------------------------------------------------


def job_env(**extra: str) -> dict[str, str]:
    """The environment a job gets: none of the caller's GPUGATE_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUGATE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def example_env(workdir: Path, **extra: str) -> dict[str, str]:
    state = workdir / "state"
    state.mkdir(exist_ok=True)
    return job_env(
        GPUGATE_JOB_ID="7",
        GPUGATE_CHECKPOINT=str(workdir / "ckpt.json"),
        GPUGATE_PREEMPT_FILE=str(state / "preempt"),
        **extra,
    )


def run_example(workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--steps", str(STEPS), "--step-sleep", "0"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def result_of(workdir: Path, stdout: str) -> tuple[str, dict[str, Any]]:
    lines = [line for line in stdout.splitlines() if line.startswith("result ")]
    assert len(lines) == 1, stdout
    return lines[0], json.loads((workdir / "result.json").read_text())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    """An uninterrupted run's final weights."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    proc = run_example(workdir, example_env(workdir))
    assert proc.returncode == 0, proc.stderr
    assert "resumed" not in proc.stdout and "checkpointed" not in proc.stdout
    return result_of(workdir, proc.stdout)


def test_an_uninterrupted_run_fits_the_line(reference: tuple[str, dict[str, Any]]) -> None:
    line, result = reference
    assert result["steps"] == STEPS
    assert line == f"result w={result['w']!r} b={result['b']!r}"
    assert abs(result["w"] - 3.0) < 0.1 and abs(result["b"] - 2.0) < 0.1


def interrupt_example(workdir: Path, *, send_signal: bool) -> int:
    """Start the example, wait for its first progress line, ask it to yield the way the daemon
    does (file first, then SIGUSR1 to the process group), and return the step it checkpointed
    at. Waiting on the output, not the clock, makes "mid-run" hold on any machine: the run
    would need thousands of sleeps more to finish on its own."""
    env = example_env(workdir)
    with subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--steps", str(STEPS)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if first != "step 100\n":
            proc.kill()
            _, err = proc.communicate(timeout=60)
            pytest.fail(f"expected a first progress line, got {first!r}; stderr: {err}")
        Path(env[PREEMPT_FILE_ENV]).touch()
        if send_signal:
            os.killpg(proc.pid, PREEMPT_SIGNAL)
        rest, err = proc.communicate(timeout=60)
    assert proc.returncode == REQUEUE_EXIT_CODE, (rest, err)
    match = re.search(r"^checkpointed at step (\d+)$", rest, re.MULTILINE)
    assert match, rest
    step = int(match.group(1))
    assert 100 <= step < STEPS
    assert json.loads((workdir / "ckpt.json").read_text())["step"] == step
    assert not (workdir / "result.json").exists()
    assert "result " not in rest
    return step


def resume_example(workdir: Path, step: int) -> subprocess.CompletedProcess[str]:
    # The daemon clears the request before relaunching; a stale file would mean "yield again".
    (workdir / "state" / "preempt").unlink()
    proc = run_example(workdir, example_env(workdir, GPUGATE_RESUME="1"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"resumed at step {step}"
    return proc


@pytest.mark.parametrize("send_signal", [True, False], ids=["file+signal", "file-only"])
def test_a_run_asked_to_yield_checkpoints_and_resumes_to_the_same_result(
    send_signal: bool, tmp_path: Path, reference: tuple[str, dict[str, Any]]
) -> None:
    step = interrupt_example(tmp_path, send_signal=send_signal)
    resumed = resume_example(tmp_path, step)
    assert result_of(tmp_path, resumed.stdout) == reference


def test_without_resume_the_example_starts_over(tmp_path: Path) -> None:
    """A relaunch that is not a resume (e.g. a fresh submit reusing the path) must not pick up
    an old checkpoint."""
    (tmp_path / "ckpt.json").write_text(json.dumps({"step": 1500, "w": 0.0, "b": 0.0}))
    proc = run_example(tmp_path, example_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "resumed" not in proc.stdout
    assert proc.stdout.splitlines()[0] == "step 100"
