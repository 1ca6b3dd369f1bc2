"""Who is asking: the peer credentials of the Unix socket, never what the client says.

The kernel records the uid, gid and pid of the process that connected to a Unix socket
(``SO_PEERCRED``); a client cannot forge them. uvicorn does not put the connection's
socket in the ASGI scope, so the HTTP protocol is subclassed: when a connection is made
it reads the credentials and adds them to the per-connection copy of the app state,
which uvicorn hands to every request of that connection as ``scope["state"]``.

Who may act on a job: its owner, root, and members of the configured admin group.
"""

from __future__ import annotations

import functools
import grp
import json
import os
import pwd
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEER_KEY = "gpugate.peer"  # where a request's credentials are in scope["state"]
TCP_KEY = "gpugate.tcp"  # set for a TCP connection: its requests must bring a token
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True, slots=True)
class Peer:
    """The process at the other end of the socket, as the kernel saw it connect."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket | None) -> Peer | None:
    """The peer of a connected Unix socket; None for anything else (e.g. TCP)."""
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    pid, uid, gid = _UCRED.unpack(raw)
    return Peer(pid, uid, gid)


def with_peer_credentials(base: type[Any]) -> type[Any]:
    """A uvicorn HTTP protocol class that records each connection's peer credentials."""

    class PeerCredentialsProtocol(base):  # type: ignore[misc]
        app_state: dict[str, Any]  # set by uvicorn; copied into each request's scope

        def connection_made(self, transport: Any) -> None:
            peer = peer_credentials(transport.get_extra_info("socket"))
            # a copy per connection: the shared app state must not carry one peer
            if peer is not None:
                self.app_state = {**self.app_state, PEER_KEY: peer}
            else:  # TCP: nobody vouches for the caller (tokens.TcpGuard asks for a token)
                self.app_state = {**self.app_state, TCP_KEY: True}
            super().connection_made(transport)

    return PeerCredentialsProtocol


def http_protocol() -> type[Any]:
    """uvicorn's fast protocol where httptools is installed, else h11; with credentials."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return with_peer_credentials(HttpToolsProtocol)
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return with_peer_credentials(H11Protocol)


class Authority:
    """Who may act on other users' jobs: root, and the members of ``admin_group``.

    Membership is looked up in the group database (0.1-0.3 ms with local files, a network
    round trip with LDAP, on the daemon's one event loop), so each answer is kept for
    ``ttl_s``: a user added to or removed from the group counts within a minute."""

    def __init__(
        self,
        admin_group: str = "",
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.admin_group = admin_group  # a group name; "" = root only
        self._ttl_s, self._clock = ttl_s, clock
        self._known: dict[int, tuple[float, bool]] = {}  # uid -> (until, is admin)

    def is_admin(self, uid: int) -> bool:
        if uid == 0:
            return True
        if not self.admin_group:
            return False
        now = self._clock()
        until, answer = self._known.get(uid, (0.0, False))
        if now >= until:
            answer = self.admin_group in groups_of(uid)
            self._known[uid] = (now + self._ttl_s, answer)
        return answer

    def may_control(self, uid: int, owner_uid: int) -> bool:
        return uid == owner_uid or self.is_admin(uid)


def groups_of(uid: int) -> set[str]:
    """The names of the groups ``uid`` is in (primary and supplementary)."""
    try:
        user = pwd.getpwuid(uid)
    except KeyError:
        return set()
    names = set()
    for gid in os.getgrouplist(user.pw_name, user.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return names


@functools.lru_cache(maxsize=4096)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class AuditLog:
    """Refused requests, one JSON object per line, appended (``$GPUGATE_HOME/audit.log``)."""

    MAX_BYTES = 10 * 1024 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path

    def refused(self, peer: Peer, action: str, job_id: int | None, why: str) -> None:
        """One line; past ``MAX_BYTES`` the file is rotated first."""
        entry = {
            "at": time.time(),
            "uid": peer.uid,
            "user": user_name(peer.uid),
            "pid": peer.pid,
            "action": action,
            "job": job_id,
            "refused": why,
        }
        self._rotate_if_full()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as out:
            out.write(json.dumps(entry) + "\n")

    def _rotate_if_full(self) -> None:
        """Past ``MAX_BYTES`` the log becomes ``audit.log.1`` (replacing the one before):
        a user looping refused requests cannot fill the disk."""
        try:
            if self.path.stat().st_size >= self.MAX_BYTES:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        except FileNotFoundError:
            pass
