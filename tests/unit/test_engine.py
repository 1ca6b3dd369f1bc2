"""The daemon's tick, driven with a fake runner, a static monitor and a hand-set clock:
reaping, recording exits, lost jobs, cancel escalation, launch failures, ramp-up."""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from gpugate.api.schemas import JobSubmission
from gpugate.daemon.config import DaemonConfig
from gpugate.daemon.engine import Engine
from gpugate.daemon.identity import AuditLog, Peer
from gpugate.daemon.paths import StatePaths
from gpugate.daemon.service import Service, ServiceError
from gpugate.model import GpuProcess, GpuSnapshot, MachineSnapshot
from gpugate.runner.fake import FakeRunner
from gpugate.runner.local import read_exit_file
from gpugate.states import JobState
from gpugate.store.memory import MemoryStore
from gpugate.units import GiB

UUID = "GPU-test-0"


class StaticMonitor:
    backend = "static"

    def __init__(self) -> None:
        self.processes: tuple[GpuProcess, ...] = ()

    def snapshot(self) -> MachineSnapshot:
        used = sum(p.mem_bytes or 0 for p in self.processes)
        gpu = GpuSnapshot(0, UUID, "Test GPU", 24 * GiB, used, 0.0, self.processes)
        return MachineSnapshot("static", 0.0, (gpu,))

    def job_env(self, base: object) -> dict[str, str]:
        return {"FROM_MONITOR": "1"}

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rig(tmp_path: Path) -> tuple[Engine, Service, FakeRunner, StaticMonitor, Clock]:
    runner, monitor, clock = FakeRunner(), StaticMonitor(), Clock()
    engine = Engine(
        MemoryStore(),
        runner,
        monitor,
        DaemonConfig(),
        StatePaths(tmp_path),
        clock,
        session_of=lambda pid: pid,
    )  # in these tests a GPU pid is its job's shim
    engine.observe(monitor.snapshot())
    return engine, Service(engine, wake=lambda: None), runner, monitor, clock


def submit(service: Service, **fields: object) -> int:
    fields.setdefault("cwd", "/")
    fields.setdefault("command", "train")
    return service.submit([JobSubmission(**fields)], owner_uid=0)[0].id  # type: ignore[arg-type]


def state(engine: Engine, job_id: int) -> JobState:
    return engine.store.get(job_id).state


def test_a_started_job_gets_its_gpu_env_and_its_exit_is_recorded(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, runner, _, clock = rig
    job = submit(service, mem_bytes=4 * GiB)
    assert engine.tick()
    ((launched, env),) = runner.launched
    assert launched == job and env["CUDA_VISIBLE_DEVICES"] == UUID
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" and env["FROM_MONITOR"] == "1"
    assert state(engine, job) is JobState.STARTING
    runner.finish(job, 0, at=clock.now + 5)
    engine.check_all_exits = True
    engine.tick()
    done = engine.store.get(job)
    assert (done.state, done.exit_code, done.ended_at) == (JobState.SUCCEEDED, 0, clock.now + 5)
    assert job not in engine.active


def test_only_jobs_flagged_by_an_exit_event_are_checked_between_fallback_ticks(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, runner, _, _ = rig
    job = submit(service, mem_bytes=GiB)
    engine.tick()
    engine.tick()  # the startup full check is spent
    runner.finish(job, 1, at=1.0)
    engine.tick()
    assert state(engine, job) is JobState.STARTING  # no event yet: not looked at
    engine.exited.add(job)
    engine.tick()
    assert state(engine, job) is JobState.FAILED


def test_a_job_that_vanishes_without_a_record_is_lost(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, runner, _, _ = rig
    job = submit(service, gpus=0)
    engine.tick()
    runner.vanish(job)
    engine.check_all_exits = True
    engine.tick()
    assert state(engine, job) is JobState.LOST


def test_cancel_sends_sigterm_then_sigkill_after_the_grace_period(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, runner, _, clock = rig
    job = submit(service, gpus=0)
    engine.tick()
    runner.ignores_sigterm.add(job)
    service.cancel(job)
    assert runner.signals == [(job, signal.SIGTERM)]
    clock.now += engine.config.cancel_grace_s - 1
    engine.tick()
    assert state(engine, job) is JobState.RUNNING
    clock.now += 2
    engine.tick()  # SIGKILL now; the next pass sees the group gone
    engine.tick()
    assert runner.signals[-1] == (job, signal.SIGKILL)
    assert state(engine, job) is JobState.CANCELLED
    assert [t.to_state for t in engine.store.history(job)][-1] is JobState.CANCELLED


def test_a_job_that_cannot_be_launched_fails_with_the_reason(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, runner, _, _ = rig
    job = submit(service, gpus=0)
    runner.fail_launch[job] = "working directory /gone does not exist"
    engine.tick()
    failed = engine.store.get(job)
    assert failed.state is JobState.FAILED
    assert failed.reason == "could not start: working directory /gone does not exist"


def test_starting_becomes_running_once_seen_at_its_level_and_peaks_are_kept(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, runner, monitor, clock = rig
    job = submit(service, mem_bytes=10 * GiB, util_pct=30)
    engine.tick()
    pid = engine.active[job].pid
    assert pid is not None
    monitor.processes = (GpuProcess(pid, 5 * GiB, 10.0),)
    engine.observe(monitor.snapshot())
    engine.tick()
    assert state(engine, job) is JobState.STARTING  # 5 of 10 GiB: still ramping
    monitor.processes = (GpuProcess(pid, 10 * GiB, 35.0),)
    engine.observe(monitor.snapshot())
    engine.tick()
    assert state(engine, job) is JobState.RUNNING
    runner.finish(job, 0, clock.now)
    engine.exited.add(job)
    engine.tick()
    done = engine.store.get(job)
    assert (done.peak_mem_bytes, done.peak_util_pct) == (10 * GiB, 35.0)


def test_a_second_job_waits_while_the_first_reserves_memory_it_has_not_allocated(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, _, _, _ = rig
    first = submit(service, mem_bytes=12 * GiB)
    second = submit(service, mem_bytes=12 * GiB)
    engine.tick()
    assert state(engine, first) is JobState.STARTING
    assert state(engine, second) is JobState.QUEUED
    assert engine.reasons[second].startswith(
        "GPU0 mem 12.0 GiB (incl. 12.0 GiB reserved) + 12.0 GiB > 90%"
    )


def test_submit_refuses_a_whole_batch_with_one_bad_job_and_stores_nothing(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, _, _, _ = rig
    good = JobSubmission(command="ok", cwd="/", mem_bytes=GiB)
    too_big = JobSubmission(command="big", cwd="/", mem_bytes=23 * GiB)
    with pytest.raises(ServiceError, match="job 2 can never start"):
        service.submit([good, too_big], owner_uid=0)
    assert engine.store.active() == [] and engine.active == {}


def test_illegal_user_actions_are_refused_with_409(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, _runner, _, _clock = rig
    job = submit(service, gpus=0)
    engine.tick()
    with pytest.raises(ServiceError) as refused:
        service.hold(job)
    assert refused.value.status == 409 and "running: it cannot become held" in str(refused.value)
    with pytest.raises(ServiceError) as unknown:
        service.cancel(77)
    assert unknown.value.status == 404


def test_a_shim_exiting_between_the_two_checks_keeps_its_exit_code(rig) -> None:  # type: ignore[no-untyped-def]
    """The shim writes its record, then exits. Looking at the record first and liveness
    second could see neither (no record yet, then dead) and call the job lost."""
    engine, service, runner, _, clock = rig
    job = submit(service, gpus=0)
    engine.tick()

    def exits_while_checked(checked: object) -> bool:
        runner.finish(job, 7, clock.now)  # the shim records, then dies, right now
        return False

    runner.is_alive = exits_while_checked  # type: ignore[method-assign]
    engine.check_all_exits = True
    engine.tick()
    done = engine.store.get(job)
    assert (done.state, done.exit_code) == (JobState.FAILED, 7)


def test_submit_refuses_a_working_directory_that_does_not_exist(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, _, _, _ = rig
    for cwd, why in (("/no/such/dir", "does not exist"), ("relative/dir", "is not absolute")):
        with pytest.raises(ServiceError, match=why):
            submit(service, cwd=cwd, gpus=0)
    assert engine.store.active() == []


def test_peaks_are_stored_while_the_job_runs_so_a_crash_keeps_them(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, _, monitor, clock = rig
    job = submit(service, mem_bytes=4 * GiB)
    engine.tick()
    monitor.processes = (GpuProcess(engine.active[job].pid or 0, 3 * GiB, 50.0),)
    engine.observe(monitor.snapshot())
    clock.now += 31
    engine.tick()
    assert engine.store.get(job).peak_mem_bytes == 3 * GiB  # stored, not only in memory


def test_recovery_requeues_a_job_stored_as_starting_without_a_process(rig) -> None:  # type: ignore[no-untyped-def]
    """The daemon died between storing 'starting' and launching: no shim, no record. The
    job never ran, so it waits again, and starts at the next pass."""

    from gpugate.daemon.recovery import recover
    from gpugate.lifecycle import advance

    engine, service, _, _, clock = rig
    job = engine.active[submit(service, mem_bytes=GiB)]
    engine.commit([advance(job, JobState.STARTING, clock.now, "fits", gpu_uuids=(UUID,))])
    assert engine.active[job.id].pid is None
    notes = recover(engine)
    assert notes == [f"job {job.id}: the daemon stopped before its process started; queued again"]
    assert state(engine, job.id) is JobState.QUEUED
    assert engine.active[job.id].gpu_uuids == ()
    engine.tick()
    assert state(engine, job.id) is JobState.STARTING
    assert engine.active[job.id].pid is not None


def test_recovery_does_not_take_a_last_runs_exit_for_this_ones(rig) -> None:  # type: ignore[no-untyped-def]
    """Requeued after exit 75, admitted again, and the daemon died before launching: the
    exit file still holds the last run's 75. This run never started: it waits again."""

    from gpugate.daemon.recovery import recover
    from gpugate.lifecycle import advance

    engine, service, runner, _, clock = rig
    job = engine.active[submit(service, mem_bytes=GiB)]
    runner.finish(job.id, 75, clock.now - 5)  # the last run's record
    engine.commit(
        [
            advance(
                job, JobState.STARTING, clock.now, "fits", gpu_uuids=(UUID,), started_at=clock.now
            )
        ]
    )
    recover(engine)
    assert state(engine, job.id) is JobState.QUEUED
    runner.finish(job.id, 0, clock.now + 1)  # a record of this run: it did start
    engine.commit(
        [advance(engine.active[job.id], JobState.STARTING, clock.now, "fits", started_at=clock.now)]
    )
    recover(engine)
    engine.tick()
    assert state(engine, job.id) is JobState.SUCCEEDED


def test_a_batch_shares_one_environment_object_and_falls_back_to_the_requests(
    tmp_path: Path,
) -> None:
    """With the daemon's SQLite store, a sweep's jobs hold one env object between them."""
    from gpugate.store.sqlite import SqliteStore

    engine = Engine(
        SqliteStore(tmp_path / "db"),
        FakeRunner(),
        StaticMonitor(),
        DaemonConfig(),
        StatePaths(tmp_path),
        Clock(),
    )
    service = Service(engine, wake=lambda: None)
    sweep = [JobSubmission(command=f"run {i}", cwd="/", gpus=0, env={"A": "1"}) for i in range(3)]
    plain = JobSubmission(command="plain", cwd="/", gpus=0)
    jobs = service.submit([*sweep, plain], owner_uid=0, env={"FROM": "request"})
    envs = [engine.active[j.id].spec.env for j in jobs]
    assert envs[0] is envs[1] is envs[2] and envs[0] == {"A": "1"}
    assert envs[3] == {"FROM": "request"}


def test_a_job_starts_waiting_when_its_last_dependency_succeeds(rig) -> None:  # type: ignore[no-untyped-def]
    """Its aging and backfill bound count from then, not from its submission."""
    engine, service, runner, _, clock = rig
    first = submit(service, gpus=0, command="first")
    second = submit(service, gpus=0, command="second")
    waiter = submit(service, gpus=0, command="after both", after=[first, second])
    engine.tick()
    clock.now += 100
    runner.finish(first, 0, clock.now)
    engine.exited.add(first)
    engine.tick()
    assert engine.active[waiter].waiting_since == engine.active[waiter].submitted_at
    clock.now += 100
    runner.finish(second, 0, clock.now)
    engine.exited.add(second)
    engine.tick()
    assert engine.store.get(waiter).queued_at == clock.now


def test_a_submission_sends_only_what_was_set() -> None:
    """A field left at its default is not sent: a newer client still talks to a daemon
    that predates the field (``preempt`` was once a plain string there)."""

    sent = msgspec.json.decode(msgspec.json.encode(JobSubmission(command="sleep 1", cwd="/")))
    assert "preempt" not in sent
    assert (
        msgspec.json.decode(
            msgspec.json.encode(JobSubmission(command="sleep 1", cwd="/", preempt="checkpoint"))
        )["preempt"]
        == "checkpoint"
    )


@pytest.mark.parametrize("text", ["99999999999999999999999\n", "300\n", "-1\n", "x\n", ""])
def test_an_exit_file_holds_a_shell_status_or_nothing(tmp_path: Path, text: str) -> None:
    """0-255 only: anything else (a job's forgery, a half-written file) is no status."""
    (tmp_path / "exit").write_text(text)
    assert read_exit_file(tmp_path / "exit") is None
    (tmp_path / "exit").write_text("75\n")
    record = read_exit_file(tmp_path / "exit")
    assert record is not None and record.code == 75


def test_an_owner_may_not_resume_what_the_scheduler_suspended_for_another(rig) -> None:  # type: ignore[no-untyped-def]
    engine, service, _, _, _ = rig
    job = engine.active[submit(service)]
    engine.commit([(replace(job, state=JobState.SUSPENDED, preempted_for=99), None)])
    with pytest.raises(ServiceError, match="suspended to make room for job 99") as refused:
        service.check_resume(Peer(1, 1000, 1000), job.id)
    assert refused.value.status == 409
    service.check_resume(Peer(1, 0, 0), job.id)  # root (an admin) may


def test_the_audit_log_rotates_instead_of_filling_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AuditLog, "MAX_BYTES", 500)
    log = AuditLog(tmp_path / "audit.log")
    for n in range(20):
        log.refused(Peer(n, 1000, 1000), "cancel", n, "not yours")
    assert (tmp_path / "audit.log").stat().st_size < 700
    assert (tmp_path / "audit.log.1").exists()
    assert not (tmp_path / "audit.log.2").exists()  # one old file kept, no more


def test_a_monitor_read_that_finishes_after_a_newer_one_is_dropped(tmp_path: Path) -> None:
    """The monitor loop reads in a thread; `sim load` reads and observes at once. A read
    that began before such a one and finishes after it must not put the older view back
    (it did: the GPU history's points came out of time order)."""
    import asyncio
    import threading

    from gpugate.daemon.app import Daemon

    class SlowMonitor(StaticMonitor):
        def __init__(self) -> None:
            super().__init__()
            self.reading = [threading.Event(), threading.Event()]
            self.go_on = threading.Event()

        def snapshot(self) -> MachineSnapshot:
            read = sum(e.is_set() for e in self.reading)
            if read < len(self.reading):
                self.reading[read].set()
                self.go_on.wait(30)
                self.go_on.clear()
            return super().snapshot()

    monitor = SlowMonitor()
    config = replace(DaemonConfig(), monitor_interval_s=0.01)
    daemon = Daemon(StatePaths(tmp_path), config, MemoryStore(), FakeRunner(), monitor)
    newer = replace(StaticMonitor.snapshot(monitor), taken_at=5.0)

    async def scenario() -> None:
        loop = asyncio.create_task(daemon._monitor_loop())
        await asyncio.to_thread(monitor.reading[0].wait, 30)  # the loop's read is under way
        daemon.engine.observe(newer)  # what `sim load` does meanwhile
        monitor.go_on.set()
        await asyncio.to_thread(monitor.reading[1].wait, 30)  # the first read was handled
        assert daemon.engine.snapshot is newer
        daemon._stopping.set()
        monitor.go_on.set()
        await loop

    asyncio.run(scenario())
