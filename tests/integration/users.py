"""Other users for the tests: throw-away accounts (needs root and useradd, as CI has),
requests made truly as them, and a daemon they can reach."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpugate.client import ApiError, Client
from gpugate.runner.local import SHIM_PATH
from gpugate.units import GiB
from tests.integration.conftest import RunningDaemon


@pytest.fixture
def make_user() -> Iterator[Callable[[], pwd.struct_passwd]]:
    """Throw-away accounts, each with its own group (named as the user), removed after."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create other users")
    for needed in (SHIM_PATH, Path(sys.executable)):
        if (closed := _closed_to_others(needed)) is not None:
            pytest.skip(
                f"jobs run as other users cannot enter {closed} (mode"
                f" {stat.filemode(closed.stat().st_mode)}), on the way to {needed}:"
                " clone the project where other users may enter"
            )
    made: list[str] = []

    def make() -> pwd.struct_passwd:
        name = f"gg{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["useradd", "--no-create-home", "--user-group", "--shell", "/bin/sh", name],
            check=True,
        )
        made.append(name)
        return pwd.getpwnam(name)

    yield make
    for name in made:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


def _closed_to_others(path: Path) -> Path | None:
    """The first directory above ``path`` that a user with no rights of its own there
    cannot enter (a checkout under a mode-700 directory, say), or None."""
    for directory in reversed(path.absolute().parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            return directory
    return None


@pytest.fixture
def other_user(make_user: Callable[[], pwd.struct_passwd]) -> pwd.struct_passwd:
    return make_user()


def as_user(user: pwd.struct_passwd, daemon: RunningDaemon, *args: str) -> dict[str, object]:
    """One request through the real client from a process that really is ``user``: a
    fork that drops to its uid and groups (an exec would need the interpreter to be
    readable by that user, which a root-owned virtualenv is not)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the user, ask, write the answer, leave
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            answer = _ask(Client(daemon.home / "gpugate.sock", timeout_s=30), *args)
            os.write(write_end, json.dumps(answer).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as out:
        data = out.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the request as the other user failed"
    answer: dict[str, object] = json.loads(data)
    return answer


def job_id_of(answer: dict[str, object]) -> int:
    job_id = answer.get("id")
    assert isinstance(job_id, int), answer
    return job_id


def _ask(client: Client, action: str, *rest: str) -> dict[str, object]:
    try:
        if action == "health":
            return {"ok": bool(client.health().pid)}
        if action == "submit":
            command = rest[0] if rest else "sleep 30"
            priority = int(rest[1]) if len(rest) > 1 else 0
            env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "USER": "root"}  # lies, ignored
            hold = rest[2:] == ("hold",)
            size = {"gpus": 1, "mem_bytes": 20 * GiB} if rest[2:] == ("gpu",) else {"gpus": 0}
            cwd = rest[2] if rest[2:] and rest[2].startswith("/") else "/"
            job = client.submit_command(
                command, cwd=cwd, env=env, priority=priority, hold=hold, **size
            )
            return {"id": job.id}
        if action == "priority":
            return {"priority": client.set_priority(int(rest[0]), int(rest[1])).priority}
        if action == "token":
            return {"token": client.create_token().token}
        if action == "show":
            job = client.show(int(rest[0])).job
            return {"command": job.command, "state": job.state}
        if action == "logs":
            return {"log": client.logs(int(rest[0])).decode()}
        getattr(client, action)(int(rest[0]))
        return {"ok": True}
    except ApiError as exc:
        return {"error": str(exc), "status": exc.status}
    except OSError as exc:  # the socket refused the connection itself
        return {"connect": exc.__class__.__name__}


def open_to_others(daemon: RunningDaemon, socket_too: bool = True) -> None:
    """Let other users reach the daemon's socket: traverse every directory on the way
    (never list), and (``socket_too``) open the socket itself."""
    for path in (*reversed(daemon.home.parents[:-1]), daemon.home):
        path.chmod(path.stat().st_mode | 0o011)
    if socket_too:
        (daemon.home / "gpugate.sock").chmod(0o666)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
