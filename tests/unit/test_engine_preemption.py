"""The daemon's side of preemption and out-of-memory requeue, on the fake runner with a
hand clock (the races a real daemon only hits now and then are set up on purpose)."""

from __future__ import annotations

import signal

from gpugate.daemon.engine import Engine
from gpugate.daemon.recovery import recover
from gpugate.daemon.service import Service
from gpugate.model import GpuProcess
from gpugate.runner.fake import FakeRunner
from gpugate.states import JobState
from gpugate.units import GiB
from tests.unit.test_engine import Clock, StaticMonitor, rig, state
from tests.unit.test_engine import submit as submit_job

Rig = tuple[Engine, Service, FakeRunner, StaticMonitor, Clock]
rig = rig  # the fixture, shared with test_engine


def submit(service: Service, **fields: object) -> int:
    job = submit_job(service, **fields)
    service.engine.paths.job_dir(job).mkdir(parents=True, exist_ok=True)
    return job


def seen(engine: Engine, monitor: StaticMonitor, uses: dict[int, float]) -> None:
    """The monitor sees each job's shim using ``uses[job]`` GiB."""
    monitor.processes = tuple(
        GpuProcess(engine.active[j].pid or 0, int(gib * GiB), 10.0) for j, gib in uses.items()
    )
    engine.observe(monitor.snapshot())


def asked(runner: FakeRunner) -> list[int]:
    return [job for job, sig in runner.signals if sig == signal.SIGUSR1]


def test_one_victim_and_the_urgent_job_starts_as_soon_as_it_has_yielded(rig: Rig) -> None:
    """Two checkpointable 10 GiB jobs run; an urgent 10 GiB job arrives: one victim is
    asked. It exits 75 before the monitor's next sample: its memory is taken off the last
    sample at once, so the urgent job starts in that same tick, and nobody else is asked."""
    engine, service, runner, monitor, clock = rig
    first = submit(service, mem_bytes=10 * GiB, util_pct=10, preempt="checkpoint", command="a")
    second = submit(service, mem_bytes=10 * GiB, util_pct=10, preempt="checkpoint", command="b")
    engine.tick()
    seen(engine, monitor, {first: 10, second: 10})
    engine.tick()
    clock.now += 400  # past the minimum run time
    urgent = submit(service, mem_bytes=10 * GiB, util_pct=10, priority=5, command="urgent")
    engine.tick()
    assert len(asked(runner)) == 1
    victim = asked(runner)[0]
    runner.finish(victim, 75, clock.now)
    engine.exited.add(victim)
    clock.now += 0.01
    engine.tick()
    assert state(engine, urgent) is JobState.STARTING
    assert state(engine, victim) is JobState.QUEUED
    assert asked(runner) == [victim]


def test_only_this_runs_log_is_evidence_of_out_of_memory_even_after_a_restart(
    rig: Rig,
) -> None:
    """Run 1 died of OOM (requeued). Run 2 starts, the daemon restarts, run 2 fails with
    an ordinary error: the OOM line of run 1, still in the appended log, does not count."""
    engine, service, runner, monitor, clock = rig
    job = submit(service, mem_bytes=4 * GiB, util_pct=10)
    engine.tick()
    log = engine.paths.job_dir(job) / "stderr.log"
    log.write_text("RuntimeError: CUDA out of memory. Tried to allocate 2 GiB\n")
    runner.finish(job, 1, clock.now)
    engine.exited.add(job)
    engine.tick()  # requeued with more, and relaunched in the same tick
    assert engine.store.get(job).oom_retries == 1
    runner._exits.pop(job, None)  # the relaunch removed the old exit record
    restarted = Engine(
        engine.store, runner, monitor, engine.config, engine.paths, clock, session_of=lambda p: p
    )
    restarted.observe(monitor.snapshot())
    recover(restarted)
    restarted.tick()
    with open(log, "a") as err:
        err.write("ValueError: bad config key\n")
    runner.finish(job, 1, clock.now)
    restarted.exited.add(job)
    restarted.tick()
    done = restarted.store.get(job)
    assert (done.state, done.reason, done.oom_retries) == (JobState.FAILED, "exited 1", 1)


def test_a_requeue_victim_that_finishes_its_work_succeeds(rig: Rig) -> None:
    engine, service, runner, monitor, clock = rig
    victim = submit(service, mem_bytes=16 * GiB, util_pct=10, preempt="requeue", command="v")
    engine.tick()
    seen(engine, monitor, {victim: 16})
    engine.tick()
    clock.now += 400
    runner.ignores_sigterm.add(victim)
    submit(service, mem_bytes=10 * GiB, util_pct=10, priority=5, command="urgent")
    engine.tick()
    assert (victim, signal.SIGTERM) in runner.signals
    runner.finish(victim, 0, clock.now)
    engine.exited.add(victim)
    engine.tick()
    assert engine.store.get(victim).state is JobState.SUCCEEDED


def test_an_out_of_memory_requeue_clears_what_preemption_had_set(rig: Rig) -> None:
    """Asked to checkpoint for job w, the victim dies of OOM while saving: requeued with
    more memory, it no longer counts as being asked (which would block all preemption)."""
    engine, service, runner, monitor, clock = rig
    job = submit(service, mem_bytes=4 * GiB, util_pct=10, preempt="checkpoint", command="j")
    engine.tick()
    seen(engine, monitor, {job: 4})
    engine.tick()
    clock.now += 400
    submit(service, mem_bytes=19 * GiB, util_pct=10, priority=5, command="w")
    engine.tick()
    assert engine.active[job].checkpoint_requested_at is not None
    log = engine.paths.job_dir(job) / "stderr.log"
    log.write_text("torch.OutOfMemoryError: CUDA out of memory (while saving)\n")
    runner.finish(job, 1, clock.now)
    engine.exited.add(job)
    engine.tick()
    requeued = engine.active[job]
    assert (requeued.state, requeued.oom_retries) == (JobState.QUEUED, 1)
    assert requeued.checkpoint_requested_at is None and requeued.peak_mem_bytes is None


def test_the_escalation_leaves_a_job_being_cancelled_alone(rig: Rig) -> None:
    engine, service, runner, _, clock = rig
    job = submit(service, gpus=0, preempt="checkpoint")
    engine.tick()
    runner.ignores_sigterm.add(job)
    service.checkpoint(job)
    clock.now += engine.config.checkpoint_grace_s - 1
    service.cancel(job)
    clock.now += 2
    engine.tick()
    assert state(engine, job) is JobState.RUNNING
    assert signal.SIGSTOP not in [sig for _, sig in runner.signals]


def test_a_checkpoint_that_lands_as_the_job_is_suspended_still_requeues_it(rig: Rig) -> None:
    """Asked to checkpoint, the job saves slowly (a busy machine): past the grace it is
    suspended, which forgets the request, and its exit 75 lands just then. It is the
    checkpoint it was asked for: requeued, not failed."""
    engine, service, runner, _, clock = rig
    job = submit(service, gpus=0, preempt="checkpoint")
    engine.tick()
    service.checkpoint(job)
    clock.now += engine.config.checkpoint_grace_s + 1
    engine.tick()
    assert state(engine, job) is JobState.SUSPENDED
    assert engine.active[job].checkpoint_requested_at is None
    runner.finish(job, 75, clock.now)  # it had exited as the SIGSTOP was sent
    engine.exited.add(job)
    engine.tick()
    edges = [(t.from_state, t.to_state, t.reason) for t in engine.store.history(job)]
    assert (JobState.SUSPENDED, JobState.QUEUED) in [(a, b) for a, b, _ in edges]
    assert "checkpointed and requeued" in edges[-3][2]
    assert state(engine, job) is JobState.RUNNING  # relaunched at once: a CPU slot is free
    assert engine.active[job].checkpoints == 1
