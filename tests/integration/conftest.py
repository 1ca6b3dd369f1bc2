"""Boot a real daemon in a temporary directory, on simulated GPUs, with real commands."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gpugate.client import Client, DaemonNotRunning
from gpugate.units import GiB

T = TypeVar("T")
BIN = Path(sys.executable).parent
FAST_CONFIG = """
monitor_interval_s = 0.1
util_window_s = 0.3
tick_fallback_s = {tick_fallback_s}
cancel_grace_s = 2.0
checkpoint_grace_s = 3.0
[scheduler]
ramp_timeout_s = {ramp_timeout_s}
max_cpu_jobs = {max_cpu_jobs}
preempt_min_run_s = 0
"""


def wait_for(check: Callable[[], T], timeout_s: float = 15.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail the test after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class RunningDaemon:
    home: Path
    gpus: str
    proc: subprocess.Popen[bytes] | None = None
    serve_args: tuple[str, ...] = ()  # more flags for `gpugate serve`, e.g. --system
    client: Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = Client(self.home / "gpugate.sock", timeout_s=30)

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["GPUGATE_HOME"] = str(self.home)
        env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
        return env

    def start(self) -> None:
        with open(self.home / "daemon.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gpugate.cli.main",
                    "serve",
                    "--gpus",
                    self.gpus,
                    *self.serve_args,
                ],
                env=self.env,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        wait_for(self._answers, 20, "the daemon to answer")

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited: {(self.home / 'daemon.log').read_text()}")
        try:
            self.client.health()
        except (DaemonNotRunning, OSError):
            return False
        return True

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def cli(
        self, *args: str, check: bool = False, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``gpugate`` command against this daemon."""
        result = subprocess.run(
            [str(BIN / "gpugate"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            input=input,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"gpugate {' '.join(args)} failed: {result.stderr}")
        return result

    def submit(self, command: str, **fields: Any) -> int:
        fields.setdefault("cwd", str(self.home))
        fields.setdefault("env", self.env)
        return self.client.submit_command(command, **fields).id

    def submit_using(self, gib: int, util: float, seconds: float = 60, **fields: Any) -> int:
        """A GPU job that declares ``gib`` GiB and ``util`` %, really allocates them on its
        simulated GPU, then runs ``seconds``."""
        command = f"gpugate sim use --mem {gib}GiB --util {util:g} && sleep {seconds:g}"
        return self.submit(command, mem_bytes=gib * GiB, util_pct=util, **fields)

    def state(self, job_id: int) -> str:
        return self.client.show(job_id).job.state

    def wait_state(self, job_id: int, *states: str, timeout_s: float = 15.0) -> Any:
        return wait_for(
            lambda: (job := self.client.show(job_id).job).state in states and job,
            timeout_s,
            f"job {job_id} to become {'/'.join(states)} (is {self.state(job_id)})",
        )


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    daemons: list[RunningDaemon] = []

    def make(
        gpus: str = "sim:1x24GiB",
        ramp_timeout_s: float = 60,
        max_cpu_jobs: int = 4,
        tick_fallback_s: float = 60.0,  # long: the tests must pass on events alone
        top_config: str = "",  # more top-level keys (before the [scheduler] table)
        serve_args: tuple[str, ...] = (),
    ) -> RunningDaemon:
        home = tmp_path / f"d{len(daemons)}"
        home.mkdir()
        (home / "config.toml").write_text(
            top_config
            + FAST_CONFIG.format(
                ramp_timeout_s=ramp_timeout_s,
                max_cpu_jobs=max_cpu_jobs,
                tick_fallback_s=tick_fallback_s,
            )
        )
        daemon = RunningDaemon(home, gpus, serve_args=serve_args)
        daemon.start()
        daemons.append(daemon)
        return daemon

    yield make
    for daemon in daemons:
        daemon.stop()
        _kill_jobs(daemon.home)


def _kill_jobs(home: Path) -> None:
    """Leave no job behind: kill every shim's process group (they are session leaders)."""
    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(str(home) in part for part in cmdline) and proc.info["pid"] != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.info["pid"], signal.SIGKILL)


@pytest.fixture
def daemon(make_daemon: Callable[..., RunningDaemon]) -> RunningDaemon:
    return make_daemon()


# other users' fixtures (users.py imports RunningDaemon from here, hence at the end)
from tests.integration.users import make_user, other_user  # noqa: E402, F401
