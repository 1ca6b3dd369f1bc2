"""What the offload runtime learned on this machine, kept in one JSON file.

``$GPUGATE_HOME/offload/<machine>.json`` (``$GPUGATE_OFFLOAD_MODEL`` names another file):
the learned cost models and the last measurements (from which the baselines are
fitted). One file per machine, named by host and CPU, since what a variant costs is a
property of the hardware; GPU models inside it are keyed by the GPU's model name.

Written atomically (a temporary file renamed over the old one), so a crash never leaves
half a file. A file that cannot be read is moved aside (``.unreadable-<time>``) with a
warning, never overwritten: nothing learned is lost to a bug or a bad edit.

Several processes may learn into the same file: a save reads the file, adds what this
process learned since it last read or wrote it (``costmodel.merge``) and writes the
sum, holding an advisory lock on the file's directory (``ModelStore.locked``) so that
two saves do not interleave.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gpugate.offload.costmodel import ModelBook
from gpugate.offload.policy import Measurement

MODEL_ENV = "GPUGATE_OFFLOAD_MODEL"
FORMAT = 1
LOCK_WAIT_S = 5.0  # a save waits this long for another process's, then is retried later
log = logging.getLogger("gpugate.offload")


def machine_description(cpu_label: str) -> str:
    return f"{socket.gethostname()} / {cpu_label}"


def default_model_path(cpu_label: str) -> Path:
    if env := os.environ.get(MODEL_ENV):
        return Path(env)
    from gpugate.daemon.paths import default_home

    digest = hashlib.sha256(machine_description(cpu_label).encode()).hexdigest()[:12]
    return default_home() / "offload" / f"{socket.gethostname()}-{digest}.json"


class ModelStore:
    """The model file. ``read_only``: load it, never write it (``gpugate offload show``;
    benchmarks that compare policies from one calibration)."""

    def __init__(self, path: Path, machine: str, read_only: bool = False) -> None:
        self.path = path
        self.machine = machine
        self.read_only = read_only

    @classmethod
    def of_machine(cls, cpu_label: str, read_only: bool = False) -> ModelStore:
        """This machine's model file (``default_model_path``)."""
        return cls(default_model_path(cpu_label), machine_description(cpu_label), read_only)

    def load(self) -> tuple[ModelBook, list[Measurement]]:
        """What was saved; empty if nothing was. A file that cannot be decoded is moved
        aside (left alone if read-only); one that cannot be read at all (permissions)
        makes this store read-only, so that it is never overwritten."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return ModelBook(), []
        except OSError as exc:
            log.warning(
                "offload model %s unreadable (%s); learning afresh, not saving", self.path, exc
            )
            self.read_only = True
            return ModelBook(), []
        try:
            return _decode(json.loads(raw))
        except Exception as exc:  # any malformed content: keep it, start afresh
            self._set_aside(exc)
            return ModelBook(), []

    def read_for_merge(self) -> tuple[ModelBook, list[Measurement]] | None:
        """The file as it is now, for a save to merge into (call it holding ``locked``):
        empty if there is none; None if it cannot be decoded (it is moved aside, and the
        save writes the file anew). A read error is raised (OSError): that save fails
        and the next one tries again."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return ModelBook(), []
        try:
            return _decode(json.loads(raw))
        except Exception as exc:  # any malformed content: keep it aside
            self._set_aside(exc)
            return None

    def _set_aside(self, exc: Exception) -> None:
        if self.read_only:
            log.warning("offload model %s unreadable (%s); ignored", self.path, exc)
            return
        aside = self.path.with_name(f"{self.path.name}.unreadable-{time.time_ns()}")
        try:
            os.replace(self.path, aside)
        except OSError:
            self.read_only = True
            log.warning("offload model %s unreadable (%s); not saving over it", self.path, exc)
            return
        log.warning("offload model %s unreadable (%s); moved to %s", self.path, exc, aside)

    @contextlib.contextmanager
    def locked(self, wait_s: float | None = None) -> Iterator[None]:
        """Hold the lock of the model file's directory (``flock``): one read-merge-write
        (or reset) at a time among the processes of this machine. Raises OSError if
        another holds it for ``wait_s`` (``LOCK_WAIT_S``; stopped, say, or on a hung file
        system): a save is never stuck for good, it fails and is retried later."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            self._lock(fd, LOCK_WAIT_S if wait_s is None else wait_s)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _lock(self, fd: int, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OSError(
                        errno.EWOULDBLOCK,
                        f"another process has held the lock of {self.path.parent} for {wait_s:g} s",
                    ) from None
                time.sleep(0.02)
            except OSError as exc:  # a file system without flock: save unlocked
                _warn_unlocked(self.path.parent, str(exc))
                return

    def save_snapshot(self, models: dict[str, Any], history: list[Measurement]) -> None:
        """Write ``models`` (``ModelBook.to_dict()``) and ``history``, atomically."""
        if self.read_only:
            return
        data = {
            "format": FORMAT,
            "machine": self.machine,
            "saved_at": time.time(),
            "models": models,
            "measurements": [m._asdict() for m in history],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".offload-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


@functools.cache  # once per directory and reason
def _warn_unlocked(directory: Path, exc: str) -> None:
    log.warning(
        "cannot lock %s (%s): saves of several processes may overwrite each other",
        directory,
        exc,
    )


def _decode(data: Any) -> tuple[ModelBook, list[Measurement]]:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not an offload model file of format {FORMAT}")
    models, measurements = data["models"], data["measurements"]
    if not isinstance(models, dict) or not isinstance(measurements, list):
        raise ValueError("models must be an object and measurements a list")
    book = ModelBook.from_dict(models)
    history = [_measurement(m) for m in measurements]
    return book, history


def _measurement(row: Any) -> Measurement:
    m = Measurement(**row)
    numbers = (m.work, m.contention, m.compute_s, m.transfer_s)
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers):
        raise ValueError(f"a measurement with a bad number: {row}")
    return m
