"""Identity from the socket's peer credentials, and owner-only control, through a real
daemon and a real second user (created for the test: needs root, as CI runs)."""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpugate.units import GiB
from tests.integration.conftest import RunningDaemon, wait_for
from tests.integration.users import as_user, free_port, job_id_of, open_to_others

pytestmark = pytest.mark.integration


@pytest.fixture
def shared_daemon(make_daemon: Callable[..., RunningDaemon]) -> RunningDaemon:
    """A daemon whose socket the second user can reach (user mode keeps it owner-only;
    the test opens it, as a system-mode daemon does for its group)."""
    daemon = make_daemon()
    open_to_others(daemon)
    return daemon


def test_a_job_belongs_to_whoever_the_kernel_says_submitted_it(
    shared_daemon: RunningDaemon, other_user: pwd.struct_passwd
) -> None:
    answer = as_user(other_user, shared_daemon, "submit")
    job = shared_daemon.client.show(job_id_of(answer)).job
    assert job.owner_uid == other_user.pw_uid  # not the daemon's, not anything the client said
    shared_daemon.client.cancel(job.id)


def test_another_user_cannot_control_my_job_and_the_refusal_is_audited(
    shared_daemon: RunningDaemon, other_user: pwd.struct_passwd
) -> None:
    mine = shared_daemon.submit("sleep 30", gpus=0)
    shared_daemon.wait_state(mine, "running")
    for action in ("cancel", "suspend", "hold"):
        answer = as_user(other_user, shared_daemon, action, str(mine))
        assert answer["status"] == 403, answer
        assert "only its owner or an admin" in str(answer["error"])
    assert shared_daemon.state(mine) == "running"  # nothing changed
    audit = [
        json.loads(line) for line in (shared_daemon.home / "audit.log").read_text().splitlines()
    ]
    assert [(e["uid"], e["action"], e["job"]) for e in audit] == [
        (other_user.pw_uid, "cancel", mine),
        (other_user.pw_uid, "suspend", mine),
        (other_user.pw_uid, "hold", mine),
    ]


def test_the_owner_may_control_their_own_job(
    shared_daemon: RunningDaemon, other_user: pwd.struct_passwd
) -> None:
    theirs = job_id_of(as_user(other_user, shared_daemon, "submit"))
    assert as_user(other_user, shared_daemon, "cancel", str(theirs)) == {"ok": True}
    shared_daemon.wait_state(theirs, "cancelled")
    assert not (shared_daemon.home / "audit.log").exists()


def test_a_job_runs_as_its_submitter_with_their_groups_and_owns_its_logs(
    shared_daemon: RunningDaemon, other_user: pwd.struct_passwd
) -> None:
    """The client claims HOME=/root and USER=root; the job gets the account's own."""
    command = 'id -u; id -g; id -G; echo "$HOME $USER $LOGNAME"; umask'
    job = job_id_of(as_user(other_user, shared_daemon, "submit", command))
    done = shared_daemon.wait_state(job, "succeeded", "failed", timeout_s=20)
    assert done.state == "succeeded", shared_daemon.client.logs(job, stream="stderr")
    uid, gid, groups, names, umask = shared_daemon.client.logs(job).decode().splitlines()
    assert (int(uid), int(gid)) == (other_user.pw_uid, other_user.pw_gid)
    expected = set(os.getgrouplist(other_user.pw_name, other_user.pw_gid))
    assert set(map(int, groups.split())) == expected  # not root's groups
    assert names == f"{other_user.pw_dir} {other_user.pw_name} {other_user.pw_name}"
    assert umask == "0022"
    for log in ("stdout.log", "stderr.log"):
        owner = (shared_daemon.home / "jobs" / str(job) / log).stat()
        assert (owner.st_uid, owner.st_mode & 0o777) == (other_user.pw_uid, 0o600)


def test_the_submitters_job_cannot_write_into_the_daemons_files(
    shared_daemon: RunningDaemon, other_user: pwd.struct_passwd
) -> None:
    """Its job directory stays the daemon's: the job can write its own logs and exit
    status, but cannot plant a file (a link the daemon would follow) beside them."""
    command = (
        'cd "$(dirname "$GPUGATE_PREEMPT_FILE")" && echo "in $(basename "$PWD")" &&'
        " (ln -s /etc/passwd log-offsets.json.x 2>/dev/null && echo planted || echo refused)"
    )
    job = job_id_of(as_user(other_user, shared_daemon, "submit", command))
    shared_daemon.wait_state(job, "succeeded", timeout_s=20)
    assert shared_daemon.client.logs(job).decode().split() == ["in", str(job), "refused"]


def test_system_mode_opens_the_socket_to_its_group_only(
    make_daemon: Callable[..., RunningDaemon],
    make_user: Callable[[], pwd.struct_passwd],
    tmp_path: Path,
) -> None:
    """`serve --system` with socket_group = member's group: the socket is 0660 for that
    group; the member reaches it and their job runs as them; an outsider cannot connect."""
    member, outsider = make_user(), make_user()
    group = grp.getgrgid(member.pw_gid).gr_name
    home = tmp_path / "d0"
    daemon = make_daemon(
        top_config=f'socket_group = "{group}"\n', serve_args=("--system", "--home", str(home))
    )
    open_to_others(daemon, socket_too=False)  # the socket's mode is the daemon's to set
    sock = (daemon.home / "gpugate.sock").stat()
    assert (sock.st_mode & 0o777, sock.st_gid) == (0o660, member.pw_gid)
    assert as_user(outsider, daemon, "health") == {"connect": "PermissionError"}
    job = job_id_of(as_user(member, daemon, "submit", "id -u"))
    daemon.wait_state(job, "succeeded", timeout_s=20)
    assert daemon.client.logs(job).decode().strip() == str(member.pw_uid)


def test_queue_and_priority_quotas_refuse_a_user_but_not_root(
    make_daemon: Callable[..., RunningDaemon],
    make_user: Callable[[], pwd.struct_passwd],
    tmp_path: Path,
) -> None:
    user = make_user()
    quotas = f"[quotas]\nmax_queued = 2\nmax_priority = 3\n[quotas.users.{user.pw_name}]\n"
    daemon = make_daemon()
    config = daemon.home / "config.toml"
    config.write_text(config.read_text() + quotas + "max_queued = 1\n")
    daemon.stop()
    daemon.start()
    open_to_others(daemon)

    too_high = as_user(user, daemon, "submit", "true", "5")
    assert too_high["status"] == 403
    assert "priority 5 is above 3" in str(too_high["error"])
    first = as_user(user, daemon, "submit", "true", "3", "hold")  # at the cap: fine
    assert "id" in first
    second = as_user(user, daemon, "submit", "true", "0", "hold")  # their line: 1 at most
    assert second["status"] == 403
    assert "has 1 jobs queued or held" in str(second["error"])
    mine = job_id_of(first)
    raised = as_user(user, daemon, "priority", str(mine), "4")
    assert raised["status"] == 403 and "priority 4 is above 3" in str(raised["error"])
    assert as_user(user, daemon, "priority", str(mine), "2") == {"priority": 2}
    for _ in range(3):  # root has no quota
        daemon.submit("true", gpus=0, priority=9)


def test_fair_share_lets_the_user_who_used_less_go_first_and_says_so(
    shared_daemon: RunningDaemon, other_user: pwd.struct_passwd
) -> None:
    """Root has used the GPU (a 2 s run); then, behind a blocker, root queues a job and
    the other user queues one after it. When the GPU frees, the other user's starts
    first, and root's waiting reason names fair share, also after a daemon restart
    (the ledger is rebuilt from the store)."""
    daemon = shared_daemon
    used = daemon.submit_using(20, 10, seconds=2)
    daemon.wait_state(used, "succeeded", timeout_s=30)
    blocker = daemon.submit_using(20, 10, seconds=60)
    daemon.wait_state(blocker, "running", timeout_s=30)
    roots = daemon.submit("sleep 30", mem_bytes=20 * GiB, util_pct=10)
    theirs = job_id_of(as_user(other_user, daemon, "submit", "sleep 30", "0", "gpu"))
    wait_for(lambda: "fair share: -" in daemon.client.show(roots).job.reason)
    assert "root used" in daemon.client.show(roots).job.reason
    assert "fair share" not in daemon.client.show(theirs).job.reason

    daemon.stop()
    daemon.start()
    wait_for(lambda: "fair share: -" in daemon.client.show(roots).job.reason)
    daemon.client.cancel(blocker)
    daemon.wait_state(theirs, "starting", "running", timeout_s=30)
    assert daemon.state(roots) == "queued"
    for job in (roots, theirs):
        daemon.client.cancel(job)


def test_the_user_mode_socket_refuses_other_users(
    daemon: RunningDaemon, other_user: pwd.struct_passwd, tmp_path: Path
) -> None:
    """User mode: even with every directory on the way open, the socket is 0600."""
    open_to_others(daemon, socket_too=False)
    assert (daemon.home / "gpugate.sock").stat().st_mode & 0o777 == 0o600
    assert as_user(other_user, daemon, "health") == {"connect": "PermissionError"}


def test_others_commands_and_logs_can_be_private(
    make_daemon: Callable[..., RunningDaemon], make_user: Callable[[], pwd.struct_passwd]
) -> None:
    """With others_see_commands = false, another user sees root's job's state but not its
    command, and may not read its logs (403, audited); root sees everything."""
    user = make_user()
    daemon = make_daemon(top_config="others_see_commands = false\n")
    open_to_others(daemon)
    secret = daemon.submit("echo the-secret-token", gpus=0)
    daemon.wait_state(secret, "succeeded")
    seen = as_user(user, daemon, "show", str(secret))
    assert seen["command"] == "(hidden)" and seen["state"] == "succeeded"
    assert as_user(user, daemon, "logs", str(secret))["status"] == 403
    assert "the-secret-token" in daemon.client.logs(secret).decode()
    assert daemon.client.show(secret).job.command == "echo the-secret-token"
    audit = (daemon.home / "audit.log").read_text()
    assert '"action": "logs"' in audit


def over_tcp(
    port: int, method: str, path: str, body: object = None, **headers: str
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_tcp_needs_a_token_and_runs_as_its_user(
    make_daemon: Callable[..., RunningDaemon], other_user: pwd.struct_passwd
) -> None:
    """The API on TCP: no token 401; a token made by a user over the Unix socket makes
    a request over TCP theirs; forged Host or Origin refused; no tokens made over TCP."""
    port = free_port()
    daemon = make_daemon(top_config=f'tcp = "127.0.0.1:{port}"\n')
    open_to_others(daemon)
    status, body = over_tcp(port, "GET", "/v1/jobs")
    assert status == 401 and "gpugate token" in body["error"]
    assert over_tcp(port, "GET", "/v1/jobs", Authorization="Bearer forged")[0] == 401

    token = str(as_user(other_user, daemon, "token")["token"])
    auth = {"Authorization": f"Bearer {token}"}
    job = {"command": "sleep 30", "cwd": "/", "gpus": 0}
    status, body = over_tcp(port, "POST", "/v1/jobs", {"jobs": [job]}, **auth)
    assert status == 201
    assert body["jobs"][0]["owner_uid"] == other_user.pw_uid  # the token's user, not root
    theirs = body["jobs"][0]["id"]
    root_job = daemon.submit("sleep 30", gpus=0)
    assert over_tcp(port, "POST", f"/v1/jobs/{root_job}/cancel", **auth)[0] == 403

    rebinding = {**auth, "Host": f"evil.example:{port}"}
    assert over_tcp(port, "GET", "/v1/jobs", **rebinding)[0] == 403
    forged = {**auth, "Origin": "http://evil.example"}
    assert over_tcp(port, "POST", f"/v1/jobs/{theirs}/cancel", **forged)[0] == 403
    assert daemon.state(theirs) in ("queued", "running")  # the forged cancel did nothing
    assert over_tcp(port, "POST", "/v1/tokens", **auth)[0] == 403
    for job_id in (theirs, root_job):
        daemon.client.cancel(job_id)


def test_gpugate_token_writes_a_private_file(daemon: RunningDaemon, tmp_path: Path) -> None:
    env_home = tmp_path / "config"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "gpugate"), "token"],
        env={**daemon.env, "XDG_CONFIG_HOME": str(env_home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    path = env_home / "gpugate" / "token"
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_text().strip()) > 30


def test_an_admin_may_control_anyones_job(
    make_daemon: Callable[..., RunningDaemon], make_user: Callable[[], pwd.struct_passwd]
) -> None:
    admin = make_user()
    group = grp.getgrgid(admin.pw_gid).gr_name
    daemon = make_daemon(top_config=f'admin_group = "{group}"\n')
    open_to_others(daemon)
    roots = daemon.submit("sleep 30", gpus=0, hold=True)
    assert as_user(admin, daemon, "release", str(roots)) == {"ok": True}
    assert as_user(admin, daemon, "cancel", str(roots)) == {"ok": True}
    daemon.wait_state(roots, "cancelled")
    assert not (daemon.home / "audit.log").exists()


def test_a_job_cannot_enter_a_directory_its_owner_cannot(
    shared_daemon: RunningDaemon, other_user: pwd.struct_passwd, tmp_path: Path
) -> None:
    """The shim changes directory as the user, not as root: a directory behind a private
    parent stays shut (status 126), and submitting there tells nothing either way."""
    private = tmp_path / "private"
    (private / "sub").mkdir(parents=True)
    (private / "sub" / "secret.txt").write_text("root-secret-42\n")
    private.chmod(0o700)
    (private / "sub").chmod(0o755)
    for cwd in (private / "sub", private / "nothing-here"):
        job = int(
            as_user(other_user, shared_daemon, "submit", "cat secret.txt", "0", str(cwd))["id"]
        )  # type: ignore[call-overload]
        done = shared_daemon.wait_state(job, "failed", timeout_s=20)
        assert done.exit_code == 126
        assert "root-secret-42" not in shared_daemon.client.logs(job).decode()


def test_a_job_cannot_forge_its_own_exit_status(
    shared_daemon: RunningDaemon, other_user: pwd.struct_passwd
) -> None:
    """The exit file is the daemon's: a job run as its submitter cannot write 'succeeded'
    into it and run on untracked."""
    forge = (
        'f="$(dirname "$GPUGATE_PREEMPT_FILE")/exit";'
        ' (echo 0 > "$f") 2>/dev/null && echo forged || echo refused; sleep 30'
    )
    job = job_id_of(as_user(other_user, shared_daemon, "submit", forge))
    wait_for(lambda: shared_daemon.client.logs(job).decode().strip())
    assert shared_daemon.client.logs(job).decode().strip() == "refused"
    assert shared_daemon.state(job) == "running"
    shared_daemon.client.cancel(job)
