"""What the runtime learns from each run, and keeping it: the cost models, the
measurements the baselines are fitted on, and the model file, saved in the background.

A save merges into the file what other processes saved since (``costmodel.merge``): each
process's runs count, and each learns from the others' at its next save.

A save never fails a task: a full disk or a read-only home is logged once and retried
later. The first run of a variant (per dtype and device) in a process is not learned
from: it pays Numba's JIT compilation and CUDA's start-up.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence

from gpugate.offload.costmodel import ModelBook, merge
from gpugate.offload.moving import Move
from gpugate.offload.policy import Measurement, Option, option_key, transfer_key
from gpugate.offload.store import ModelStore
from gpugate.offload.task import CallFeatures

HISTORY_MAX = 5_000  # measurements kept (and saved) for the baselines
SAVE_EVERY_S = 30.0
log = logging.getLogger("gpugate.offload")


class Learner:
    def __init__(
        self, store: ModelStore | None, on_measurement: Callable[[Measurement], None]
    ) -> None:
        self.store = store
        self.book, history = store.load() if store else (ModelBook(), [])
        self.history: deque[Measurement] = deque(history, maxlen=HISTORY_MAX)
        self.on_measurement = on_measurement
        self.lock = threading.RLock()
        self._save_lock = threading.Lock()  # one save at a time: each rebases on the last
        self._appended = 0  # measurements added to history, ever
        self._saved_upto = 0  # ... of which the file has all the first ones
        self._warm: set[tuple[str, ...]] = set()
        self._dirty = False
        self._save_failed = False
        self._stop = threading.Event()
        self._saver: threading.Thread | None = None

    def record(
        self, call: CallFeatures, option: Option, compute_s: float, moves: Sequence[Move]
    ) -> bool:
        """Learn from one run; False if it was a first (warm-up) run, not learned."""
        device = option.device
        label = device.label if device.is_gpu else ""
        variant = option.variant.name
        with self.lock:
            for gpu, direction, nbytes, seconds in moves:
                link = ("transfer", gpu.name, direction)
                if link in self._warm:
                    self.book.observe(transfer_key(direction, gpu.label), nbytes, 0.0, seconds)
                self._warm.add(link)
            first = (call.kind, variant, call.dtype, device.name)
            if first not in self._warm:
                self._warm.add(first)
                return False
            key = option_key(call, option)
            if self.book.observe(key, call.work, option.contention, compute_s):
                log.info("%s: a lasting change in run times; most of the past forgotten", key)
            m = Measurement(
                call.kind,
                variant,
                label,
                call.dtype,
                call.work,
                option.contention,
                compute_s,
                sum(move.seconds for move in moves),
            )
            self.history.append(m)
            self._appended += 1
            self.on_measurement(m)
            self._dirty = True
        self._start_saver()
        return True

    def _start_saver(self) -> None:
        if self.store is None or self._saver is not None:
            return
        with self.lock:
            if self._saver is None:
                self._saver = threading.Thread(
                    target=self._save_loop, name="gpugate-offload-save", daemon=True
                )
                self._saver.start()

    def _save_loop(self) -> None:
        while not self._stop.wait(SAVE_EVERY_S):
            if self._dirty:
                self.save(quiet=True)

    def save(self, quiet: bool = False) -> None:
        """Merge what was learned into the model file. ``quiet``: log a failure (once)
        instead of raising."""
        if self.store is None or self.store.read_only:
            return
        try:
            with self._save_lock:
                self._merge_into_file(self.store)
            self._save_failed = False
        except OSError as exc:
            self._dirty = True
            if not quiet:
                raise
            if not self._save_failed:
                log.warning("could not save the offload model to %s: %s", self.store.path, exc)
            self._save_failed = True

    def _merge_into_file(self, store: ModelStore) -> None:
        """Read the file, add what was learned here since the last save, write the sum,
        then take the sum as this process's models (others' runs included). The file
        I/O happens outside ``self.lock``: calls go on learning meanwhile. A file that
        cannot be decoded is moved aside and written anew from this process's models."""
        with store.locked():
            found = store.read_for_merge()
            if store.read_only:  # unreadable, and it could not be moved aside
                return
            on_disk, disk_history = found or (ModelBook(), [])
            with self.lock:
                at_save = self.book.sync_point(whole=found is None)
                appended = self._appended
                unsaved = len(self.history)
                if found is not None:
                    unsaved = min(appended - self._saved_upto, unsaved)
                new = list(self.history)[len(self.history) - unsaved :] if unsaved else []
                self._dirty = False
            models = merge(on_disk, at_save)
            history = [*disk_history, *new][-HISTORY_MAX:]
            store.save_snapshot({key: models[key].to_dict() for key in sorted(models)}, history)
        with self.lock:
            self.book.rebase(models, at_save)
            later = min(self._appended - appended, len(self.history))  # while writing
            recent = list(self.history)[len(self.history) - later :] if later else []
            self.history = deque([*history, *recent], maxlen=HISTORY_MAX)
            self._saved_upto = appended

    def close(self) -> None:
        self._stop.set()
        if self._saver is not None:
            self._saver.join(timeout=5.0)
        if self._dirty:
            self.save(quiet=True)
