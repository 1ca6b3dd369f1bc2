"""Per-user tokens for the HTTP API on TCP (the dashboard), and the checks TCP needs.

On the Unix socket the kernel says who is asking (SO_PEERCRED). On TCP nothing does, so
every request there must carry ``Authorization: Bearer <token>``. ``gpugate token``
asks the daemon, over the Unix socket, for a new token for the caller: the daemon keeps
only its SHA-256 (``$GPUGATE_HOME/tokens.json``, mode 0600), and a new token replaces
the user's old one.

A token travels in a header, never a cookie, so a web page on another site cannot make a
browser send it: that is the protection against cross-site request forgery. On top,
a request with an ``Origin`` from another site, or a ``Host`` that is not the address
gpugate listens on (a DNS-rebinding page), is refused.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import pwd
import secrets
from pathlib import Path
from typing import Any

import msgspec

from gpugate.daemon.identity import PEER_KEY, TCP_KEY, Peer

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class TokenStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_hash: dict[str, int] = self._read()

    def create(self, uid: int) -> str:
        """A new token for ``uid``, replacing theirs; only its hash is kept."""
        token = secrets.token_urlsafe(32)
        self._by_hash = {h: u for h, u in self._by_hash.items() if u != uid}
        self._by_hash[_digest(token)] = uid
        self._write()
        return token

    def revoke(self, uid: int) -> bool:
        kept = {h: u for h, u in self._by_hash.items() if u != uid}
        revoked = len(kept) < len(self._by_hash)
        self._by_hash = kept
        self._write()
        return revoked

    def uid_of(self, token: str) -> int | None:
        return self._by_hash.get(_digest(token))

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable: no token works until users make new ones
        return {str(h): int(u) for h, u in data.items()} if isinstance(data, dict) else {}

    def _write(self) -> None:
        partial = self.path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(self._by_hash, out)
        os.replace(partial, self.path)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(header: str | None) -> str | None:
    if not header or not header.startswith("Bearer "):
        return None
    return header.removeprefix("Bearer ").strip() or None


def same_site(host: str | None, origin: str | None, listening: str) -> str | None:
    """Why a TCP request must be refused for where it comes from; None if it may go on.

    ``host``: the Host header; it must name the address gpugate listens on (or a loopback
    name for a loopback address): a DNS-rebinding page reaches 127.0.0.1 under its own
    name. ``origin``: a browser's Origin header, when present, must be that same host."""
    allowed = _names_for(listening)
    if host is None or _host_name(host) not in allowed:
        return f"Host {host!r} is not this daemon's address"
    if origin is not None and origin != "null":
        name = origin.split("://", 1)[-1]
        if _host_name(name) not in allowed:
            return f"cross-site request from {origin!r} refused"
    elif origin == "null":
        return "request from an opaque origin refused"
    return None


def _names_for(listening: str) -> set[str]:
    host = _host_name(listening)
    names = {host}
    if is_loopback(host):
        names |= LOOPBACK_NAMES
    return names


def _host_name(host_port: str) -> str:
    """``host`` of ``host:port``, ``[v6]:port`` or a bare host, lower case."""
    value = host_port.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_loopback(host: str) -> bool:
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class TcpGuard:
    """ASGI middleware: a request that came over TCP needs a same-site Host and Origin and
    a valid token; it then runs as the token's user (``scope["state"]`` gets the peer).
    Unix-socket requests pass untouched (the kernel named their peer)."""

    def __init__(self, app: Any, tokens: TokenStore, listening: str) -> None:
        self.app, self.tokens, self.listening = app, tokens, listening

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        state = scope.get("state") or {}
        if scope["type"] == "http" and state.get(TCP_KEY):
            peer, status, why = self._admit(scope, token_needed=not _public(scope))
            if peer is None:
                await _refuse(send, status, why)
                return
            state[PEER_KEY] = peer
        await self.app(scope, receive, send)

    def _admit(self, scope: Any, token_needed: bool) -> tuple[Peer | None, int, str]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        why = same_site(headers.get("host"), headers.get("origin"), self.listening)
        if why is not None:
            return None, 403, why
        if not token_needed:
            return Peer(0, -1, -1), 200, ""  # the dashboard's files: no data, no identity
        token = bearer(headers.get("authorization"))
        uid = None if token is None else self.tokens.uid_of(token)
        if uid is None:
            return None, 401, "a token is needed on TCP: `gpugate token` makes one"
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            return None, 401, f"the token's user (uid {uid}) has no account here any more"
        return Peer(0, uid, gid), 200, ""


def _public(scope: Any) -> bool:
    """The dashboard's page and files: a browser cannot send a token to fetch them."""
    path = scope.get("path", "")
    public = path in ("/", "/favicon.ico") or path.startswith("/static/")
    return bool(scope.get("method") == "GET" and public)


async def _refuse(send: Any, status: int, why: str) -> None:
    body = msgspec.json.encode({"error": why})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
