"""Fair share: a user's recent GPU time lowers the rank of their queued jobs.

As Slurm's classic multifactor fair share, without a database: each user's usage is
their GPU-seconds, decayed with a half-life (7 days by default, as gflow), so last
month's burst is mostly forgiven and last hour's is not. Among the users in play (those
with usage or queued jobs), a user's share of the usage ``U`` against their share of
the machine ``S`` (``policy.shares``, 1 each by default) gives the factor
``F = 2 ** (-U / S)``: 1 for a user who used nothing, 0.5 for one who used exactly their
share, towards 0 for one who used far more. A queued job gains
``policy.fair_share_weight x F`` points in the rank, so between two users the
difference is at most that weight. With one user, every job gains the same: no change.

The ledger is pure (times are passed in): the daemon and the simulator keep one each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gpugate.core.policy import Policy
from gpugate.model import Job

DEFAULT_HALF_LIFE_S = 7 * 24 * 3600.0


@dataclass(slots=True)
class UsageLedger:
    """Each user's GPU-seconds of finished runs, decayed with ``half_life_s``."""

    half_life_s: float = DEFAULT_HALF_LIFE_S
    _value: dict[int, float] = field(default_factory=dict)  # uid -> usage at _since
    _since: float = 0.0

    def add(self, uid: int, gpu_seconds: float, at: float) -> None:
        """A run that used ``gpu_seconds`` ended at ``at`` (no later than the last add:
        at worst slightly earlier, which decays it a little less than its due)."""
        if gpu_seconds <= 0:
            return
        self._decay_to(max(at, self._since))
        self._value[uid] = self._value.get(uid, 0.0) + gpu_seconds

    def at(self, now: float) -> dict[int, float]:
        """Decayed usage per user at ``now``."""
        factor = self._factor(now - self._since)
        return {uid: value * factor for uid, value in self._value.items()}

    def _decay_to(self, now: float) -> None:
        if now <= self._since:
            return
        factor = self._factor(now - self._since)
        self._value = {uid: v * factor for uid, v in self._value.items() if v * factor > 1e-3}
        self._since = now

    def _factor(self, elapsed_s: float) -> float:
        return float(0.5 ** (max(elapsed_s, 0.0) / self.half_life_s))


def current_usage(ledger: UsageLedger, holders: Sequence[Job], now: float) -> dict[int, float]:
    """The ledger's usage plus the runs still going (their GPUs times how long so far)."""
    usage = ledger.at(now)
    for job in holders:
        if job.started_at is not None and job.spec.gpus:
            uid = job.spec.owner_uid
            usage[uid] = usage.get(uid, 0.0) + job.spec.gpus * max(0.0, now - job.started_at)
    return usage


def fair_share_points(
    usage: Mapping[int, float], queued_owners: Iterable[int], policy: Policy
) -> dict[int, float]:
    """Rank points per user: ``weight x 2 ** (-usage share / machine share)``."""
    weight = policy.fair_share_weight
    total_usage = sum(usage.values())
    if weight == 0 or total_usage <= 0:
        return {}  # nobody used anything: every user gains the same
    users = set(queued_owners) | set(usage)
    if len(users) < 2:
        return {}
    total_shares = sum(share_of(uid, policy) for uid in users)
    points = {}
    for uid in users:
        used = usage.get(uid, 0.0) / total_usage
        deserved = share_of(uid, policy) / total_shares
        points[uid] = weight * 2.0 ** (-used / deserved)
    return points


def share_of(uid: int, policy: Policy) -> float:
    return policy.shares.get(uid, 1.0)
