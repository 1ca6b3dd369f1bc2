"""Long CLI operations say how they go: a big batch submit, on a terminal."""

from __future__ import annotations

import io

import pytest

from gpugate.cli import commands


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_big_batch_says_it_is_being_sent_and_how_long_it_took(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    with commands._batch_progress(5000):
        pass
    said = stderr.getvalue()
    assert said.startswith("submitting 5000 jobs (one batch: all or none)...")
    assert said.rstrip().endswith(" s")


def test_small_batches_and_pipes_stay_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = Terminal()
    monkeypatch.setattr("sys.stderr", stderr)
    with commands._batch_progress(10):
        pass
    piped = io.StringIO()
    monkeypatch.setattr("sys.stderr", piped)
    with commands._batch_progress(5000):
        pass
    assert stderr.getvalue() == "" and piped.getvalue() == ""
