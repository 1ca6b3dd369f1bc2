"""Per-user quotas (``[quotas]``) and fair-share settings (``[fair_share]``) of config.toml.

::

    [quotas]
    max_gpus = 4          # GPUs one user's jobs may hold at once (the scheduling pass)
    max_queued = 1000     # queued or held jobs one user may have (checked at submit)
    max_priority = 10     # the highest priority a user may ask for (submit, `priority`)

    [quotas.users.alice]  # one user's own lines, over the defaults above
    max_gpus = 8

Root and the members of ``admin_group`` have no quota. A key left out means no limit.
"""

from __future__ import annotations

import grp
import math
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

QUOTA_KEYS = ("max_gpus", "max_queued", "max_priority")


class QuotaError(ValueError):
    """The [quotas] table is wrong; the message says where."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_gpus: int | None = None
    max_queued: int | None = None
    max_priority: int | None = None


@dataclass(frozen=True, slots=True)
class Quotas:
    default: Limits = Limits()
    by_uid: Mapping[int, Limits] = field(default_factory=dict)  # users' own lines; admins: none
    exempt: frozenset[int] = frozenset({0})  # root and the admin group

    def of(self, uid: int) -> Limits:
        if uid in self.exempt:
            return Limits()
        return self.by_uid.get(uid, self.default)

    def gpu_lines(self) -> dict[int, int | None]:
        """uid -> max GPUs, for the users whose line differs from the default."""
        lines: dict[int, int | None] = {uid: None for uid in self.exempt}
        lines.update((uid, limits.max_gpus) for uid, limits in self.by_uid.items())
        return lines


def parse_quotas(table: Mapping[str, Any], admin_group: str) -> Quotas:
    unknown = set(table) - {*QUOTA_KEYS, "users"}
    if unknown:
        raise QuotaError(f"[quotas]: unknown key(s) {', '.join(sorted(unknown))}")
    default = _limits(table, Limits(), "[quotas]")
    users = table.get("users", {})
    if not isinstance(users, dict):
        raise QuotaError("[quotas.users] must be a table of user names")
    by_uid = {}
    for name, lines in users.items():
        where = f"[quotas.users.{name}]"
        if not isinstance(lines, dict) or set(lines) - set(QUOTA_KEYS):
            raise QuotaError(f"{where}: only {', '.join(QUOTA_KEYS)}")
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            raise QuotaError(f"{where}: no user named {name!r} on this machine") from None
        by_uid[uid] = _limits(lines, default, where)
    return Quotas(default, by_uid, frozenset({0, *_members(admin_group)}))


@dataclass(frozen=True, slots=True)
class FairShareSettings:
    weight: float
    half_life_s: float
    shares: Mapping[int, float]  # by uid; users not listed have 1


def parse_fair_share(table: Mapping[str, Any], default_weight: float) -> FairShareSettings:
    """``[fair_share]``: weight, half_life_days, and shares by user or "@group" (a
    user's own entry wins over their groups'; among groups, the largest)."""
    unknown = set(table) - {"weight", "half_life_days", "shares"}
    if unknown:
        raise QuotaError(f"[fair_share]: unknown key(s) {', '.join(sorted(unknown))}")
    weight = _positive(table.get("weight", default_weight), "weight", allow_zero=True)
    half_life_s = _positive(table.get("half_life_days", 7), "half_life_days") * 86400
    shares = table.get("shares", {})
    if not isinstance(shares, dict):
        raise QuotaError("[fair_share] shares must be a table: name = share")
    by_uid: dict[int, float] = {}
    for name, value in sorted(shares.items(), key=lambda kv: not kv[0].startswith("@")):
        share = _positive(value, f"shares.{name}")
        for uid in _uids(name):  # groups first, then users over them
            if name.startswith("@"):
                by_uid[uid] = max(by_uid.get(uid, 0.0), share)
            else:
                by_uid[uid] = share
    return FairShareSettings(weight, half_life_s, by_uid)


def _positive(value: Any, key: str, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        low = ">= 0" if allow_zero else "> 0"
        raise QuotaError(f"[fair_share] {key} must be a finite number {low}, not {value!r}")
    return float(value)


def _uids(name: str) -> set[int]:
    """A user's uid, or the members of "@group"."""
    if name.startswith("@"):
        try:
            return _members(name[1:])
        except KeyError:
            raise QuotaError(f"[fair_share] shares: no group named {name[1:]!r}") from None
    try:
        return {pwd.getpwnam(name).pw_uid}
    except KeyError:
        raise QuotaError(f"[fair_share] shares: no user named {name!r}") from None


def _limits(table: Mapping[str, Any], base: Limits, where: str) -> Limits:
    values: dict[str, int | None] = {}
    for key in QUOTA_KEYS:
        value = table.get(key, getattr(base, key))
        low = -(2**31) if key == "max_priority" else 0
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise QuotaError(f"{where} {key} must be a whole number, not {value!r}")
        if value is not None and value < low:
            raise QuotaError(f"{where} {key} must be >= {low}, not {value!r}")
        values[key] = value
    return Limits(**values)


def _members(group: str) -> set[int]:
    """The uids in ``group``: listed members, and users whose primary group it is."""
    if not group:
        return set()
    entry = grp.getgrnam(group)
    members = set()
    for user in pwd.getpwall():
        if user.pw_gid == entry.gr_gid or user.pw_name in entry.gr_mem:
            members.add(user.pw_uid)
    return members
