"""The daemon's lifecycle, like uvicorn's Server: startup, loops, bounded shutdown.

Three loops in one task group (a crash in one stops the daemon loudly): the HTTP API on
the Unix socket, the scheduler (woken by events, a timer only as fallback), and the GPU
monitor. Jobs outlive the daemon: stopping it leaves them running under their shims, and
the next start re-adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import grp
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from gpugate.api.routes import build_app
from gpugate.core.types import GpuView
from gpugate.daemon.config import DaemonConfig
from gpugate.daemon.engine import Engine
from gpugate.daemon.identity import http_protocol
from gpugate.daemon.paths import StatePaths
from gpugate.daemon.recovery import recover
from gpugate.daemon.service import Service
from gpugate.gpu.base import GpuMonitor
from gpugate.model import Job, MachineSnapshot
from gpugate.runner.base import Runner
from gpugate.states import JobState
from gpugate.store.base import Store

log = logging.getLogger("gpugate")


class AlreadyRunning(RuntimeError):
    pass


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling (the daemon owns SIGTERM/SIGINT) and without
    its 10 Hz housekeeping loop, which was most of the idle daemon's wake-ups: it only
    refreshes the Date header (off here) and counts requests (unlimited here)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        self._exit = asyncio.Event()
        if not self.should_exit:
            await self._exit.wait()

    def request_exit(self) -> None:
        self.should_exit = True
        if hasattr(self, "_exit"):
            self._exit.set()


class Daemon:
    def __init__(
        self,
        paths: StatePaths,
        config: DaemonConfig,
        store: Store,
        runner: Runner,
        monitor: GpuMonitor,
    ) -> None:
        self.paths, self.config = paths, config
        self.engine = Engine(store, runner, monitor, config, paths)
        self.started_at = time.time()
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._pidfds: dict[int, int] = {}  # job id -> pidfd

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reachable_by = self.config.socket_group if self.config.system else ""
        sock = bind_socket(self.paths.socket, reachable_by or None)
        self.engine.observe(await asyncio.to_thread(self.engine.monitor.snapshot))
        for message in recover(self.engine):
            log.warning("recovery: %s", message)
        # the stored jobs live as long as the daemon: keep the collector from rescanning
        # them (with 100k queued jobs, that scan was half of every `ls`)
        gc.freeze()
        self.wake()  # a first pass at once: exits and load changes while we were down
        self.engine.on_launch = self._watch
        for job in self.engine.active.values():
            self._watch(job)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGCHLD, self.wake)
        app = build_app(Service(self.engine, self.wake), self, self.config.tcp)
        servers = [(_server(app), sock)]
        tcp_sock = None
        if self.config.tcp:  # its own server: TLS, when set, is for TCP only
            tcp_sock = bind_tcp(self.config.tcp)
            servers.append((_server(app, self.config.tls_cert, self.config.tls_key), tcp_sock))
            log.info("API also on tcp://%s (tokens required)", self.config.tcp)
        try:
            async with asyncio.TaskGroup() as group:
                for server, listening in servers:
                    group.create_task(server.serve(sockets=[listening]))
                loops = [
                    group.create_task(self._schedule_loop()),
                    group.create_task(self._monitor_loop()),
                ]
                await self._stopping.wait()
                for server, _ in servers:
                    server.request_exit()  # finishes the requests in flight, bounded
                for task in loops:
                    task.cancel()
        finally:
            self._close(sock)
            if tcp_sock is not None:
                tcp_sock.close()

    def stop(self) -> None:
        self._stopping.set()

    def wake(self) -> None:
        self._wake.set()

    async def wait_for_change(self, timeout_s: float) -> None:
        """Return after the next scheduling pass that changed something, or the timeout."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def _close(self, sock: socket.socket) -> None:
        for fd in self._pidfds.values():
            with contextlib.suppress(OSError):
                asyncio.get_running_loop().remove_reader(fd)
                os.close(fd)
        sock.close()
        self.paths.socket.unlink(missing_ok=True)
        self.engine.store.close()
        self.engine.monitor.close()

    # ---------------------------------------------------------------------- loops
    async def _schedule_loop(self) -> None:
        while not self._stopping.is_set():
            await self._sleep_until_woken()
            self._wake.clear()
            if self.engine.tick():
                self._announce_change()
                self._wake.set()  # converge: ramped and finished jobs free room at once

    async def _sleep_until_woken(self) -> None:
        timeout = self.config.tick_fallback_s
        if (deadline := self.engine.next_deadline()) is not None:
            timeout = max(0.0, min(timeout, deadline - self.engine.clock()))
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            self.engine.check_all_exits = True  # the fallback also catches missed exits

    def _announce_change(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _monitor_loop(self) -> None:
        while not self._stopping.is_set():
            observed = self.engine.observed
            try:
                snap = await asyncio.to_thread(self.engine.monitor.snapshot)
            except Exception as exc:  # a flaky driver or tool must not stop the daemon
                log.warning("GPU monitor failed (keeping the last snapshot): %s", exc)
            else:
                # A snapshot read after this one began (`sim load` reads at once) may have
                # been observed meanwhile: then this one would put the older view back.
                if self.engine.observed == observed:
                    self._observe(snap)
            await asyncio.sleep(self.config.monitor_interval_s)

    def _observe(self, snap: MachineSnapshot) -> None:
        """Take the snapshot; a pass at once if load went away or a job ramped up."""
        before = self.engine.gpu_views()
        ramping_before = self._starting_usage()
        self.engine.observe(snap)
        if _load_dropped(before, self.engine.gpu_views()) or (
            self._starting_usage() != ramping_before
        ):
            self.wake()

    def _starting_usage(self) -> dict[int, object]:
        """What starting jobs are seen using: when it moves, one may have ramped up."""
        engine = self.engine
        return {
            j.id: engine.usage.get(j.id) for j in engine.holders() if j.state is JobState.STARTING
        }

    # ---------------------------------------------------------------- exit events
    def _watch(self, job: Job) -> None:
        """Wake the scheduler the moment a job's shim exits (pidfd: works for re-adopted
        jobs too, which are not our children). Without pidfd the fallback timer finds it."""
        if job.pid is None or job.id in self._pidfds or not hasattr(os, "pidfd_open"):
            return
        try:
            fd = os.pidfd_open(job.pid)
        except OSError:  # already gone: let the next pass reap it now
            self.engine.check_all_exits = True
            self.wake()
            return
        self._pidfds[job.id] = fd
        asyncio.get_running_loop().add_reader(fd, self._on_exit, job.id)

    def _on_exit(self, job_id: int) -> None:
        fd = self._pidfds.pop(job_id)
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        self.engine.exited.add(job_id)
        self.wake()


def _load_dropped(before: list[GpuView], after: list[GpuView]) -> bool:
    """Wake the scheduler when a GPU's memory use fell or its smoothed utilization fell by
    a point or more: only less load can let a waiting job start. (Rising load matters for
    the reasons shown, which the next pass refreshes.)"""
    if [g.uuid for g in before] != [g.uuid for g in after]:
        return True
    for old, new in zip(before, after, strict=True):
        if new.mem_used_bytes < old.mem_used_bytes:
            return True
        if (old.util_pct or 0) - (new.util_pct or 0) >= 1.0:
            return True
    return False


def refuse_if_running(path: Path) -> None:
    """Raise AlreadyRunning if a live daemon answers on ``path``; remove a stale socket."""
    if not path.exists():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # stale: left by a daemon that was killed
    else:
        raise AlreadyRunning(f"a gpugate daemon is already running on {path}")
    finally:
        probe.close()


def _server(app: Any, tls_cert: str = "", tls_key: str = "") -> _QuietServer:
    return _QuietServer(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            http=http_protocol(),  # records each connection's SO_PEERCRED
            timeout_graceful_shutdown=2,
            date_header=False,
            ssl_certfile=tls_cert or None,
            ssl_keyfile=tls_key or None,
        )
    )


def bind_tcp(address: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    return socket.create_server((host.strip("[]"), int(port)), family=family, backlog=128)


def bind_socket(path: Path, group: str | None = None) -> socket.socket:
    """Bind the API socket, owner-only, or also ``group``'s (system mode: 0660, its
    directory reachable); refuse if a live daemon already answers there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_if_running(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    if group is not None:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
        path.chmod(0o660)
        path.parent.chmod(path.parent.stat().st_mode | 0o011)
    sock.listen(128)
    return sock
