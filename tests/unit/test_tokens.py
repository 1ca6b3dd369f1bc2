"""Tokens for the API on TCP, and the same-site checks against forged requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpugate.daemon.config import ConfigError, load_config
from gpugate.daemon.tokens import TokenStore, bearer, same_site


def test_a_token_names_its_user_and_only_its_hash_is_kept(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token = store.create(1000)
    assert store.uid_of(token) == 1000
    assert token not in (tmp_path / "tokens.json").read_text()
    assert (tmp_path / "tokens.json").stat().st_mode & 0o777 == 0o600
    assert TokenStore(tmp_path / "tokens.json").uid_of(token) == 1000  # kept across restarts
    assert store.uid_of(token + "x") is None


def test_a_new_token_replaces_the_old_and_revoke_ends_it(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    old, other = store.create(1000), store.create(1001)
    new = store.create(1000)
    assert (store.uid_of(old), store.uid_of(new), store.uid_of(other)) == (None, 1000, 1001)
    assert store.revoke(1000) and not store.revoke(1000)
    assert store.uid_of(new) is None and store.uid_of(other) == 1001


def test_bearer_reads_only_a_bearer_header() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("Basic abc") is None and bearer(None) is None and bearer("Bearer ") is None


@pytest.mark.parametrize(
    ("host", "origin", "refused"),
    [
        ("127.0.0.1:8765", None, False),
        ("localhost:8765", "http://localhost:8765", False),
        ("[::1]:8765", None, False),
        ("evil.example:8765", None, True),  # DNS rebinding: another name for 127.0.0.1
        (None, None, True),
        ("127.0.0.1:8765", "http://evil.example", True),  # a cross-site form or fetch
        ("127.0.0.1:8765", "null", True),
    ],
)
def test_only_same_site_requests_pass(host: str | None, origin: str | None, refused: bool) -> None:
    assert (same_site(host, origin, "127.0.0.1:8765") is not None) is refused


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('tcp = "0.0.0.0:8765"', "reaches beyond this machine"),
        ('tcp = "8765"', 'tcp must be "host:port"'),
        ('tcp = "127.0.0.1:8765"\ntls_cert = "/no/such.pem"', "tls_cert: no file"),
    ],
)
def test_tcp_settings_are_checked(tmp_path: Path, lines: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(lines + "\n")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "config.toml")


def test_a_loopback_address_needs_no_tls(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('tcp = "127.0.0.1:8765"\n')
    assert load_config(tmp_path / "config.toml").tcp == "127.0.0.1:8765"
