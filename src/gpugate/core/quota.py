"""Per-user quotas the scheduling pass enforces: GPUs in use at once.

(Queued-job and priority quotas are checked at submit, by the daemon's service: they
refuse a request, not a start.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from gpugate.core.policy import Policy
from gpugate.model import Job


class GpuQuota:
    """How many GPUs each user's jobs hold, against the most each may hold at once
    (``policy.max_gpus_per_user``, or the user's own line in ``policy.user_max_gpus``).
    Updated as the pass starts jobs, so two jobs of one user cannot both squeeze in."""

    __slots__ = ("_policy", "_used")

    def __init__(self, holders: Sequence[Job], policy: Policy) -> None:
        self._policy = policy
        self._used: Counter[int] = Counter()
        for job in holders:  # suspended jobs too: they keep their GPUs
            self._used[job.spec.owner_uid] += job.spec.gpus

    @staticmethod
    def applies(policy: Policy) -> bool:
        return policy.max_gpus_per_user is not None or bool(policy.user_max_gpus)

    def limit(self, uid: int) -> int | None:
        if uid in self._policy.user_max_gpus:
            return self._policy.user_max_gpus[uid]
        return self._policy.max_gpus_per_user

    def refusal(self, job: Job) -> str | None:
        """Why the job may not start now under its owner's quota; None if it may."""
        uid = job.spec.owner_uid
        cap = self.limit(uid)
        used = self._used[uid]
        if cap is None or used + job.spec.gpus <= cap:
            return None
        return f"quota: its owner's jobs hold {used} of the {cap} GPUs a user may hold at once"

    def started(self, job: Job) -> None:
        self._used[job.spec.owner_uid] += job.spec.gpus
