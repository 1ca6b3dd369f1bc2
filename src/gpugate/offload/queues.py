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
Job = tuple[Callable[[], Any], float, "Future[Any]"]


class QueueClosed(RuntimeError):
    """The runtime was closed: nothing more runs on its devices."""


class DeviceQueue:
    def __init__(self, device: Device, depth: int) -> None:
        self.device = device
        self.running = threading.Lock()  # held while a task runs on the device
        self._owner: int | None = None  # the thread running a task on the device
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=depth)
        self._books = threading.Lock()
        self._queued_s = 0.0
        self._running_until = 0.0  # monotonic time the running task is predicted to end
        self._running_since: float | None = None
        self._running_predicted = 0.0
        self._busy: deque[tuple[float, float]] = deque(maxlen=4096)
        self._thread: threading.Thread | None = None
        self._closed = False

    def backlog_s(self, now: float) -> float:
        """Predicted seconds until the device is free. A running task already past its
        prediction still counts a tenth of it: it is late, not done."""
        running = 0.0
        if self._running_since is not None:
            running = max(self._running_until - now, 0.1 * self._running_predicted)
        return self._queued_s + running

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
        """Run on the calling thread if the device is free (or this thread already holds
        it: a task that calls another task), else wait in the device's queue."""
        if self._owner == threading.get_ident():
            return work()  # nested inside a task on this device: it has the device
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
            if self._closed:
                raise QueueClosed(f"the offload runtime is closed ({self.device.name})")
            self._queued_s += predicted_s
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name=f"gpugate-offload-{self.device.name}", daemon=True
                )
                self._thread.start()
        try:
            self._jobs.put((work, predicted_s, future))
        except BaseException:  # e.g. Ctrl-C while blocked: take the prediction back
            self._unqueue(predicted_s)
            raise
        return future

    def _unqueue(self, predicted_s: float) -> None:
        with self._books:
            self._queued_s = max(self._queued_s - predicted_s, 0.0)

    def _loop(self) -> None:
        while (item := self._jobs.get()) is not None:
            work, predicted_s, future = item
            if not future.set_running_or_notify_cancel():
                self._unqueue(predicted_s)
                continue
            try:
                with self.running:
                    self._unqueue(predicted_s)  # now counted as the running task
                    result = self._timed(work, predicted_s)
            except BaseException as exc:  # the caller gets it through the future
                future.set_exception(exc)
            else:
                future.set_result(result)

    def _timed(self, work: Callable[[], Any], predicted_s: float) -> Any:
        start = time.monotonic()
        self._running_until = start + predicted_s
        self._running_predicted = predicted_s
        self._running_since = start
        self._owner = threading.get_ident()
        try:
            return work()
        finally:
            self._owner = None
            self._running_until = 0.0
            self._running_since = None
            self._busy.append((start, time.monotonic()))

    def close(self) -> None:
        """Finish what is queued, then stop the worker; a call queued too late to run
        fails with QueueClosed rather than waiting for ever."""
        with self._books:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._jobs.put(None)
            thread.join()
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[2].set_exception(QueueClosed("the offload runtime closed before it ran"))
