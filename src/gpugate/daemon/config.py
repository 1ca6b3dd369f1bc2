"""Daemon settings: embedded defaults, overridden by ``$GPUGATE_HOME/config.toml`` and flags.

Example ``config.toml`` (every key optional)::

    gpus = "auto"                 # or "sim:2x24GiB", "nvml", "nvidia-smi", "amd", "apple"
    monitor_interval_s = 1.0
    util_window_s = 10.0
    cancel_grace_s = 10.0
    checkpoint_grace_s = 60.0     # to save and exit 75 when asked, before being suspended
    max_oom_retries = 2           # requeue a job that died of GPU OOM with more memory, this often
    cuda_checkpoint = "auto"      # suspend moves GPU memory to host where it works; "off"
    default_preempt = "never"     # for jobs submitted without --preempt
    admin_group = ""              # its members may act on every job (root always may)
    socket_group = ""             # --system: this group may connect (socket mode 0660)
    others_see_commands = true    # false: others' commands, directories and logs are hidden
    tcp = ""                      # e.g. "127.0.0.1:8765": the API on TCP, with tokens
    tls_cert = ""                 # both needed for a TCP address beyond this machine
    tls_key = ""

    [scheduler]
    util_headroom_pct = 90
    mem_headroom_pct = 90
    share_util_pct = 50           # co-locate only while summed utilization stays under this
    aging_per_hour = 0.05
    run_time_weight = 1.0         # priority points per halving of the expected run time
    backfill = true
    hold_for_head = false         # EASY backfill: hold the blocked head's GPUs
    max_head_wait_s = inf         # off; e.g. 1800 drains a head's GPUs after 30 min
    ramp_timeout_s = 60
    max_cpu_jobs = 8
    preempt_min_run_s = 300       # never preempt a job younger than this...
    max_preemptions = 3           # ...or one already preempted this often

    [gpu."1"]                     # per GPU, by index or UUID
    util_headroom_pct = 80

    [quotas]                      # per user (root and admin_group have none): quotas.py
    max_gpus = 4

    [fair_share]                  # recent GPU time lowers a user's rank: core/fairshare.py
    weight = 2.0                  # points between the least and the most served user
    half_life_days = 7
    shares = { alice = 2, "@ml" = 1.5 }   # by user, or by group ("@name"); 1 otherwise
"""

from __future__ import annotations

import dataclasses
import grp
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpugate.core.fairshare import DEFAULT_HALF_LIFE_S
from gpugate.core.policy import GpuLimits, Policy
from gpugate.daemon.quotas import QuotaError, Quotas, parse_fair_share, parse_quotas
from gpugate.daemon.tokens import is_loopback
from gpugate.model import PreemptMode


class ConfigError(ValueError):
    """The configuration file or a flag is wrong; the message says which key and why."""


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    gpus: str = "auto"
    monitor_interval_s: float = 1.0  # how often the GPU monitor is sampled
    util_window_s: float = 10.0  # utilization is averaged over this window
    tick_fallback_s: float = 10.0  # the loop runs at least this often without events
    cancel_grace_s: float = 10.0  # SIGTERM, then SIGKILL after this long
    checkpoint_grace_s: float = 60.0  # asked to checkpoint: suspended if still running after
    max_oom_retries: int = 2  # a job that dies of GPU OOM is requeued with more, this often
    cuda_checkpoint: str = "auto"  # transparent suspend: "auto", "off", or the binary's path
    default_preempt: str = "never"  # the site default of --preempt
    admin_group: str = ""  # members may act on any user's job; "" = root only
    socket_group: str = ""  # system mode: members may connect; "" = root only
    others_see_commands: bool = True  # false: only owners and admins see commands and logs
    tcp: str = ""  # "host:port" for the API on TCP (tokens required); "" = Unix socket only
    tls_cert: str = ""  # PEM files; required when tcp is not a loopback address
    tls_key: str = ""
    system: bool = False  # `serve --system`: run as root, jobs as their submitters
    quotas: Quotas = field(default_factory=Quotas)  # per user ([quotas]); GPUs in the policy
    fair_share_half_life_s: float = DEFAULT_HALF_LIFE_S  # [fair_share] half_life_days
    recent_limit: int = 50  # finished jobs shown by `ls` by default
    policy: Policy = field(default_factory=lambda: Policy(max_cpu_jobs=os.cpu_count() or 1))


_TOP_KEYS = {
    "gpus",
    "monitor_interval_s",
    "util_window_s",
    "tick_fallback_s",
    "cancel_grace_s",
    "checkpoint_grace_s",
    "max_oom_retries",
    "cuda_checkpoint",
    "default_preempt",
    "admin_group",
    "socket_group",
    "others_see_commands",
    "tcp",
    "tls_cert",
    "tls_key",
    "recent_limit",
}
_SCHED_KEYS = {
    "util_headroom_pct",
    "mem_headroom_pct",
    "share_util_pct",
    "aging_per_hour",
    "run_time_weight",
    "backfill",
    "hold_for_head",
    "max_head_wait_s",
    "ramp_timeout_s",
    "max_cpu_jobs",
    "idle_mem_pct",
    "preempt_min_run_s",
    "max_preemptions",
}
_FINITE_KEYS = {"aging_per_hour", "run_time_weight"}  # inf points would make ranks NaN
_LIMIT_KEYS = {"util_headroom_pct", "mem_headroom_pct", "share_util_pct"}


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> DaemonConfig:
    """Defaults, then the TOML file if it exists, then ``overrides`` (same keys, flat)."""
    data: dict[str, Any] = {}
    if path is not None and path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    flat = _flatten(data, path)
    flat.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _build(flat)


def _flatten(data: dict[str, Any], path: Path | None) -> dict[str, Any]:
    where = str(path or "config")
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "scheduler" and isinstance(value, dict):
            _check_keys(value, _SCHED_KEYS, f"{where} [scheduler]")
            flat.update(value)
        elif key in ("quotas", "fair_share") and isinstance(value, dict):
            flat[key] = value
        elif key == "gpu" and isinstance(value, dict):
            for gpu, limits in value.items():
                _check_keys(limits, _LIMIT_KEYS, f'{where} [gpu."{gpu}"]')
            flat["per_gpu"] = value
        elif key in _TOP_KEYS:
            flat[key] = value
        else:
            raise ConfigError(f"{where}: unknown key {key!r}")
    return flat


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")


def _build(flat: dict[str, Any]) -> DaemonConfig:
    base = DaemonConfig()
    limits = GpuLimits(
        util_headroom_pct=_pct(flat, "util_headroom_pct", base.policy.limits.util_headroom_pct),
        mem_headroom_pct=_pct(flat, "mem_headroom_pct", base.policy.limits.mem_headroom_pct),
        share_util_pct=_pct(flat, "share_util_pct", base.policy.limits.share_util_pct),
    )
    per_gpu = {
        str(gpu): dataclasses.replace(limits, **{k: _pct(v, k, getattr(limits, k)) for k in v})
        for gpu, v in flat.get("per_gpu", {}).items()
    }
    policy = dataclasses.replace(
        base.policy,
        limits=limits,
        per_gpu_limits=per_gpu,
        aging_per_hour=_num(flat, "aging_per_hour", base.policy.aging_per_hour),
        run_time_weight=_num(flat, "run_time_weight", base.policy.run_time_weight),
        backfill=bool(flat.get("backfill", base.policy.backfill)),
        hold_for_head=bool(flat.get("hold_for_head", base.policy.hold_for_head)),
        max_head_wait_s=_num(flat, "max_head_wait_s", base.policy.max_head_wait_s),
        ramp_timeout_s=_num(flat, "ramp_timeout_s", base.policy.ramp_timeout_s),
        idle_mem_pct=_pct(flat, "idle_mem_pct", base.policy.idle_mem_pct),
        max_cpu_jobs=_cpu_slots(flat.get("max_cpu_jobs", base.policy.max_cpu_jobs)),
        preempt_min_run_s=_num(flat, "preempt_min_run_s", base.policy.preempt_min_run_s),
        max_preemptions=_count(flat, "max_preemptions", base.policy.max_preemptions),
    )
    admin_group = _group(flat.get("admin_group", base.admin_group))
    try:
        quotas = parse_quotas(flat.get("quotas", {}), admin_group)
    except QuotaError as exc:
        raise ConfigError(str(exc)) from None
    try:
        fair = parse_fair_share(flat.get("fair_share", {}), policy.fair_share_weight)
    except QuotaError as exc:
        raise ConfigError(str(exc)) from None
    policy = dataclasses.replace(
        policy,
        max_gpus_per_user=quotas.default.max_gpus,
        user_max_gpus=quotas.gpu_lines(),
        fair_share_weight=fair.weight,
        shares=fair.shares,
    )
    tcp, tls_cert, tls_key = _tcp(flat)
    system = bool(flat.get("system", base.system))
    if flat.get("socket_group") and not system:
        raise ConfigError(
            "socket_group opens the socket to a group: only with `serve --system`, where"
            " jobs run as their submitters (a user-mode daemon runs every job as itself)"
        )
    return DaemonConfig(
        gpus=str(flat.get("gpus", base.gpus)),
        monitor_interval_s=_num(flat, "monitor_interval_s", base.monitor_interval_s, low=0.05),
        util_window_s=_num(flat, "util_window_s", base.util_window_s, low=0.0),
        tick_fallback_s=_num(flat, "tick_fallback_s", base.tick_fallback_s, low=0.05),
        cancel_grace_s=_num(flat, "cancel_grace_s", base.cancel_grace_s),
        checkpoint_grace_s=_num(flat, "checkpoint_grace_s", base.checkpoint_grace_s),
        max_oom_retries=_count(flat, "max_oom_retries", base.max_oom_retries),
        cuda_checkpoint=_cuda_checkpoint(flat.get("cuda_checkpoint", base.cuda_checkpoint)),
        default_preempt=_preempt_mode(flat.get("default_preempt", base.default_preempt)),
        admin_group=admin_group,
        quotas=quotas,
        fair_share_half_life_s=fair.half_life_s,
        socket_group=_group(flat.get("socket_group", base.socket_group), "socket_group"),
        others_see_commands=_bool(flat, "others_see_commands", base.others_see_commands),
        tcp=tcp,
        tls_cert=tls_cert,
        tls_key=tls_key,
        system=system,
        recent_limit=int(_num(flat, "recent_limit", base.recent_limit)),
        policy=policy,
    )


def _num(flat: dict[str, Any], key: str, default: float, low: float = 0.0) -> float:
    value = flat.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
        raise ConfigError(f"{key} must be a number >= {low}, not {value!r}")
    if math.isinf(value) and key in _FINITE_KEYS:
        raise ConfigError(f"{key} must be a finite number, not {value!r}")
    return float(value)


def _pct(flat: dict[str, Any], key: str, default: float) -> float:
    value = _num(flat, key, default)
    if not 0 < value <= 100:
        raise ConfigError(f"{key} must be a percentage in (0, 100], not {value!r}")
    return value


def _cuda_checkpoint(value: Any) -> str:
    """``"auto"``, ``"off"``, or the path of an executable cuda-checkpoint."""
    if value in ("auto", "off"):
        return str(value)
    if isinstance(value, str) and os.path.isfile(value) and os.access(value, os.X_OK):
        return value
    raise ConfigError(
        f'cuda_checkpoint must be "auto", "off" or the path of an executable, not {value!r}'
    )


def _group(value: Any, key: str = "admin_group") -> str:
    """The name of a group that exists, or "" (none: root only)."""
    if value == "":
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a group name, not {value!r}")
    try:
        grp.getgrnam(value)
    except KeyError:
        raise ConfigError(f"{key}: no group named {value!r} on this machine") from None
    return value


def _tcp(flat: dict[str, Any]) -> tuple[str, str, str]:
    """``tcp = "host:port"``: a loopback host, or any with both TLS files."""
    tcp, cert, key = (flat.get(k, "") for k in ("tcp", "tls_cert", "tls_key"))
    if not all(isinstance(v, str) for v in (tcp, cert, key)):
        raise ConfigError("tcp, tls_cert and tls_key must be strings")
    if not tcp:
        return "", "", ""
    host, _, port = tcp.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f'tcp must be "host:port", e.g. "127.0.0.1:8765", not {tcp!r}')
    for path, name in ((cert, "tls_cert"), (key, "tls_key")):
        if path and not os.path.isfile(path):
            raise ConfigError(f"{name}: no file {path!r}")
    if bool(cert) != bool(key):
        raise ConfigError("tls_cert and tls_key go together")
    if not cert and not is_loopback(host):
        raise ConfigError(
            f"tcp = {tcp!r} reaches beyond this machine: only with tls_cert and tls_key"
            ' (or listen on "127.0.0.1:PORT")'
        )
    return tcp, cert, key


def _bool(flat: dict[str, Any], key: str, default: bool) -> bool:
    value = flat.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, not {value!r}")
    return value


def _preempt_mode(value: Any) -> str:
    modes = [mode.value for mode in PreemptMode]
    if value not in modes:
        raise ConfigError(f"default_preempt must be one of {', '.join(modes)}, not {value!r}")
    return str(value)


def _count(flat: dict[str, Any], key: str, default: int) -> int:
    value = flat.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} must be a whole number >= 0, not {value!r}")
    return value


def _cpu_slots(value: Any) -> int | None:
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"max_cpu_jobs must be a whole number >= 0 (0: no limit), not {value!r}")
    return value
