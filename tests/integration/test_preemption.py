"""Checkpoint-requeue, suspend and resume through a real daemon and real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from gpugate.units import GiB
from tests.integration.conftest import RunningDaemon, wait_for

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "examples" / "preemptible_train.py"
TRAIN_ARGS = ["--steps", "1500", "--step-sleep", "0.002"]


def uninterrupted_result(tmp_path: Path, env: dict[str, str]) -> dict[str, float]:
    """The example run on its own, start to end: what a preempted run must also give."""
    alone = tmp_path / "alone"
    alone.mkdir()
    run_env = {**env, "GPUGATE_CHECKPOINT": str(alone / "ckpt.json")}
    subprocess.run(
        [sys.executable, str(EXAMPLE), *TRAIN_ARGS], cwd=alone, env=run_env, check=True,
        capture_output=True, timeout=120,
    )  # fmt: skip
    result: dict[str, float] = json.loads((alone / "result.json").read_text())
    return result


def training_under_way(daemon: RunningDaemon, tmp_path: Path, **fields: object) -> tuple[Path, int]:
    """The example submitted with ``--preempt checkpoint`` (its checkpoint and result in
    the returned directory), once it has trained a while."""
    saved = tmp_path / "under-gpugate"
    saved.mkdir()
    command = " ".join([sys.executable, str(EXAMPLE), *TRAIN_ARGS])
    job = daemon.submit(
        command, preempt="checkpoint", checkpoint_path=str(saved / "ckpt.json"), **fields
    )
    wait_for(lambda: "step 100" in logs(daemon, job), what="the job to train a while")
    return saved, job


def logs(daemon: RunningDaemon, job_id: int) -> str:
    return daemon.client.logs(job_id).decode()


def stopped(pid: int) -> bool:
    """Are all processes of the job's session stopped (state T)?"""
    procs = [p for p in psutil.process_iter(["pid"]) if _session(p.pid) == pid]
    return bool(procs) and all(p.status() == psutil.STATUS_STOPPED for p in procs)


def _session(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def test_a_checkpointed_job_is_requeued_resumes_and_ends_as_if_never_interrupted(
    daemon: RunningDaemon, tmp_path: Path
) -> None:
    expected = uninterrupted_result(tmp_path, daemon.env)
    saved, job = training_under_way(daemon, tmp_path, gpus=0)

    asked = daemon.cli("checkpoint", str(job), check=True)
    assert asked.returncode == 0
    done = daemon.wait_state(job, "succeeded", "failed", "lost", timeout_s=60)
    assert done.state == "succeeded", (
        done.reason,
        logs(daemon, job),
        daemon.client.logs(job, "stderr"),
    )

    output = logs(daemon, job)
    checkpointed = [line for line in output.splitlines() if line.startswith("checkpointed at")]
    resumed = [line for line in output.splitlines() if line.startswith("resumed at")]
    assert len(checkpointed) == 1 and len(resumed) == 1
    assert checkpointed[0].split()[-1] == resumed[0].split()[-1]  # from where it saved
    assert json.loads((saved / "result.json").read_text()) == expected
    assert done.checkpoints == 1
    edges = [(t.from_state, t.to_state) for t in daemon.client.show(job).history]
    assert ("running", "queued") in edges
    assert edges.count(("queued", "starting")) == 2


def test_the_site_default_applies_to_jobs_that_do_not_say(
    make_daemon: Callable[..., RunningDaemon],
) -> None:
    """With ``default_preempt = "checkpoint"``, a job submitted without --preempt may be
    checkpointed; one that says --preempt never may not."""
    daemon = make_daemon(top_config='default_preempt = "checkpoint"\n')
    unsaid = daemon.cli("submit", "--gpus", "0", "--json", "--", "sleep", "30", check=True)
    said = daemon.cli(
        "submit", "--gpus", "0", "--preempt", "never", "--json", "--", "sleep", "30", check=True
    )
    unsaid_id, said_id = (json.loads(r.stdout)[0]["id"] for r in (unsaid, said))
    assert daemon.client.show(unsaid_id).job.preempt == "checkpoint"
    assert daemon.client.show(said_id).job.preempt == "never"
    for job in (unsaid_id, said_id):
        daemon.client.cancel(job)


def test_checkpoint_is_refused_for_a_job_that_did_not_declare_it(daemon: RunningDaemon) -> None:
    job = daemon.submit("sleep 30", gpus=0)
    daemon.wait_state(job, "running")
    refused = daemon.cli("checkpoint", str(job))
    assert refused.returncode != 0
    assert "--preempt checkpoint" in refused.stderr
    assert daemon.state(job) == "running"
    daemon.client.cancel(job)


def test_suspend_stops_the_whole_process_tree_and_resume_continues_it(
    daemon: RunningDaemon,
) -> None:
    job = daemon.submit("sleep 30 & sleep 30 & wait", gpus=0)
    running = daemon.wait_state(job, "running")
    wait_for(lambda: len(_tree(running.pid)) >= 3, what="the job's processes")

    daemon.cli("suspend", str(job), check=True)
    assert daemon.state(job) == "suspended"
    wait_for(lambda: stopped(running.pid), what="every process of the job to stop")
    listed = daemon.cli("ls").stdout
    assert "suspended" in listed and "GPU memory kept" in listed

    daemon.cli("resume", str(job), check=True)
    assert daemon.state(job) == "running"
    wait_for(lambda: not stopped(running.pid), what="the job's processes to continue")

    daemon.cli("suspend", str(job), check=True)
    daemon.client.cancel(job)  # a stopped job must still act on SIGTERM
    daemon.wait_state(job, "cancelled", timeout_s=15)


def _tree(pid: int) -> list[int]:
    return [p.pid for p in psutil.process_iter(["pid"]) if _session(p.pid) == pid]


def test_a_job_that_ignores_the_checkpoint_request_is_suspended_after_the_grace(
    daemon: RunningDaemon,
) -> None:
    """It handles SIGUSR1 (so it survives the request) but never exits: after the 3 s
    grace of the test config it falls to the next rung, suspend."""
    ignore = "import signal, time; signal.signal(signal.SIGUSR1, lambda *a: None); time.sleep(60)"
    job = daemon.submit(f"{sys.executable} -c '{ignore}'", gpus=0, preempt="checkpoint")
    daemon.wait_state(job, "running")
    wait_for(lambda: daemon.client.show(job).job.pid is not None)
    daemon.cli("checkpoint", str(job), check=True)
    suspended = daemon.wait_state(job, "suspended", timeout_s=15)
    assert "ignored the checkpoint request for 3 s" in suspended.reason
    daemon.client.cancel(job)
    daemon.wait_state(job, "cancelled", timeout_s=15)


def test_a_daemon_killed_during_a_checkpoint_loses_nothing(
    daemon: RunningDaemon, tmp_path: Path
) -> None:
    """Asked to checkpoint, then the daemon is SIGKILLed: the job saves and exits 75 with
    no daemon to see it. The restarted daemon finds the exit in the shim's record, requeues
    the job (never also running: one run at a time), and it resumes to the same result."""
    expected = uninterrupted_result(tmp_path, daemon.env)
    saved, job = training_under_way(daemon, tmp_path, gpus=0)
    daemon.cli("checkpoint", str(job), check=True)
    daemon.stop(signal.SIGKILL)
    wait_for(lambda: (saved / "ckpt.json").exists(), what="the checkpoint to be saved")
    daemon.start()

    done = daemon.wait_state(job, "succeeded", "failed", "lost", timeout_s=60)
    assert done.state == "succeeded", done.reason
    assert done.checkpoints == 1
    assert json.loads((saved / "result.json").read_text()) == expected
    history = daemon.client.show(job).history
    launches = sum((t.from_state, t.to_state) == ("queued", "starting") for t in history)
    # the SIGKILL may land while the daemon relaunches the checkpointed job: that launch
    # never started a process, and recovery queues it again
    aborted = sum("before its process started" in t.reason for t in history)
    assert launches - aborted == 2  # exactly one relaunch ran


def test_an_urgent_job_preempts_a_checkpointable_one_which_then_resumes(
    make_daemon: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    """The training job (priority 0, declares 16 GiB of the 24 GiB GPU, allows checkpoint)
    runs. An urgent job (priority 5, 10 GiB) cannot fit beside it: the scheduler asks the
    training job to checkpoint; it saves and exits 75; the urgent job starts; the training
    job waits (16 + 10 > 21.6 GiB), resumes from its checkpoint once the urgent one is
    done, and ends exactly as an uninterrupted run."""
    daemon = make_daemon(ramp_timeout_s=0.5)
    expected = uninterrupted_result(tmp_path, daemon.env)
    saved = tmp_path / "under-gpugate"
    saved.mkdir()
    command = " ".join([sys.executable, str(EXAMPLE), *TRAIN_ARGS])
    training = daemon.submit(
        command,
        mem_bytes=16 * GiB,
        util_pct=30,
        preempt="checkpoint",
        checkpoint_path=str(saved / "ckpt.json"),
    )
    wait_for(lambda: "step 100" in logs(daemon, training), what="training to be under way")
    daemon.wait_state(training, "running")

    urgent = daemon.submit("sleep 1", mem_bytes=10 * GiB, util_pct=30, priority=5)
    daemon.wait_state(urgent, "running", "succeeded", timeout_s=20)
    now = daemon.client.show(training)
    assert now.job.state in ("queued", "starting", "running"), [
        (t.from_state, t.to_state, t.reason) for t in now.history
    ]
    daemon.wait_state(urgent, "succeeded", timeout_s=20)
    done = daemon.wait_state(training, "succeeded", "failed", timeout_s=60)
    assert done.state == "succeeded", done.reason

    assert json.loads((saved / "result.json").read_text()) == expected
    history = daemon.client.show(training).history
    asked = [t for t in history if "to make room for job" in t.reason]
    assert asked and f"job {urgent}" in asked[0].reason
    urgent_start = next(
        t.at for t in daemon.client.show(urgent).history if t.to_state == "starting"
    )
    requeued = next(t.at for t in history if (t.from_state, t.to_state) == ("running", "queued"))
    restarted = [t.at for t in history if t.to_state == "starting"][1]
    assert requeued <= urgent_start <= restarted  # it yielded, then waited its turn


def test_the_suspend_rung_frees_compute_for_an_urgent_job_then_resumes(
    make_daemon: Callable[..., RunningDaemon],
) -> None:
    """A suspendable job computes at 80%; an urgent one needs 30% (80 + 30 > 90): the
    scheduler suspends the first (its 4 GiB stay allocated), the urgent one runs, and the
    first resumes once it is done."""
    daemon = make_daemon(ramp_timeout_s=0.5)
    busy = daemon.submit_using(4, 80, preempt="suspend")
    daemon.wait_state(busy, "running")
    urgent = daemon.submit_using(4, 30, seconds=1, priority=5)
    suspended = daemon.wait_state(busy, "suspended", timeout_s=20)
    assert f"to make room for job {urgent}" in suspended.reason
    daemon.wait_state(urgent, "succeeded", timeout_s=30)
    resumed = daemon.wait_state(busy, "running", timeout_s=20)
    assert f"resumed: job {urgent} no longer waits" in resumed.reason
    daemon.client.cancel(busy)


def test_the_requeue_rung_stops_the_job_and_runs_it_again_afterwards(
    make_daemon: Callable[..., RunningDaemon],
) -> None:
    daemon = make_daemon(ramp_timeout_s=0.5)
    victim = daemon.submit_using(16, 30, preempt="requeue")
    daemon.wait_state(victim, "running")
    urgent = daemon.submit("sleep 1", mem_bytes=10 * GiB, util_pct=30, priority=5)
    daemon.wait_state(urgent, "running", "succeeded", timeout_s=20)
    daemon.wait_state(urgent, "succeeded", timeout_s=20)
    wait_for(
        lambda: [t.to_state for t in daemon.client.show(victim).history].count("starting") == 2,
        what="the victim to start again",
    )
    edges = [(t.from_state, t.to_state, t.reason) for t in daemon.client.show(victim).history]
    assert any(
        (a, b) == ("running", "queued") and "stopped to make room" in why for a, b, why in edges
    )
    assert daemon.client.show(victim).job.preemptions == 1
    daemon.client.cancel(victim)
