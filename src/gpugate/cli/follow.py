"""Long-running CLI commands: following logs, waiting for many jobs (with progress)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence

from gpugate.client import ApiError, Client

EXIT_TIMEOUT = 124


def follow(client: Client, job_id: int, streams: Sequence[str]) -> int:
    """Stream stdout and stderr side by side until the job ends; 0 once all was shown,
    1 (with the reason on stderr) if the daemon refused or went away."""
    errors: list[str] = []

    def pump(stream: str) -> None:
        target = sys.stdout if stream == "stdout" else sys.stderr
        try:
            for chunk in client.follow_logs(job_id, stream):
                target.buffer.write(chunk)
                target.flush()
        except ApiError as exc:
            errors.append(exc.message)
        except OSError as exc:
            errors.append(f"lost the daemon while following: {exc}")

    threads = [threading.Thread(target=pump, args=(s,), daemon=True) for s in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for message in dict.fromkeys(errors):
        print(f"gpugate: error: {message}", file=sys.stderr)
    return 1 if errors else 0


def job_exit_status(state: str, exit_code: int | None) -> int:
    """The shell status ``wait`` reports: the job's own (128+N if signal N killed it);
    1 for a job that never ran or left no code (cancelled before start, lost)."""
    if state == "succeeded":
        return 0
    return 1 if exit_code is None else exit_code


def wait_all(
    client: Client, ids: Sequence[int], timeout_s: float | None, quiet: bool = False
) -> int:
    """Wait for every job; progress on stderr when there are several and it is a terminal."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    show_progress = len(ids) > 1 and sys.stderr.isatty() and not quiet
    first_failure = 0
    for done, job_id in enumerate(ids):
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        job = client.wait(job_id, timeout_s=left)
        if job.ended_at is None:
            print(f"gpugate: job {job_id} still {job.state} after the timeout", file=sys.stderr)
            return EXIT_TIMEOUT
        status = job_exit_status(job.state, job.exit_code)
        if not quiet and (len(ids) == 1 or status):
            print(f"job {job.id}: {job.state} ({job.reason})", file=sys.stderr)
        first_failure = first_failure or status
        if show_progress:
            print(f"\rwaited {done + 1}/{len(ids)}", end="", file=sys.stderr, flush=True)
    if show_progress:
        print(file=sys.stderr)
    return first_failure
