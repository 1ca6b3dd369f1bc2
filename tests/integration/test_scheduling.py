"""Stories of the scheduler, told through a real daemon on simulated GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpugate.units import GiB
from tests.integration.conftest import RunningDaemon, wait_for

pytestmark = pytest.mark.integration


def gated(
    daemon: RunningDaemon, gate: str, mem: str = "", util: int = 0, delay_s: float = 0
) -> str:
    """A job that (after ``delay_s``) uses ``mem`` on its GPU and runs until ``gate`` exists."""
    use = f"gpugate sim use --mem {mem} --util {util} && " if mem else ""
    pause = f"sleep {delay_s} && " if delay_s else ""
    return f"{pause}{use}while [ ! -e {daemon.home / gate} ]; do sleep 0.05; done"


def open_gate(daemon: RunningDaemon, gate: str) -> None:
    (daemon.home / gate).touch()


def test_a_job_that_would_overflow_memory_waits_until_the_other_ends(daemon: RunningDaemon) -> None:
    first = daemon.submit(gated(daemon, "g1", "14GiB"), mem_bytes=14 * GiB)
    daemon.wait_state(first, "starting", "running")
    second = daemon.submit(gated(daemon, "g2", "14GiB"), mem_bytes=14 * GiB)
    waiting = wait_for(lambda: (j := daemon.client.show(second).job).reason != "submitted" and j)
    assert waiting.state == "queued"
    assert "GPU0 mem" in waiting.reason and "90% of 24.0 GiB" in waiting.reason
    open_gate(daemon, "g1")
    daemon.wait_state(first, "succeeded")
    daemon.wait_state(second, "starting", "running")
    open_gate(daemon, "g2")
    daemon.wait_state(second, "succeeded")


def test_two_jobs_that_fit_together_run_together(daemon: RunningDaemon) -> None:
    a = daemon.submit(gated(daemon, "g", "8GiB"), mem_bytes=8 * GiB)
    b = daemon.submit(gated(daemon, "g", "8GiB"), mem_bytes=8 * GiB)
    daemon.wait_state(a, "starting", "running")
    daemon.wait_state(b, "starting", "running")
    gpus = wait_for(lambda: (g := daemon.client.gpus()).gpus[0].mem_used_bytes == 16 * GiB and g)
    owners = {p.job_id for p in gpus.gpus[0].processes}
    assert owners == {a, b}
    open_gate(daemon, "g")
    daemon.wait_state(a, "succeeded")
    daemon.wait_state(b, "succeeded")


def test_higher_priority_starts_first_when_the_gpu_frees(daemon: RunningDaemon) -> None:
    blocker = daemon.submit(gated(daemon, "g0"), exclusive=True)
    daemon.wait_state(blocker, "starting", "running")
    low = daemon.submit(gated(daemon, "g1"), exclusive=True, priority=0)
    high = daemon.submit(gated(daemon, "g2"), exclusive=True, priority=5)
    open_gate(daemon, "g0")
    daemon.wait_state(high, "starting", "running")
    assert daemon.state(low) == "queued"
    open_gate(daemon, "g2")
    daemon.wait_state(low, "starting", "running")
    open_gate(daemon, "g1")
    daemon.wait_state(low, "succeeded")


def test_outside_load_blocks_admission_until_it_goes(daemon: RunningDaemon) -> None:
    daemon.cli("sim", "load", "--gpu", "0", "--util", "95", "--mem", "2GiB", check=True)
    wait_for(
        lambda: (daemon.client.gpus().gpus[0].util_smoothed_pct or 0) > 90, what="smoothed load"
    )
    job = daemon.submit("true", mem_bytes=1 * GiB, util_pct=5)
    reason = wait_for(lambda: "util" in (r := daemon.client.show(job).job.reason) and r)
    assert "GPU0 util" in reason and "90%" in reason
    processes = daemon.client.gpus().gpus[0].processes
    assert [p.job_id for p in processes] == [None]  # counted, and known not to be ours
    daemon.cli("sim", "clear", check=True)
    daemon.wait_state(job, "succeeded")


def test_ramp_up_reservation_prevents_a_burst_of_starts(daemon: RunningDaemon) -> None:
    """Ten jobs that allocate 8 GiB only after 1.5 s: with nothing allocated yet, a naive
    scheduler would start them all and they would run out of memory (task-spooler #59)."""
    ids = [
        daemon.submit(gated(daemon, "g", "8GiB", delay_s=1.5), mem_bytes=8 * GiB) for _ in range(10)
    ]
    wait_for(lambda: sum(daemon.state(i) != "queued" for i in ids) >= 2)
    wait_for(lambda: daemon.client.gpus().gpus[0].mem_used_bytes == 16 * GiB, what="ramp-up")
    states = [daemon.state(i) for i in ids]
    assert states.count("queued") == 8, states
    open_gate(daemon, "g")
    for job_id in ids:
        job = daemon.wait_state(job_id, "succeeded", "failed", timeout_s=60)
        assert job.state == "succeeded", daemon.cli("logs", str(job_id)).stderr


def test_cpu_only_jobs_do_not_wait_behind_gpu_jobs(daemon: RunningDaemon) -> None:
    blocker = daemon.submit(gated(daemon, "g"), exclusive=True)
    daemon.wait_state(blocker, "starting", "running")
    gpu_job = daemon.submit("true", exclusive=True)
    cpu_job = daemon.submit("echo on the cpu: ${CUDA_VISIBLE_DEVICES:-none}", gpus=0)
    daemon.wait_state(cpu_job, "succeeded")
    assert daemon.state(gpu_job) == "queued"
    assert daemon.client.logs(cpu_job) == b"on the cpu: none\n"
    open_gate(daemon, "g")
    daemon.wait_state(gpu_job, "succeeded")


def test_jobs_see_their_gpus_by_uuid_in_pci_bus_order(make_daemon) -> None:  # type: ignore[no-untyped-def]
    daemon = make_daemon("sim:2x24GiB")
    job = daemon.submit(
        'echo "$CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER $GPUGATE_JOB_ID"', gpus=2, mem_bytes=1 * GiB
    )
    daemon.wait_state(job, "succeeded")
    visible, order, job_id = daemon.client.logs(job).decode().split()
    uuids = {g.uuid for g in daemon.client.gpus().gpus}
    assert set(visible.split(",")) == uuids and len(uuids) == 2
    assert (order, job_id) == ("PCI_BUS_ID", str(job))


def test_a_dependency_runs_after_success_and_is_cancelled_after_failure(
    daemon: RunningDaemon,
) -> None:
    first = daemon.submit(gated(daemon, "g1"), gpus=0)
    after_ok = daemon.submit("echo second", gpus=0, after=[first])
    reason = wait_for(
        lambda: (r := daemon.client.show(after_ok).job.reason).startswith("after") and r
    )
    assert reason == f"after job {first} (running)"
    open_gate(daemon, "g1")
    daemon.wait_state(after_ok, "succeeded")
    failing = daemon.submit("exit 3", gpus=0)
    never = daemon.submit("echo never", gpus=0, after=[failing])
    job = daemon.wait_state(never, "cancelled")
    assert job.reason == f"dependency job {failing} ended failed"
    assert daemon.client.show(failing).job.exit_code == 3


def test_cancel_stops_the_whole_process_group(daemon: RunningDaemon, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    job = daemon.submit(f"sleep 300 & echo $! > {pidfile}; wait", gpus=0)
    child = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()))
    result = daemon.cli("cancel", str(job), check=True)
    assert f"job {job}" in result.stdout
    done = daemon.wait_state(job, "cancelled")
    assert done.reason.startswith("cancelled by user")
    assert wait_for(
        lambda: not Path(f"/proc/{child}").exists() or _zombie(child), what="child gone"
    )


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_job_ignoring_sigterm_is_killed_after_the_grace_period(daemon: RunningDaemon) -> None:
    job = daemon.submit("trap '' TERM; echo ready; while true; do sleep 0.1; done", gpus=0)
    wait_for(lambda: daemon.client.logs(job) == b"ready\n")
    daemon.client.cancel(job)
    done = daemon.wait_state(job, "cancelled", timeout_s=15)
    assert "cancelled by user" in done.reason


def test_hold_release_and_priority(daemon: RunningDaemon) -> None:
    job = daemon.submit("echo held", gpus=0, hold=True)
    assert daemon.client.show(job).job.state == "held"
    assert (
        daemon.cli("priority", str(job), "7", check=True).stdout.strip() == f"job {job}: priority 7"
    )
    daemon.cli("release", str(job), check=True)
    done = daemon.wait_state(job, "succeeded")
    assert done.priority == 7
    history = [(t.from_state, t.to_state, t.reason) for t in daemon.client.show(job).history]
    assert ("held", "held", "priority 0 -> 7 by user") in history
    refused = daemon.cli("hold", str(job))
    assert refused.returncode == 1 and "succeeded: it cannot become held" in refused.stderr


def test_history_sets_the_expectation_of_a_repeated_command(daemon: RunningDaemon) -> None:
    command = "gpugate sim use --mem 3GiB --util 20 && sleep 0.6"
    first = daemon.submit(command)  # unknown size: waits for an idle GPU, reserves it all
    first_view = daemon.client.show(first).job
    assert first_view.expectation == "default"
    done = daemon.wait_state(first, "succeeded")
    assert done.peak_mem_bytes == 3 * GiB
    again = daemon.client.show(daemon.submit(command)).job
    assert (again.expectation, again.mem_bytes) == ("history", 3 * GiB)
    assert first_view.expected_run_s is None
    assert again.expected_run_s == pytest.approx(done.ended_at - done.started_at)
    shown = daemon.cli("show", str(again.id), check=True).stdout
    assert "run " in shown and "(history)" in shown
