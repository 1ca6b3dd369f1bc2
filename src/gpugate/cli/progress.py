"""A progress line on stderr for long commands (the simulator, offload calibration)."""

from __future__ import annotations

import sys
import time

PROGRESS_EVERY_S = 0.5


class StatusLine:
    """One line on stderr: rewritten in place on a terminal, a new line each time
    otherwise (logs), and at most every PROGRESS_EVERY_S unless it is the last."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.started = time.monotonic()
        self.last = 0.0
        self.tty = sys.stderr.isatty()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def due(self, final: bool = False) -> bool:
        """Whether a line may be written now (and, if so, the clock restarts)."""
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and not final:
            return False
        self.last = now
        return True

    def write(self, line: str) -> None:
        sys.stderr.write(("\r" + line.ljust(self.width)) if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
