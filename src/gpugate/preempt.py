"""The job-side half of cooperative checkpoint-and-requeue.

A job submitted with ``--preempt checkpoint`` agrees to yield its GPUs when asked. To ask, the
daemon (1) creates the file named by ``$GPUGATE_PREEMPT_FILE`` and then (2) sends SIGUSR1 to
the job's process group. The job is expected to save a checkpoint and exit with status 75
(``REQUEUE_EXIT_CODE``, EX_TEMPFAIL: "try me again later"). The daemon requeues it keeping its
place and later relaunches it with ``GPUGATE_RESUME=1``; ``$GPUGATE_CHECKPOINT`` carries the
path declared with ``--checkpoint`` at submit.

A training loop needs four calls::

    import gpugate

    gpugate.preemptible()                      # first thing: so SIGUSR1 wakes us at once
    if gpugate.resuming():
        state = load(gpugate.checkpoint_path(default="ckpt.pt"))
    for step in ...:
        if gpugate.preempt_requested():
            save(gpugate.checkpoint_path(default="ckpt.pt"))
            gpugate.exit_for_requeue()

Two channels carry the request because neither is enough alone: the signal wakes a job at
once but only reaches a Python handler in the main thread of a process that installed one,
while the file is seen by anything that looks (a worker thread, a child process started with
``spawn``, a shell script), at the cost of polling.

Stdlib only (nothing that ``typing`` does not already load) and free of side effects on
import: ``import gpugate`` must stay fast for the CLI, and merely importing this module must
not change how the process reacts to signals.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Final, NoReturn

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

__all__ = [
    "CHECKPOINT_ENV",
    "PREEMPT_FILE_ENV",
    "PREEMPT_SIGNAL",
    "REQUEUE_EXIT_CODE",
    "RESUME_ENV",
    "checkpoint_path",
    "exit_for_requeue",
    "preempt_requested",
    "preemptible",
    "resuming",
]

REQUEUE_EXIT_CODE: Final = 75
"""Exit status that means "requeue me": EX_TEMPFAIL from sysexits.h. Any other status is taken
as the job's real outcome, so a job that merely crashes while checkpointing is not requeued."""

PREEMPT_SIGNAL: Final = signal.SIGUSR1
"""The signal the daemon sends to the job's process group. Its default action terminates the
process, which is why the daemon sends it only to jobs that declared ``--preempt checkpoint``
and why such jobs should call :func:`preemptible` before anything slow."""

PREEMPT_FILE_ENV: Final = "GPUGATE_PREEMPT_FILE"
"""Names a file in the job's state dir; it exists once the daemon has asked the job to yield."""

RESUME_ENV: Final = "GPUGATE_RESUME"
"""Set to ``"1"`` when the daemon relaunches a job that yielded, so it loads its checkpoint."""

CHECKPOINT_ENV: Final = "GPUGATE_CHECKPOINT"
"""The checkpoint path declared with ``--checkpoint`` at submit, when one was."""

# Set from the signal handler; a plain bool is enough because Python runs signal handlers in the
# main thread between bytecodes, so there is no torn write to guard against.
_requested = False
# Whether our handler is in place (so preemptible() is idempotent).
_installed = False
# Whether preempt_requested() has already tried to install the handler itself; it tries once so
# that a handler the program installs later on purpose is not silently taken back on every poll.
_auto_install_tried = False
# What SIGUSR1 did before we took it, so the test hook can put it back.
_previous_handler: Callable[[int, FrameType | None], Any] | int | None = None


def _on_preempt_signal(signum: int, frame: FrameType | None) -> None:
    """Only record the request: a signal handler may run in the middle of any line of the
    training loop (even inside a checkpoint write), so the real work waits for the loop to
    poll :func:`preempt_requested` at a safe point."""
    global _requested
    _requested = True


def preemptible() -> None:
    """Take SIGUSR1 as a request to yield.

    Call it at the very start of a job submitted with ``--preempt checkpoint``. Under gpugate
    a job starts with SIGUSR1 ignored (the daemon's shim ignores it, so the request never
    kills a process that did not ask for it); until a handler is in place only the preempt
    file carries the request. Outside gpugate SIGUSR1's default action would terminate the
    process, which the handler also prevents. Idempotent. Python allows signal handlers to be
    set only from the main thread, so from any other thread this does nothing and the job
    relies on the preempt file alone; it never raises, since failing to install a handler
    must not take down a job that would otherwise run fine.
    """
    global _installed, _previous_handler
    if _installed:
        return
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.signal(PREEMPT_SIGNAL, _on_preempt_signal)
    except (ValueError, OSError, RuntimeError):
        # ValueError: not the main thread of the main interpreter (e.g. a subinterpreter).
        return
    _previous_handler = previous
    _installed = True


def preempt_requested() -> bool:
    """Whether the daemon has asked this job to yield; cheap enough to call every step.

    True once SIGUSR1 has been received or while the file named by ``$GPUGATE_PREEMPT_FILE``
    exists (an ``os.path.exists``, so jobs that cannot take the signal still see the request).
    The first call installs the signal handler if :func:`preemptible` was not called, so a job
    that only polls is still covered for every signal sent after that. Once seen, the request
    stays seen: the daemon does not withdraw it, so a later poll must not contradict an earlier
    one. Outside gpugate (no environment variable, no signal) it is always False.
    """
    global _auto_install_tried, _requested
    if not _auto_install_tried:
        _auto_install_tried = True
        preemptible()
    if _requested:
        return True
    path = os.environ.get(PREEMPT_FILE_ENV)
    if path and os.path.exists(path):
        _requested = True
        return True
    return False


def exit_for_requeue() -> NoReturn:
    """Exit with status 75 so the daemon requeues the job instead of recording an outcome.

    Call it after the checkpoint is safely on disk. Buffered output is flushed first so the
    job's log shows everything up to the checkpoint. It raises ``SystemExit`` rather than
    calling ``os._exit`` so that ``finally`` blocks and ``atexit`` hooks still run (closing
    files, shutting down data-loader workers).
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        # A closed or broken stream must not turn a clean yield into a crash.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    sys.exit(REQUEUE_EXIT_CODE)


def resuming() -> bool:
    """Whether this launch continues a job that yielded earlier, so it should load its
    checkpoint rather than start over. Only the exact value ``"1"`` counts."""
    return os.environ.get(RESUME_ENV) == "1"


def checkpoint_path(default: str | None = None) -> str | None:
    """The checkpoint path declared with ``--checkpoint`` at submit, else ``default``.

    Reading it from the environment keeps the path in one place (the submit command) and lets
    the same script run unchanged outside gpugate, where ``default`` applies.
    """
    return os.environ.get(CHECKPOINT_ENV) or default


def _reset_for_tests() -> None:
    """Test hook: forget any request and put SIGUSR1's previous handler back.

    The module keeps process-wide state (a flag and a signal handler); tests call this between
    cases so that one test's signal does not leak into the next. Not part of the public API.
    """
    global _requested, _installed, _auto_install_tried, _previous_handler
    if _installed and threading.current_thread() is threading.main_thread():
        previous = _previous_handler if _previous_handler is not None else signal.SIG_DFL
        signal.signal(PREEMPT_SIGNAL, previous)
    _requested = False
    _installed = False
    _auto_install_tried = False
    _previous_handler = None
