"""``gpugate serve``: choose the GPU backend, open the store, run the daemon."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sys
from typing import IO

from gpugate.daemon.app import AlreadyRunning, Daemon, refuse_if_running
from gpugate.daemon.config import DaemonConfig, load_config
from gpugate.daemon.paths import StatePaths
from gpugate.gpu.base import GpuMonitor, MonitorUnavailable
from gpugate.gpu.sim import DEFAULT_SIM_SPEC, SimMonitor, parse_sim_spec
from gpugate.runner.local import LocalRunner
from gpugate.store.sqlite import SqliteStore

log = logging.getLogger("gpugate")


def open_monitor(spec: str, paths: StatePaths) -> GpuMonitor:
    """``auto``: the real GPUs if any backend finds one, else simulated GPUs, said loudly."""
    if spec.startswith("sim"):
        return SimMonitor(
            parse_sim_spec(spec if ":" in spec else DEFAULT_SIM_SPEC), paths.sim_channel
        )
    from gpugate.gpu import detect

    if spec != "auto":
        return detect.open_backend(spec)
    try:
        return detect.detect_monitor()
    except MonitorUnavailable as exc:
        log.warning(
            "NO GPU FOUND (%s). Running on SIMULATED GPUs (%s) so that everything can be tried; "
            "choose them with --gpus sim:NxSIZE, e.g. --gpus sim:4x80GiB.",
            exc,
            DEFAULT_SIM_SPEC,
        )
        monitor = SimMonitor(parse_sim_spec(DEFAULT_SIM_SPEC), paths.sim_channel)
        monitor.note = f"SIMULATED GPUs: no real GPU found ({exc})"
        return monitor


def serve(paths: StatePaths, overrides: dict[str, object]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s gpugate %(levelname)s %(message)s")
    os.umask(0o077)  # the database and logs hold every job's environment: owner only
    paths.ensure()
    try:
        lock = hold_lock(paths)  # one daemon per state directory, for its whole life
        refuse_if_running(paths.socket)  # before touching the pidfile or the database
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return 1
    config = load_config(paths.config, overrides)
    monitor = open_monitor(config.gpus, paths)
    store = SqliteStore(paths.database)
    daemon = Daemon(paths, config, store, LocalRunner(), monitor)
    _announce(paths, config, monitor)
    try:
        asyncio.run(daemon.run())
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return 1
    finally:
        paths.pidfile.unlink(missing_ok=True)
    lock.close()
    log.info("stopped; jobs still running keep running and are re-adopted at the next start")
    return 0


def hold_lock(paths: StatePaths) -> IO[str]:
    """An exclusive lock on ``$GPUGATE_HOME/gpugate.lock`` held until the process ends:
    two daemons racing on one stale socket cannot both schedule from one database."""
    lock = open(paths.home / "gpugate.lock", "w")  # noqa: SIM115 - held for the daemon's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise AlreadyRunning(f"a gpugate daemon is already running on {paths.home}") from None
    return lock


def _announce(paths: StatePaths, config: DaemonConfig, monitor: GpuMonitor) -> None:
    paths.pidfile.write_text(f"{os.getpid()}\n")
    snap = monitor.snapshot()
    log.info("gpugate %s on %s, state in %s", _version(), paths.socket, paths.home)
    log.info(
        "GPU backend: %s, %d GPU(s)%s",
        snap.backend,
        len(snap.gpus),
        f" ({snap.note})" if snap.note else "",
    )
    limits = config.policy.limits
    log.info(
        "headroom: utilization %.0f%%, memory %.0f%%",
        limits.util_headroom_pct,
        limits.mem_headroom_pct,
    )
    sys.stderr.flush()


def _version() -> str:
    from gpugate import __version__

    return __version__
