"""config.toml: the scheduler's knobs parse, per GPU too, and bad values are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpugate.cli.errors import CliError
from gpugate.cli.main import build_parser
from gpugate.daemon.config import ConfigError, load_config


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_queue_order_and_share_line_knobs_parse(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        """
[scheduler]
share_util_pct = 70
aging_per_hour = 0.2
run_time_weight = 0
hold_for_head = true

[gpu."1"]
share_util_pct = 40
""",
    )
    policy = load_config(path).policy
    assert policy.limits.share_util_pct == 70
    assert (policy.aging_per_hour, policy.run_time_weight, policy.hold_for_head) == (
        0.2,
        0.0,
        True,
    )
    assert policy.limits_for("GPU-x", 1).share_util_pct == 40
    assert policy.limits_for("GPU-y", 0).share_util_pct == 70


def test_defaults_are_those_the_simulator_chose(tmp_path: Path) -> None:
    policy = load_config(None).policy
    assert policy.limits.share_util_pct == 50
    assert (policy.aging_per_hour, policy.run_time_weight, policy.hold_for_head) == (
        0.05,
        1.0,
        False,
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("run_time_weight = inf", "run_time_weight must be a finite number"),
        ("run_time_weight = nan", "run_time_weight must be a number >= 0"),
        ("aging_per_hour = -1", "aging_per_hour must be a number >= 0"),
        ("share_util_pct = 0", "share_util_pct must be a percentage"),
        ("share_line = 50", "unknown key"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(config_file(tmp_path, f"[scheduler]\n{line}\n"))


def test_an_infinite_backfill_bound_stays_allowed(tmp_path: Path) -> None:
    policy = load_config(config_file(tmp_path, "[scheduler]\nmax_head_wait_s = inf\n")).policy
    assert policy.max_head_wait_s == float("inf")


@pytest.mark.parametrize("value", ['"OFF"', '""', "false", '"/no/such/cuda-checkpoint"'])
def test_cuda_checkpoint_must_be_auto_off_or_an_executable(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="cuda_checkpoint must be"):
        load_config(config_file(tmp_path, f"cuda_checkpoint = {value}\n"))


def test_cuda_checkpoint_accepts_an_executable_path(tmp_path: Path) -> None:
    binary = tmp_path / "cuda-checkpoint"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert load_config(
        config_file(tmp_path, f'cuda_checkpoint = "{binary}"\n')
    ).cuda_checkpoint == str(binary)


def test_default_preempt_is_never_unless_the_site_says_otherwise(tmp_path: Path) -> None:
    assert load_config(None).default_preempt == "never"
    chosen = load_config(config_file(tmp_path, 'default_preempt = "checkpoint"\n'))
    assert chosen.default_preempt == "checkpoint"


@pytest.mark.parametrize("value", ['"always"', '"Checkpoint"', "1", "true"])
def test_default_preempt_must_be_a_mode(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="default_preempt must be one of never, checkpoint"):
        load_config(config_file(tmp_path, f"default_preempt = {value}\n"))


def test_admin_group_must_name_a_group_that_exists(tmp_path: Path) -> None:
    assert load_config(None).admin_group == ""
    assert load_config(config_file(tmp_path, 'admin_group = "root"\n')).admin_group == "root"
    with pytest.raises(ConfigError, match="no group named 'no-such-group-xyz'"):
        load_config(config_file(tmp_path, 'admin_group = "no-such-group-xyz"\n'))
    with pytest.raises(ConfigError, match="admin_group must be a group name"):
        load_config(config_file(tmp_path, "admin_group = 3\n"))


def test_socket_group_only_in_system_mode(tmp_path: Path) -> None:
    path = config_file(tmp_path, 'socket_group = "root"\n')
    with pytest.raises(ConfigError, match="only with `serve --system`"):
        load_config(path)
    assert load_config(path, {"system": True}).socket_group == "root"


def test_system_mode_must_be_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    args = build_parser().parse_args(["serve", "--system"])
    with pytest.raises(CliError, match="serve --system runs as root"):
        args.func(args)


def test_quotas_default_per_user_lines_and_exemptions(tmp_path: Path) -> None:
    config = load_config(
        config_file(
            tmp_path,
            "[quotas]\nmax_gpus = 2\nmax_queued = 100\n[quotas.users.nobody]\nmax_gpus = 6\n",
        )
    )
    nobody = 65534
    assert config.policy.max_gpus_per_user == 2
    assert config.policy.user_max_gpus[nobody] == 6
    assert config.policy.user_max_gpus[0] is None  # root: no quota
    assert config.quotas.of(nobody).max_queued == 100  # the default, where the line is silent
    assert config.quotas.of(0).max_queued is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("max_gpu = 2", "unknown key"),
        ("max_gpus = -1", "max_gpus must be >= 0"),
        ("max_gpus = 1.5", "max_gpus must be a whole number"),
        ("[quotas.users.no-such-user-xyz]\nmax_gpus = 1", "no user named"),
        ("[quotas.users.nobody]\nshare = 1", "only max_gpus, max_queued, max_priority"),
    ],
)
def test_bad_quotas_are_refused(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(config_file(tmp_path, f"[quotas]\n{table}\n"))


def test_fair_share_settings_and_shares_by_user_and_group(tmp_path: Path) -> None:
    config = load_config(
        config_file(
            tmp_path,
            '[fair_share]\nweight = 3\nhalf_life_days = 2\nshares = { nobody = 4, "@root" = 2 }\n',
        )
    )
    assert config.policy.fair_share_weight == 3.0
    assert config.fair_share_half_life_s == 2 * 86400
    assert config.policy.shares[65534] == 4.0  # nobody's own entry
    assert config.policy.shares[0] == 2.0  # root, as a member of group root
    assert load_config(None).policy.fair_share_weight == 2.0  # on by default


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("weight = -1", "weight must be a finite number >= 0"),
        ("half_life_days = 0", "half_life_days must be a finite number > 0"),
        ("shares = { nobody = 0 }", "shares.nobody must be a finite number > 0"),
        ("shares = { no-such-user-xyz = 1 }", "no user named"),
        ('shares = { "@no-such-group-xyz" = 1 }', "no group named"),
        ("share = 1", "unknown key"),
    ],
)
def test_bad_fair_share_settings_are_refused(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(config_file(tmp_path, f"[fair_share]\n{table}\n"))


def test_others_see_commands_is_a_boolean(tmp_path: Path) -> None:
    assert load_config(None).others_see_commands is True
    hidden = load_config(config_file(tmp_path, "others_see_commands = false\n"))
    assert hidden.others_see_commands is False
    with pytest.raises(ConfigError, match="others_see_commands must be true or false"):
        load_config(config_file(tmp_path, 'others_see_commands = "no"\n'))
