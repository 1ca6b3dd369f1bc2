"""Who is asking: SO_PEERCRED on real sockets, and who may act on whose job."""

from __future__ import annotations

import grp
import json
import os
import socket
from pathlib import Path

import pytest

from gpugate.daemon.identity import AuditLog, Authority, Peer, groups_of, peer_credentials

NOBODY = 65534


def test_the_kernel_names_the_process_at_the_other_end_of_a_unix_socket() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_credentials(left) == Peer(os.getpid(), os.getuid(), os.getgid())


def test_a_socket_that_is_not_unix_has_no_credentials() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        assert peer_credentials(tcp) is None
    assert peer_credentials(None) is None


def test_an_owner_may_act_on_their_job_and_nobody_else_may() -> None:
    authority = Authority()
    assert authority.may_control(1000, owner_uid=1000)
    assert not authority.may_control(1001, owner_uid=1000)
    assert authority.may_control(0, owner_uid=1000)  # root may


def test_members_of_the_admin_group_may_act_on_any_job() -> None:
    mine = grp.getgrgid(os.getgid()).gr_name
    assert mine in groups_of(os.getuid())
    assert Authority(admin_group=mine).may_control(os.getuid(), owner_uid=NOBODY + 1)
    assert not Authority(admin_group="").is_admin(NOBODY)


def test_a_refusal_is_appended_to_the_audit_log_owner_only(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    log.refused(Peer(42, NOBODY, NOBODY), "cancel", 7, "job 7 belongs to root")
    log.refused(Peer(43, NOBODY, NOBODY), "hold", 8, "job 8 belongs to root")
    entries = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(e["uid"], e["pid"], e["action"], e["job"]) for e in entries] == [
        (NOBODY, 42, "cancel", 7),
        (NOBODY, 43, "hold", 8),
    ]
    assert (tmp_path / "audit.log").stat().st_mode & 0o777 == 0o600


def test_admin_membership_is_looked_up_once_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[int] = []

    def groups(uid: int) -> set[str]:
        lookups.append(uid)
        return {"ml-admins"} if len(lookups) == 1 else set()

    monkeypatch.setattr("gpugate.daemon.identity.groups_of", groups)
    now = [0.0]
    authority = Authority("ml-admins", ttl_s=60.0, clock=lambda: now[0])
    assert authority.is_admin(1000) and authority.is_admin(1000)
    assert lookups == [1000]  # the second answer came from the cache
    now[0] = 61.0
    assert not authority.is_admin(1000)  # removed from the group: seen after the minute
    assert authority.is_admin(0) and lookups == [1000, 1000]  # root needs no lookup
