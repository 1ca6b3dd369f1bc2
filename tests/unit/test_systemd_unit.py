"""The shipped systemd unit is valid and keeps jobs alive across daemon restarts."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "contrib" / "systemd" / "gpugate.service"


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read_string(UNIT.read_text())
    return unit


def test_the_unit_runs_system_mode_and_never_kills_the_jobs() -> None:
    service = read_unit()["Service"]
    assert service["ExecStart"].split()[1:] == ["serve", "--system"]
    assert service["KillMode"] == "process"  # jobs' process groups survive a restart
    assert (service["RuntimeDirectory"], service["StateDirectory"]) == ("gpugate", "gpugate")


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze here")
    gpugate = Path(sys.executable).parent / "gpugate"
    unit = tmp_path / "gpugate.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/gpugate", str(gpugate)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in done.stderr.splitlines() if "gpugate.service" in line]
    assert done.returncode == 0 and not problems, done.stderr
