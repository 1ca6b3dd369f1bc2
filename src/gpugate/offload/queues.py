"""One small queue per device: tasks run there one at a time, in order.

A device's *backlog* is the predicted time until it is free: the predicted runs of what
waits in its queue plus what is left of the one running. The chooser adds it to each
option, so that with work queued on the GPU a new task goes to the CPU if the CPU will
finish it first, and both work at the same time.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from gpugate.offload.devices import Device

BUSY_WINDOW_S = 1.0


class DeviceQueue:
    def __init__(self, device: Device, depth: int) -> None:
        self.device = device
        self.depth = depth
        self.running = threading.Lock()  # held while a task runs on the device
        self._jobs: queue.Queue[tuple[Callable[[], Any], float, Future[Any]] | None] = queue.Queue(
            maxsize=depth
        )
        self._books = threading.Lock()
        self._queued_s = 0.0
        self._running_until = 0.0  # monotonic time the running task is predicted to end
        self._running_since: float | None = None
        self._busy: deque[tuple[float, float]] = deque(maxlen=4096)
        self._thread: threading.Thread | None = None

    def backlog_s(self, now: float) -> float:
        return self._queued_s + max(self._running_until - now, 0.0)

    def busy_pct(self, now: float | None = None) -> float:
        """Share of the last second this device spent running our tasks, in percent."""
        now = time.monotonic() if now is None else now
        since = now - BUSY_WINDOW_S
        busy = sum(
            min(end, now) - max(start, since) for start, end in list(self._busy) if end > since
        )
        if (started := self._running_since) is not None:
            busy += now - max(started, since)
        return 100.0 * min(busy / BUSY_WINDOW_S, 1.0)

    def run(self, work: Callable[[], Any], predicted_s: float) -> Any:
        """Run now on the calling thread if the device is free, else wait in its queue."""
        if self._jobs.empty() and self.running.acquire(blocking=False):
            try:
                return self._timed(work, predicted_s)
            finally:
                self.running.release()
        return self.submit(work, predicted_s).result()

    def submit(self, work: Callable[[], Any], predicted_s: float) -> Future[Any]:
        """Queue ``work``; blocks while the queue is full (back-pressure)."""
        future: Future[Any] = Future()
        with self._books:
            self._queued_s += predicted_s
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"gpugate-offload-{self.device.name}", daemon=True
                )
                self._thread.start()
        self._jobs.put((work, predicted_s, future))
        return future

    def _loop(self) -> None:
        while (item := self._jobs.get()) is not None:
            work, predicted_s, future = item
            with self._books:
                self._queued_s = max(self._queued_s - predicted_s, 0.0)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                with self.running:
                    result = self._timed(work, predicted_s)
            except BaseException as exc:  # the caller gets it through the future
                future.set_exception(exc)
            else:
                future.set_result(result)

    def _timed(self, work: Callable[[], Any], predicted_s: float) -> Any:
        start = self._running_since = time.monotonic()
        self._running_until = start + predicted_s
        try:
            return work()
        finally:
            self._running_until = 0.0
            self._running_since = None
            self._busy.append((start, time.monotonic()))

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
