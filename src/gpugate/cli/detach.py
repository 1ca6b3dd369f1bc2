"""``gpugate serve --detach``: start the daemon in the background and wait until it answers."""

from __future__ import annotations

import subprocess
import sys
import time

from gpugate.daemon.paths import StatePaths

START_TIMEOUT_S = 20.0


def start_detached(paths: StatePaths, argv: list[str]) -> int:
    from gpugate.client import Client, DaemonNotRunning

    paths.ensure()
    log_path = paths.home / "daemon.log"
    args = [a for a in argv if a != "--detach"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpugate.cli.main", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    client = Client(paths.socket, timeout_s=2.0)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"gpugate: error: the daemon exited at start; see {log_path}", file=sys.stderr)
            print(log_path.read_text()[-2000:], file=sys.stderr)
            return 1
        try:
            health = client.health()
        except (DaemonNotRunning, OSError):
            time.sleep(0.05)
            continue
        note = f" ({health.note})" if health.note else ""
        print(
            f"gpugate daemon running (pid {health.pid}) on {paths.socket};"
            f" GPUs: {health.backend}{note}"
        )
        print(f"log: {log_path}")
        return 0
    print(
        f"gpugate: error: the daemon did not answer within {START_TIMEOUT_S:.0f} s; see {log_path}",
        file=sys.stderr,
    )
    return 1
