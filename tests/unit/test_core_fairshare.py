"""Fair share: the decayed usage ledger, the points, and what they do to the order."""

from __future__ import annotations

import pytest

from gpugate.core.fairshare import UsageLedger, current_usage, fair_share_points
from gpugate.core.policy import Policy
from gpugate.core.schedule import schedule
from tests.unit.factories import gpu, job, request, running

ALICE, BOB = 1000, 1001
HOUR = 3600.0


def test_usage_halves_every_half_life() -> None:
    ledger = UsageLedger(half_life_s=HOUR)
    ledger.add(ALICE, 3600.0, at=0.0)
    ledger.add(BOB, 100.0, at=HOUR)  # added after a half-life: Alice's is halved by then
    assert ledger.at(HOUR) == pytest.approx({ALICE: 1800.0, BOB: 100.0})
    assert ledger.at(3 * HOUR) == pytest.approx({ALICE: 450.0, BOB: 25.0})


def test_running_jobs_count_as_they_go() -> None:
    ledger = UsageLedger(half_life_s=HOUR)
    busy = running(1, "GPU-0", "GPU-1", gpus=2, started_at=100.0, owner=ALICE)
    assert current_usage(ledger, [busy], now=400.0) == {ALICE: 600.0}


def test_points_follow_slurms_classic_factor() -> None:
    """Alice used 3/4 of the recent GPU time, Bob 1/4, equal shares (1/2 each):
    Alice 2 x 2^-(0.75/0.5), Bob 2 x 2^-(0.25/0.5); a user who used nothing gets 2."""
    points = fair_share_points({ALICE: 3.0, BOB: 1.0}, [ALICE, BOB, 7], Policy())
    shares = 1 / 3  # three users in play: Alice, Bob and uid 7 (queued, no usage)
    assert points[ALICE] == pytest.approx(2 * 2 ** (-0.75 / shares))
    assert points[BOB] == pytest.approx(2 * 2 ** (-0.25 / shares))
    assert points[7] == pytest.approx(2.0)


def test_a_bigger_share_forgives_more_use() -> None:
    policy = Policy(shares={ALICE: 3.0})  # Alice deserves 3/4 of the machine
    points = fair_share_points({ALICE: 3.0, BOB: 1.0}, [ALICE, BOB], policy)
    assert points[ALICE] == pytest.approx(points[BOB])  # each used exactly their share


def test_nothing_changes_with_one_user_no_usage_or_no_weight() -> None:
    assert fair_share_points({ALICE: 5.0}, [ALICE], Policy()) == {}
    assert fair_share_points({}, [ALICE, BOB], Policy()) == {}
    assert fair_share_points({ALICE: 5.0}, [ALICE, BOB], Policy(fair_share_weight=0)) == {}


def test_the_user_who_used_less_goes_first_among_equals() -> None:
    """One free GPU, two equal jobs; Alice's was submitted first but she used the GPUs
    all morning: Bob's starts."""
    hers = job(1, mem_gib=20, owner=ALICE, submitted_at=0.0)
    his = job(2, mem_gib=20, owner=BOB, submitted_at=1.0)
    usage = {ALICE: 4 * HOUR, BOB: 0.1 * HOUR}
    reply = schedule(request([gpu(0)], [hers, his], user_usage=usage))
    assert [s.job_id for s in reply.starts] == [2]
    plain = schedule(request([gpu(0)], [hers, his]))
    assert [s.job_id for s in plain.starts] == [1]  # without usage: first come


def test_fair_share_does_not_override_a_priority_gap_larger_than_its_weight() -> None:
    hers = job(1, mem_gib=20, owner=ALICE, priority=5)
    his = job(2, mem_gib=20, owner=BOB)
    reply = schedule(request([gpu(0)], [hers, his], user_usage={ALICE: 9 * HOUR, BOB: 0.0}))
    assert [s.job_id for s in reply.starts] == [1]


def test_with_fair_share_a_deep_backlog_earns_no_aging_once_served() -> None:
    """Alice's job has waited 100 h (5 points of aging at 0.05/h), but one of her jobs
    started an hour ago: she is being served, so it ages only from then. Bob, who used
    less, goes first. Without that, 100 h of her backlog would beat fair share."""
    now = 100 * HOUR
    hers = job(1, mem_gib=20, owner=ALICE, submitted_at=0.0)
    his = job(2, mem_gib=20, owner=BOB, submitted_at=now - HOUR)
    usage = {ALICE: 10 * HOUR, BOB: 5 * HOUR}
    served = {ALICE: now - HOUR, BOB: now - 2 * HOUR}
    reply = schedule(
        request([gpu(0)], [hers, his], now=now, user_usage=usage, last_start_by_user=served)
    )
    assert [s.job_id for s in reply.starts] == [2]
    unserved = schedule(request([gpu(0)], [hers, his], now=now, user_usage=usage))
    assert [s.job_id for s in unserved.starts] == [1]  # never served: her wait counts whole


def test_a_single_user_queue_ages_as_before() -> None:
    """One user: no fair share, so the last start changes nothing."""
    now = 100 * HOUR
    old = job(1, mem_gib=20, owner=ALICE, submitted_at=0.0)
    urgent = job(2, mem_gib=20, owner=ALICE, priority=4, submitted_at=now)
    reply = schedule(
        request(
            [gpu(0)],
            [old, urgent],
            now=now,
            user_usage={ALICE: HOUR},
            last_start_by_user={ALICE: now - 60},
        )
    )
    assert [s.job_id for s in reply.starts] == [1]  # 5 points of aging beat 4 of priority
