"""The process's default runtime: what ``task(...)``, ``task.submit`` and
``offload.explain`` use. Made on first use; closed (and what it learned saved) at exit."""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from gpugate.offload.runtime import Runtime

POLICY_ENV = "GPUGATE_OFFLOAD_POLICY"
_default: Runtime | None = None
_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process's runtime (``$GPUGATE_OFFLOAD_POLICY`` picks its policy)."""
    global _default
    if _default is None:
        with _lock:
            if _default is None:
                _default = Runtime(policy=os.environ.get(POLICY_ENV, "learned"))
    return _default


def configure(**options: Any) -> Runtime:
    """Replace the default runtime (``Runtime``'s keyword arguments); the old one is
    closed, so what it learned is saved first."""
    global _default
    with _lock:
        old, _default = _default, Runtime(**options)
    if old is not None:
        old.close()
    return _default


def _close_at_exit() -> None:
    """Whichever runtime is the default when the interpreter exits."""
    if _default is not None:
        _default.close()


atexit.register(_close_at_exit)
