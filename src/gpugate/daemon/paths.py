"""Where the daemon keeps its state: one directory, overridable for tests and sites."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "GPUGATE_HOME"
SOCKET_ENV = "GPUGATE_SOCKET"
# system mode (`gpugate serve --system`, as root; the shipped systemd unit)
SYSTEM_HOME = Path("/var/lib/gpugate")
SYSTEM_SOCKET = Path("/run/gpugate/gpugate.sock")


def default_home() -> Path:
    if env := os.environ.get(HOME_ENV):
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "gpugate"


@dataclass(frozen=True, slots=True)
class StatePaths:
    home: Path
    socket_path: Path | None = None  # None: in the home (user mode)

    @classmethod
    def default(cls) -> StatePaths:
        """User mode: state under ``$GPUGATE_HOME`` or ``~/.local/state/gpugate``; the
        socket in the user's runtime directory (``$XDG_RUNTIME_DIR``, which only they can
        enter) unless ``$GPUGATE_HOME`` says where everything goes."""
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if os.environ.get(HOME_ENV) or not runtime or not os.path.isdir(runtime):
            return cls(default_home())
        return cls(default_home(), Path(runtime) / "gpugate.sock")

    @classmethod
    def system(cls) -> StatePaths:
        return cls(SYSTEM_HOME, SYSTEM_SOCKET)

    @property
    def socket(self) -> Path:
        if env := os.environ.get(SOCKET_ENV):
            return Path(env)
        return self.socket_path or self.home / "gpugate.sock"

    @property
    def database(self) -> Path:
        return self.home / "gpugate.db"

    @property
    def config(self) -> Path:
        return self.home / "config.toml"

    @property
    def jobs(self) -> Path:
        return self.home / "jobs"

    @property
    def sim_channel(self) -> Path:
        return self.home / "sim"

    @property
    def tokens(self) -> Path:
        return self.home / "tokens.json"

    @property
    def audit_log(self) -> Path:
        return self.home / "audit.log"

    @property
    def pidfile(self) -> Path:
        return self.home / "gpugate.pid"

    def job_dir(self, job_id: int) -> Path:
        return self.jobs / str(job_id)

    def ensure(self) -> None:
        """Create the state directories, owner-only (they hold jobs' environments). A
        root daemon runs jobs as their submitters, who must reach their own job
        directories: then traversable (0711), never listable; every file in them is
        created owner-only (the daemon's umask is 077)."""
        mode = 0o711 if os.geteuid() == 0 else 0o700
        for path in (self.home, self.jobs):
            path.mkdir(parents=True, exist_ok=True, mode=mode)
            path.chmod(mode)
