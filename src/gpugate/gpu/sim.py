"""Simulated GPUs: first-class, so the whole daemon runs and is tested without a GPU.

The channel (documented in the README) is a directory of small JSON files:

* ``proc-<pid>.json``: ``{"pid": 123, "gpus": ["GPU-…"], "mem_bytes": N, "util_pct": U}``:
  process ``pid`` uses ``mem_bytes`` and ``util_pct`` on *each* listed GPU. Jobs write it
  through ``gpugate sim use`` (or ``report_usage()``); it counts while the pid lives.
* ``load-<name>.json``: ``{"gpu": "0" or uuid, "mem_bytes": N, "util_pct": U, "pid": P}``:
  load from outside gpugate, injected with ``gpugate sim load``; it counts until removed
  (or, with a pid, while that pid lives) and its pid (default 0) is never a gpugate job's.

Allocation is checked like a real device: asking for more than the free memory fails with
the message CUDA prints ("CUDA out of memory"), so policies that overcommit pay for it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gpugate.model import GpuProcess, GpuSnapshot, MachineSnapshot
from gpugate.units import format_bytes, parse_bytes

SIM_DIR_ENV = "GPUGATE_SIM_DIR"
LAYOUT_FILE = ".gpus"  # not *.json: it is the layout, not a use
_SPEC_RE = re.compile(r"^(?:(\d+)x)?(.+)$")


class SimOutOfMemory(RuntimeError):
    """A simulated allocation that does not fit, worded as CUDA words it."""


@dataclass(frozen=True, slots=True)
class SimGpu:
    index: int
    uuid: str
    mem_total_bytes: int
    name: str = "Simulated GPU"


def sim_uuid(index: int) -> str:
    """Stable, UUID-shaped, and obviously simulated."""
    return f"GPU-5133d000-0000-4000-8000-{index:012d}"


def parse_sim_spec(spec: str) -> list[SimGpu]:
    """``"sim:2x24GiB"`` or ``"sim:24GiB,80GiB"`` (the ``sim:`` prefix is optional)."""
    body = spec.removeprefix("sim:").strip()
    if not body:
        raise ValueError("empty simulated GPU spec (example: sim:2x24GiB)")
    gpus: list[SimGpu] = []
    for part in body.split(","):
        match = _SPEC_RE.match(part.strip())
        if not match:
            raise ValueError(f"bad simulated GPU spec {part!r} (example: 2x24GiB)")
        count = int(match.group(1) or 1)
        if not 1 <= count <= 64:
            raise ValueError(f"simulated GPU count must be 1-64, not {count}")
        size = parse_bytes(match.group(2))
        first = len(gpus)
        gpus.extend(SimGpu(first + i, sim_uuid(first + i), size) for i in range(count))
    return gpus


class SimMonitor:
    """GpuMonitor over simulated GPUs whose use comes from the channel directory."""

    backend = "sim"

    def __init__(self, gpus: Sequence[SimGpu], channel_dir: str | os.PathLike[str]) -> None:
        self.gpus = tuple(gpus)
        self.channel = Path(channel_dir)
        self.channel.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # jobs run as their submitters report their use here too
            self.channel.chmod(0o1777)  # like /tmp: each may remove only its own files
        self.note = "simulated GPUs"
        # jobs read the sizes from here to fail allocations that do not fit, like a device
        totals = {g.uuid: g.mem_total_bytes for g in self.gpus}
        totals.update({str(g.index): g.mem_total_bytes for g in self.gpus})
        _write_atomic(self.channel / LAYOUT_FILE, totals)

    def snapshot(self) -> MachineSnapshot:
        entries = read_channel(self.channel)
        gpus = tuple(_gpu_snapshot(g, entries) for g in self.gpus)
        return MachineSnapshot("sim", time.time(), gpus, self.note)

    def job_env(self, base: Mapping[str, str]) -> dict[str, str]:
        # `gpugate sim use` must work inside jobs: put our own bin directory last on PATH
        path = base.get("PATH", os.defpath)
        return {SIM_DIR_ENV: str(self.channel), "PATH": f"{path}:{Path(sys.executable).parent}"}

    def inject_load(self, name: str, gpu: str, mem_bytes: int, util_pct: float) -> Path:
        """Outside load on one GPU (by index or uuid), counted until cleared."""
        keys = {g.uuid for g in self.gpus} | {str(g.index) for g in self.gpus}
        if gpu not in keys:
            raise ValueError(f"no simulated GPU {gpu!r} (indices 0-{len(self.gpus) - 1})")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(f"load name must be letters, digits, '.', '_' or '-': {name!r}")
        path = self.channel / f"load-{name}.json"
        _write_atomic(path, {"pid": 0, "gpu": gpu, "mem_bytes": mem_bytes, "util_pct": util_pct})
        return path

    def clear_load(self, name: str | None = None) -> int:
        """Remove one injected load (or all of them); returns how many were removed."""
        if name:
            paths = [self.channel / f"load-{name}.json"]
        else:
            paths = list(self.channel.glob("load-*.json"))
        removed = 0
        for path in paths:
            if path.exists():
                path.unlink()
                removed += 1
        return removed

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _Use:
    pid: int
    gpu_keys: tuple[str, ...]  # uuids or indices as text
    mem_bytes: int
    util_pct: float
    name: str


def read_channel(channel: Path) -> list[_Use]:
    """Every live use in the channel; files of dead processes are removed."""
    uses: list[_Use] = []
    for path in channel.glob("*.json"):
        data = _read_json(path)
        use = None if data is None else _parse_use(data, path.stem)
        if use is None:
            continue  # unreadable or malformed: a job's bad file must not stop the daemon
        if use.pid and not _alive(use.pid):
            path.unlink(missing_ok=True)
            continue
        if use.pid and _stopped(use.pid):
            use = replace(use, util_pct=0.0)  # a stopped process computes nothing...
        uses.append(use)  # ...but its memory stays allocated, as on a real device
    return uses


def _parse_use(data: dict[str, Any], name: str) -> _Use | None:
    try:
        keys = data.get("gpus") or [data.get("gpu", "0")]
        if not isinstance(keys, list):
            return None
        use = _Use(
            int(data.get("pid") or 0),
            tuple(str(k) for k in keys),
            int(data.get("mem_bytes", 0)),
            float(data.get("util_pct", 0.0)),
            name,
        )
    except (TypeError, ValueError):
        return None
    return use if use.pid >= 0 and use.mem_bytes >= 0 else None


def _gpu_snapshot(gpu: SimGpu, uses: list[_Use]) -> GpuSnapshot:
    mine = [u for u in uses if gpu.uuid in u.gpu_keys or str(gpu.index) in u.gpu_keys]
    mem = min(gpu.mem_total_bytes, sum(u.mem_bytes for u in mine))
    util = min(100.0, sum(u.util_pct for u in mine))
    procs = tuple(GpuProcess(u.pid, u.mem_bytes, u.util_pct, u.name) for u in mine)
    return GpuSnapshot(gpu.index, gpu.uuid, gpu.name, gpu.mem_total_bytes, mem, util, procs)


def _read_json(path: Path) -> dict[str, Any] | None:
    """A regular file's JSON, at most 64 KiB: never through a link, never blocking on a
    FIFO (anyone may leave files in the channel when the daemon is root)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # removed under us, or a link: the next snapshot sees it
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = json.loads(os.read(fd, 64 * 1024))
    except (OSError, ValueError):
        return None  # being written: the next snapshot sees it
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else None


def _stopped(pid: int) -> bool:
    """Is the process stopped (SIGSTOP: state T in /proc)? False where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"T"
    except (OSError, IndexError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _locked(channel: Path) -> Iterator[None]:
    with open(channel / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write then rename; the temporary file is made new, never through a link someone
    left in the channel (it is world-writable when the daemon is root)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(data))
    os.replace(tmp, path)


def report_usage(
    mem_bytes: int,
    util_pct: float,
    pid: int | None = None,
    channel: str | None = None,
    gpus: Sequence[str] | None = None,
) -> Path:
    """Declare what process ``pid`` (default: our parent, the job's shell) uses on its GPUs.

    GPUs default to ``CUDA_VISIBLE_DEVICES``. Raises SimOutOfMemory, leaving the previous
    use in place, when a GPU lacks the free memory for the increase.
    """
    channel_dir = Path(channel or os.environ.get(SIM_DIR_ENV, ""))
    if not str(channel_dir) or not channel_dir.is_dir():
        raise RuntimeError(f"{SIM_DIR_ENV} is not set to a simulated-GPU channel directory")
    owner = pid or os.getppid()
    keys = list(gpus or [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g])
    if not keys:
        raise RuntimeError("no GPU assigned (CUDA_VISIBLE_DEVICES is empty)")
    path = channel_dir / f"proc-{owner}.json"
    with _locked(channel_dir):
        totals = _read_json(channel_dir / LAYOUT_FILE) or {}
        _check_fits(channel_dir, path, keys, mem_bytes, {k: int(v) for k, v in totals.items()})
        _write_atomic(
            path, {"pid": owner, "gpus": keys, "mem_bytes": mem_bytes, "util_pct": util_pct}
        )
    return path


def _check_fits(
    channel: Path, own: Path, keys: list[str], mem_bytes: int, totals: dict[str, int]
) -> None:
    others = [u for u in read_channel(channel) if u.name != own.stem]
    for key in keys:
        total = totals.get(key)
        if total is None:
            continue
        used = sum(u.mem_bytes for u in others if key in u.gpu_keys)
        if used + mem_bytes > total:
            free = total - used
            raise SimOutOfMemory(
                f"CUDA out of memory. Tried to allocate {format_bytes(mem_bytes)}"
                f" (GPU {key}; {format_bytes(total)} total capacity; {format_bytes(free)} free)"
            )


DEFAULT_SIM_SPEC = "sim:2x24GiB"
