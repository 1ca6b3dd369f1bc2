"""The real runner: each job in its own session under the shim, logs to files."""

from __future__ import annotations

import functools
import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

from gpugate.model import Job
from gpugate.runner.base import ExitRecord, Launched, LaunchError

SHIM_PATH = Path(__file__).with_name("shim.sh")
SHELL = "/bin/sh"
EXIT_FILE = "exit"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
START_TIME_TOLERANCE_S = 1.0
JOB_UMASK = 0o022  # a job run as its submitter creates files as a login shell would


@dataclass(frozen=True, slots=True)
class RunAs:
    """The account a job runs as when it is not the daemon's own."""

    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary, from the group database, as at login
    name: str
    home: str
    shell: str

    def environment(self, submitted: dict[str, str]) -> dict[str, str]:
        """What the submitter passed, with the account's own identity variables: the
        client's HOME or USER must not point a job at someone else's files."""
        return {
            **submitted,
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "SHELL": self.shell or SHELL,
        }


def runs_as_submitter(owner_uid: int) -> bool:
    """Whether a job of this owner runs as them rather than as the daemon's user."""
    return os.geteuid() == 0 and owner_uid != 0


def run_as(owner_uid: int) -> RunAs | None:
    """Jobs run as their submitter: when the daemon is root (system mode) and the job
    is not root's, as the owner's uid, gid and groups. None: as the daemon's own user
    (user mode, where the submitter is the daemon's user)."""
    if not runs_as_submitter(owner_uid):
        return None
    try:
        account = pwd.getpwuid(owner_uid)
    except KeyError:
        raise LaunchError(f"the job's owner, uid {owner_uid}, has no account here") from None
    groups = tuple(os.getgrouplist(account.pw_name, account.pw_gid))
    return RunAs(
        owner_uid, account.pw_gid, groups, account.pw_name, account.pw_dir, account.pw_shell
    )


class LocalRunner:
    """Launches jobs as real processes on this machine."""

    def __init__(self) -> None:
        self._children: set[int] = set()

    def launch(self, job: Job, env: dict[str, str], job_dir: Path) -> Launched:
        job_dir.mkdir(parents=True, exist_ok=True)
        user = run_as(job.spec.owner_uid)
        exit_fd = _new_exit_file(job_dir / EXIT_FILE)
        argv = [SHELL, str(SHIM_PATH), str(job_dir / EXIT_FILE), job.spec.command]
        switch: dict[str, object] = {"cwd": job.spec.cwd}
        if user is None:
            if not os.path.isdir(job.spec.cwd):
                os.close(exit_fd)
                raise LaunchError(f"working directory {job.spec.cwd} does not exist")
        else:
            _hand_over(job_dir, user)
            env = user.environment(env)
            argv.append(job.spec.cwd)  # the shim enters it as the user (see shim.sh)
            switch = {
                "cwd": "/",
                "user": user.uid,
                "group": user.gid,
                "extra_groups": list(user.groups),
                "umask": JOB_UMASK,
            }
        try:
            with (
                open(job_dir / STDOUT_FILE, "ab") as out,
                open(job_dir / STDERR_FILE, "ab") as err,
            ):
                proc = subprocess.Popen(  # type: ignore[call-overload]
                    argv,
                    env=env,
                    stdin=exit_fd,  # where the shim writes the status (shim.sh)
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                    **switch,
                )
        except OSError as exc:
            raise LaunchError(f"cannot start the job: {exc}") from exc
        finally:
            os.close(exit_fd)
        # the daemon reaps its children itself (waitpid in the tick); Popen must not
        proc.returncode = 0
        self._children.add(proc.pid)
        return Launched(proc.pid, process_start_time(proc.pid) or 0.0)

    def signal(self, job: Job, signum: int) -> bool:
        if job.pid is None:
            return False
        try:
            os.killpg(job.pid, signum)
        except ProcessLookupError:
            return False  # a normal race: it ended on its own
        return True

    def find_orphan(self, job: Job, job_dir: Path) -> Launched | None:
        exit_path = str(job_dir / EXIT_FILE)  # the shim's first argument names its job
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if exit_path in (proc.info.get("cmdline") or []):
                pid = int(proc.info["pid"])
                return Launched(pid, process_start_time(pid) or 0.0)
        return None

    def collect(self) -> None:
        self._children -= reap(self._children)

    def exit_record(self, job: Job, job_dir: Path) -> ExitRecord | None:
        return read_exit_file(job_dir / EXIT_FILE)

    def is_alive(self, job: Job) -> bool:
        if job.pid is None:
            return False
        started = process_start_time(job.pid)
        if started is None:
            return False
        if job.pid_start_time and abs(started - job.pid_start_time) > START_TIME_TOLERANCE_S:
            return False  # the pid was reused by an unrelated process
        return not _is_zombie(job.pid)


def _new_exit_file(path: Path) -> int:
    """The empty exit file (empty reads as "no status yet"), the daemon's own, open for
    the shim to write the status into (shim.sh): a job cannot forge it."""
    path.unlink(missing_ok=True)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)


def _hand_over(job_dir: Path, user: RunAs) -> None:
    """What a job run as ``user`` needs of its directory, and no more. The directory
    stays the daemon's (the daemon writes there as root, so the job must not be able to
    plant links in it); it becomes traversable. The logs belong to the job's owner."""
    job_dir.chmod(0o711)
    for name in (STDOUT_FILE, STDERR_FILE):
        path = job_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.fchown(fd, user.uid, user.gid)
        finally:
            os.close(fd)


def read_exit_file(path: Path) -> ExitRecord | None:
    """The shim's record: the job's shell status (128+N: killed by signal N); the file's
    mtime is when the job ended. None while absent, still being written, or not a status
    a shell can give (0-255: anything else is not the shim's)."""
    try:
        with open(path, "rb") as record:
            text = record.read(16)
            ended_at = os.fstat(record.fileno()).st_mtime
        code = int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return ExitRecord(code, ended_at) if 0 <= code <= 255 else None


def process_start_time(pid: int) -> float | None:
    """When the process started (epoch seconds), or None if it is gone.

    On Linux straight from /proc (tens of microseconds: it is on every launch's path);
    elsewhere through psutil. Both give the same value, so either can check the other.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # the command name may hold spaces and parentheses: fields start after the last ')'
            fields = stat.read().rsplit(b")", 1)[1].split()
        return _boot_time() + int(fields[19]) / _CLOCK_TICKS
    except FileNotFoundError:
        return None
    except (OSError, IndexError, ValueError):
        pass
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@functools.cache
def _boot_time() -> float:
    return float(psutil.boot_time())


def _is_zombie(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def reap(pids: set[int]) -> set[int]:
    """Collect those of our exited children (shims) so they do not linger as zombies.

    Only the given pids: ``waitpid(-1)`` would steal the status of other subprocesses
    (e.g. nvidia-smi). Their exit codes are in the exit files, not in the status.
    """
    reaped = set()
    for pid in pids:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid  # not our child (re-adopted after a restart) or already reaped
        if done:
            reaped.add(pid)
    return reaped


def session_of(pid: int) -> int | None:
    """The session id of a process (its job's shim pid, for gpugate's jobs)."""
    try:
        return os.getsid(pid)
    except OSError:
        return None
