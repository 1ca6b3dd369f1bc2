"""Where user mode puts its socket: the user's runtime directory, unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpugate.daemon.paths import StatePaths


def test_the_socket_goes_in_the_runtime_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPUGATE_HOME", raising=False)
    monkeypatch.delenv("GPUGATE_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    paths = StatePaths.default()
    assert paths.socket == tmp_path / "gpugate.sock"
    assert paths.home == tmp_path / "state" / "gpugate"


def test_gpugate_home_keeps_everything_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GPUGATE_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("GPUGATE_HOME", str(tmp_path / "home"))
    assert StatePaths.default().socket == tmp_path / "home" / "gpugate.sock"


def test_without_a_runtime_directory_the_socket_is_in_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GPUGATE_HOME", "GPUGATE_SOCKET", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert StatePaths.default().socket == tmp_path / "gpugate" / "gpugate.sock"
