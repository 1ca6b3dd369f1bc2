"""Utilization smoothed over a time window: one sample says little about a bursty GPU."""

from __future__ import annotations

from collections import deque


class UtilWindow:
    """Mean of the utilization samples of the last ``window_s`` seconds.

    Pure: the caller passes the time, so the daemon and the simulator share it. Samples
    are expected at a steady rate (the monitor's), so a plain mean is a time mean.
    """

    def __init__(self, window_s: float = 10.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def add(self, at: float, util_pct: float) -> None:
        self._samples.append((at, util_pct))
        self._sum += util_pct
        while self._samples and self._samples[0][0] <= at - self.window_s:
            self._sum -= self._samples.popleft()[1]

    def mean(self) -> float | None:
        """Mean utilization in percent over the window, ``None`` before any sample."""
        if not self._samples:
            return None
        return max(0.0, self._sum / len(self._samples))
