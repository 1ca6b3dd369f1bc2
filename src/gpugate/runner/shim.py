"""The per-job shim: runs one job and writes its exit code, even if the daemon is gone.

Started by the daemon as ``python -I -S shim.py EXIT_FILE COMMAND`` in a new session, so
the shim is the session leader and process-group leader of the job. Standard library
only, no gpugate import: it must start fast and must not depend on the daemon's state.

Why it exists: only a parent can collect a child's exit status. If the daemon is killed,
the shim lives on, waits for the job and records its status in EXIT_FILE, where the
restarted daemon finds it.
"""

import os
import signal
import sys
import time


def _ignore(signum, frame):  # type: ignore[no-untyped-def]
    # A caught (not ignored) signal: the shim survives the group-wide SIGTERM of a cancel,
    # while the job, whose dispositions reset to default on exec, receives it normally.
    pass


def _write_exit(path: str, code: int) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as out:
        out.write(f"{code}\n{time.time():.6f}\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def main() -> int:
    exit_file, command = sys.argv[1], sys.argv[2]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    try:
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", command], os.environ)
    except OSError as exc:
        print(f"gpugate: cannot start /bin/sh: {exc}", file=sys.stderr)
        _write_exit(exit_file, 127)
        return 127
    _, status = os.waitpid(pid, 0)  # retried on EINTR by Python (PEP 475)
    code = os.waitstatus_to_exitcode(status)  # negative: killed by that signal
    _write_exit(exit_file, code)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
