"""The shortcuts that make a pass cheap must not change what it decides or says.

- A screen (``core.admission``) refuses most jobs without asking the admission rules about
  every GPU: it must never refuse a job the rules would place, and a pass with screens must
  answer exactly like one that checks every job in full.
- Waiting reasons are written only when read, from the loads as they were when the job
  was refused, even though later starts in the same pass change those loads.
- The simulated machine hands the same GPU views and usage to passes that see no change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from hypothesis import given, settings
from hypothesis import strategies as st

from gpugate.core import admission
from gpugate.core.admission import SCREENS, screen_refuses
from gpugate.core.load import GpuLoad
from gpugate.core.placement import place
from gpugate.core.policy import Admission, GpuLimits, Policy
from gpugate.core.schedule import schedule
from gpugate.core.types import Drain, GpuView, SchedulingReply, SchedulingRequest, WaitingReasons
from gpugate.model import WHOLE_GPU, Expectation, ExpectationSource, Job, JobUsage
from gpugate.sim.interference import NONE
from gpugate.sim.machine import SimMachine
from gpugate.states import JobState
from gpugate.units import GiB
from tests.unit.factories import gpu, job, request, running, seen
from tests.unit.sim_factories import sim_job

NOW = 10_000.0
SETTINGS = settings(max_examples=300, deadline=None)
NO_AGING = Policy(aging_per_hour=0.0)


# ---------------------------------------------------------------------------------------
# Random machines, holders and queues
# ---------------------------------------------------------------------------------------
# Sizes on a 4 GiB grid and lines at 50/75/100%: a job often needs exactly the room left,
# or brings a GPU exactly to its utilization line, where an off-by-one would show.
@st.composite
def gpu_views(draw: st.DrawFn) -> list[GpuView]:
    views = []
    for index in range(draw(st.integers(1, 6))):
        total = draw(st.sampled_from((16, 24))) * GiB
        used = min(total, draw(st.sampled_from((0, 0, 4, 8, 12, 16))) * GiB)
        util = draw(st.sampled_from((None, 0.0, 25.0, 50.0, 75.0, 99.5)))
        views.append(GpuView(f"GPU-{index}", index, total, used, util))
    return views


@st.composite
def expectations(draw: st.DrawFn) -> Expectation:
    if draw(st.integers(0, 3)) == 0:
        return WHOLE_GPU
    mem = draw(st.sampled_from((0, 4, 8, 12, 20))) * GiB
    util = draw(st.sampled_from((0.0, 5.0, 25.0, 50.0)))
    return Expectation(mem, util, ExpectationSource.DECLARED)


@st.composite
def jobs_on(
    draw: st.DrawFn, gpus: Sequence[GpuView]
) -> tuple[list[Job], dict[int, dict[str, JobUsage]]]:
    """Holders (ids 1..) then a queue, sharing few shapes so that shapes repeat."""
    uuids = [g.uuid for g in gpus]
    holders: list[Job] = []
    usage: dict[int, dict[str, JobUsage]] = {}
    for job_id in range(1, draw(st.integers(0, 5)) + 1):
        on = tuple(draw(st.lists(st.sampled_from(uuids), min_size=1, max_size=2, unique=True)))
        holders.append(
            job(
                job_id,
                expected=draw(expectations()),
                gpus=len(on),
                state=draw(st.sampled_from((JobState.STARTING, JobState.RUNNING))),
                exclusive=draw(st.integers(0, 5)) == 0,
                on=on,
                started_at=NOW - draw(st.sampled_from((0.0, 30.0, 600.0))),
            )
        )
        if draw(st.booleans()):
            usage[job_id] = {uuid: JobUsage(draw(st.integers(0, 5)) * 4 * GiB, 25.0) for uuid in on}
    first = len(holders) + 1
    queue = [
        job(
            job_id,
            expected=draw(expectations()),
            gpus=draw(st.integers(1, 3)),
            priority=draw(st.integers(0, 1)),
            submitted_at=float(draw(st.sampled_from((0.0, NOW - 3600, NOW - 10)))) + job_id,
            exclusive=draw(st.integers(0, 3)) == 0,
            state=JobState.HELD if draw(st.integers(0, 12)) == 0 else JobState.QUEUED,
        )
        for job_id in range(first, first + draw(st.integers(0, 14)))
    ]
    return holders + queue, usage


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    return Policy(
        admission=draw(st.sampled_from(list(Admission))),
        limits=GpuLimits(
            util_headroom_pct=draw(st.sampled_from((50.0, 75.0, 100.0))),
            mem_headroom_pct=draw(st.sampled_from((50.0, 75.0, 100.0))),
        ),
        per_gpu_limits={"1": GpuLimits(util_headroom_pct=75.0, mem_headroom_pct=75.0)},
        aging_per_hour=draw(st.sampled_from((0.0, 1.0))),
        backfill=draw(st.booleans()),
        max_head_wait_s=draw(st.sampled_from((0.0, 1800.0, float("inf")))),
    )


@st.composite
def requests(draw: st.DrawFn) -> SchedulingRequest:
    gpus = draw(gpu_views())
    jobs, usage = draw(jobs_on(gpus))
    return SchedulingRequest(NOW, gpus, jobs, draw(policies()), usage=usage)


# ---------------------------------------------------------------------------------------
# Screens against the rules
# ---------------------------------------------------------------------------------------
class LetsEveryoneThrough:
    """A screen that refuses no one: every job is checked by the rules, GPU by GPU."""

    def __init__(self, open_loads: Sequence[GpuLoad], policy: Policy) -> None:
        pass

    def first_admissible(self, jobs: Sequence[Job], start: int) -> int:
        return start


@contextmanager
def every_job_checked_in_full() -> Iterator[None]:
    kept = dict(SCREENS)
    SCREENS.update(dict.fromkeys(Admission, LetsEveryoneThrough))
    try:
        yield
    finally:
        SCREENS.update(kept)


@st.composite
def gpu_loads(draw: st.DrawFn, policy: Policy) -> list[GpuLoad]:
    """Loads as a pass sees them, every field drawn on its own, on the 4 GiB and 25% grid:
    taken, drained, idle, busy, and exactly at a line."""
    loads = []
    for view in draw(gpu_views()):
        taken_by = st.none() | st.sampled_from((1, 2))
        loads.append(
            GpuLoad(
                view=view,
                limits=policy.limits_for(view.uuid, view.index),
                mem_bytes=draw(st.sampled_from((0, 4, 8, 12, 16, 20))) * GiB,
                reserved_bytes=draw(st.sampled_from((0, 4))) * GiB,
                util_pct=draw(st.sampled_from((0.0, 25.0, 50.0, 75.0, 100.0))),
                job_ids=draw(st.sampled_from(([], [], [1], [1, 2]))),
                exclusive_job=draw(taken_by) if draw(st.integers(0, 4)) == 0 else None,
                whole_job=draw(taken_by) if draw(st.integers(0, 4)) == 0 else None,
                drained_for=3 if draw(st.integers(0, 4)) == 0 else None,
                started_now_bytes=draw(st.sampled_from((0, 0, 4))) * GiB,
            )
        )
    return loads


@st.composite
def queues(draw: st.DrawFn) -> list[Job]:
    return [
        job(
            job_id,
            expected=draw(expectations()),
            gpus=draw(st.integers(1, 3)),
            exclusive=draw(st.integers(0, 3)) == 0,
        )
        for job_id in range(10, 10 + draw(st.integers(1, 12)))
    ]


@SETTINGS
@given(st.data(), policies(), queues())
def test_a_screen_never_refuses_a_job_the_rules_would_place(
    data: st.DataObject, policy: Policy, queue: list[Job]
) -> None:
    loads = data.draw(gpu_loads(policy))
    screen = SCREENS[policy.admission]([g for g in loads if g.drained_for is None], policy)
    fits = admission.FIT_CHECKS[policy.admission]
    for candidate in queue:
        if screen_refuses(screen, candidate):
            assert place(candidate, loads, fits, policy) == [], candidate
    # one sweep agrees with asking job by job
    refused = [screen_refuses(screen, j) for j in queue]
    first = refused.index(False) if False in refused else len(queue)
    assert screen.first_admissible(queue, 0) == first
    assert screen.first_admissible(queue, len(queue)) == len(queue)


def same_answer(fast: SchedulingReply, full: SchedulingReply) -> None:
    assert fast.starts == full.starts
    assert dict(fast.waiting) == dict(full.waiting)
    assert list(fast.waiting) == list(full.waiting)  # and in the same order
    assert (fast.cancels, fast.ramped) == (full.cancels, full.ramped)
    assert (fast.drain, fast.drained_for) == (full.drain, full.drained_for)
    assert fast.next_decision_at == full.next_decision_at


@SETTINGS
@given(requests())
def test_screened_passes_answer_like_passes_that_check_every_job(
    request: SchedulingRequest,
) -> None:
    """Same starts on the same GPUs, same drain, and for every waiting job the same
    reason, over two passes (the second keeps the first one's drain)."""
    fast = schedule(request)
    with every_job_checked_in_full():
        full = schedule(request)
    same_answer(fast, full)

    later = SchedulingRequest(
        NOW + 1, request.gpus, request.jobs, request.policy, request.usage, drain=fast.drain
    )
    fast_later = schedule(later)
    with every_job_checked_in_full():
        full_later = schedule(later)
    same_answer(fast_later, full_later)


def test_a_screened_job_gets_the_reason_a_full_check_gives() -> None:
    """The screen refuses all three queued jobs without asking the rules; each still gets
    the rules' reason for its own size."""
    jobs = [running(1, mem_gib=14), job(2, mem_gib=20), job(3, mem_gib=12), job(4, mem_gib=9)]
    reply = schedule(request([gpu(0, used_gib=14)], jobs, usage={1: {"GPU-0": seen(14)}}))

    assert reply.starts == ()
    assert reply.waiting == {
        2: "GPU0 mem 14.0 GiB + 20.0 GiB > 90% of 24.0 GiB",
        3: "GPU0 mem 14.0 GiB + 12.0 GiB > 90% of 24.0 GiB",
        4: "GPU0 mem 14.0 GiB + 9.0 GiB > 90% of 24.0 GiB",
    }


# ---------------------------------------------------------------------------------------
# Reasons written when read, from the loads of their moment
# ---------------------------------------------------------------------------------------
def test_a_reason_tells_the_loads_its_job_was_refused_on_not_those_after_later_starts() -> None:
    """Job 1 (20 GiB) is refused while both GPUs hold 10 GiB; jobs 2 and 3 then start,
    one on each GPU. Read after the pass, job 1's reason still says 10 GiB on both."""
    gpus = [gpu(0, used_gib=10), gpu(1, used_gib=10)]
    jobs = [job(1, mem_gib=20), job(2, submitted_at=1), job(3, submitted_at=2)]
    reply = schedule(request(gpus, jobs, policy=NO_AGING))

    assert [(s.job_id, s.gpu_uuids) for s in reply.starts] == [(2, ("GPU-0",)), (3, ("GPU-1",))]
    assert reply.waiting == {
        1: "GPU0 mem 10.0 GiB + 20.0 GiB > 90% of 24.0 GiB;"
        " GPU1 mem 10.0 GiB + 20.0 GiB > 90% of 24.0 GiB"
    }


def test_jobs_refused_between_two_starts_see_the_first_start_only() -> None:
    """One 24 GiB GPU: job 1 (8 GiB) starts, job 2 (16 GiB) is refused on 8 GiB in use,
    job 3 (4 GiB) starts. Job 2's reason counts job 1's reservation, not job 3's."""
    jobs = [
        job(1, submitted_at=0),
        job(2, mem_gib=16, submitted_at=1),
        job(3, mem_gib=4, submitted_at=2),
    ]
    reply = schedule(request([gpu(0)], jobs, policy=NO_AGING))

    assert [s.job_id for s in reply.starts] == [1, 3]
    assert reply.waiting == {
        2: "GPU0 mem 8.0 GiB (incl. 8.0 GiB reserved) + 16.0 GiB > 90% of 24.0 GiB"
    }


def test_a_drained_heads_reason_tells_the_loads_before_the_drain() -> None:
    """Job 2 waited past the bound: its reason is the refusal on GPU0 as it was, then the
    drain; job 3 behind it is refused by the drained GPU."""
    policy = Policy(max_head_wait_s=600.0)
    jobs = [running(1, mem_gib=14), job(2, mem_gib=20), job(3, mem_gib=1, submitted_at=5)]
    reply = schedule(
        request(
            [gpu(0, used_gib=14)], jobs, now=1000, policy=policy, usage={1: {"GPU-0": seen(14)}}
        )
    )

    assert reply.drain == Drain(2, ("GPU-0",))
    assert reply.waiting == {
        2: "GPU0 mem 14.0 GiB + 20.0 GiB > 90% of 24.0 GiB;"
        " backfill stopped for it (waited past bound)",
        3: "GPU0 kept free for job 2 (waited past backfill bound)",
    }


class CountingWriter:
    def __init__(self) -> None:
        self.written: list[int] = []

    def write(self, job: Job) -> str:
        self.written.append(job.id)
        return f"reason of {job.id}"


def test_waiting_reasons_are_written_once_and_only_when_read() -> None:
    writer = CountingWriter()
    reasons = WaitingReasons()
    reasons.note(job(1), "held")
    reasons.note_all([job(2), job(3)], writer)
    reasons.note_all([], writer)

    assert (len(reasons), list(reasons), 2 in reasons, 9 in reasons) == (3, [1, 2, 3], True, False)
    assert writer.written == []  # counting, listing and looking up write nothing

    assert reasons[2] == "reason of 2"
    assert reasons[2] == "reason of 2"
    assert writer.written == [2]
    assert reasons == {1: "held", 2: "reason of 2", 3: "reason of 3"}
    assert writer.written == [2, 3]


def test_a_later_note_replaces_an_earlier_one_in_its_place() -> None:
    reasons = WaitingReasons()
    reasons.note_all([job(1), job(2)], "first")
    reasons.note(job(1), "second")
    assert list(reasons.items()) == [(1, "second"), (2, "first")]

    reasons.note(job(3), "after a read")
    assert dict(reasons) == {1: "second", 2: "first", 3: "after a read"}


def test_reasons_read_as_plain_strings() -> None:
    reply = schedule(request([gpu(0, util_pct=95)], [job(1)]))
    assert isinstance(reply.waiting[1], str)
    assert dict(reply.waiting) == {1: "GPU0 util 95% > 90%"}
    assert reply.waiting.get(2) is None


# ---------------------------------------------------------------------------------------
# The simulated machine's views, kept between passes
# ---------------------------------------------------------------------------------------
def test_the_machine_shows_each_change_and_the_same_views_while_nothing_changes() -> None:
    machine = SimMachine(2, 24 * GiB, NONE)
    idle = machine.views()
    assert machine.views() is idle  # nothing changed: the same views

    machine.start(sim_job(7, mem_gib=8, util_pct=30), ["SIM-GPU-1"], now=0.0)
    assert [g.mem_used_bytes for g in machine.views()] == [0, 0]  # still loading
    assert machine.usage() == {}

    machine.allocate(7, now=10.0)
    assert [(g.mem_used_bytes, g.util_pct) for g in machine.views()] == [(0, 0.0), (8 * GiB, 30.0)]
    assert machine.usage() == {7: {"SIM-GPU-1": JobUsage(8 * GiB, 30.0)}}

    machine.remove(7, now=20.0)
    assert [g.mem_used_bytes for g in machine.views()] == [0, 0]
    assert machine.usage() == {}
