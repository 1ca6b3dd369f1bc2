"""Sizes and percentages as people type them, and utilization smoothed over a window."""

from __future__ import annotations

import pytest

from gpugate.core.smoothing import UtilWindow
from gpugate.units import GiB, KiB, MiB, TiB, format_bytes, parse_bytes, parse_percent


# ---------------------------------------------------------------------------------------
# parse_bytes
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "n_bytes"),
    [
        ("1048576", 1048576),
        ("512b", 512),
        ("10GiB", 10 * GiB),
        ("10G", 10 * GiB),  # bare letters are binary, as nvidia-smi prints MiB
        ("10g", 10 * GiB),
        ("1.5G", 3 * GiB // 2),
        ("512MiB", 512 * MiB),
        ("512M", 512 * MiB),
        ("4k", 4 * KiB),
        ("2TiB", 2 * TiB),
        ("800MB", 800_000_000),  # decimal units are powers of 1000
        ("1GB", 1_000_000_000),
        ("3kb", 3000),
        ("1tb", 10**12),
        ("  10 GiB  ", 10 * GiB),
    ],
)
def test_parse_bytes_reads_sizes_as_people_write_them(text: str, n_bytes: int) -> None:
    assert parse_bytes(text) == n_bytes


@pytest.mark.parametrize(
    "text", ["", "   ", "GiB", "ten GiB", "-5G", "+5G", "1e9", "1,5G", "5 G B"]
)
def test_parse_bytes_refuses_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_bytes(text)


@pytest.mark.parametrize("text", ["10XB", "10 gigs", "5PiB", "5ib"])
def test_parse_bytes_refuses_unknown_units(text: str) -> None:
    with pytest.raises(ValueError, match="unknown size unit"):
        parse_bytes(text)


@pytest.mark.parametrize("text", ["0", "0G", "0.0MiB"])
def test_parse_bytes_refuses_zero(text: str) -> None:
    with pytest.raises(ValueError, match="size must be at least one byte"):
        parse_bytes(text)


# ---------------------------------------------------------------------------------------
# format_bytes
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n_bytes", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (KiB, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (512 * MiB, "512 MiB"),  # 100 and over: no decimal
        (99 * MiB, "99.0 MiB"),
        (10 * GiB, "10.0 GiB"),
        (24 * GiB, "24.0 GiB"),
        (int(21.6 * GiB), "21.6 GiB"),
        (1024 * GiB, "1.0 TiB"),
        (-2 * GiB, "-2.0 GiB"),
    ],
)
def test_format_bytes(n_bytes: int | None, text: str) -> None:
    assert format_bytes(n_bytes) == text


@pytest.mark.parametrize("text", ["10GiB", "512MiB", "2TiB", "1.5GiB", "4KiB"])
def test_format_then_parse_round_trips_binary_sizes(text: str) -> None:
    assert parse_bytes(format_bytes(parse_bytes(text)).replace(" ", "")) == parse_bytes(text)


# ---------------------------------------------------------------------------------------
# parse_percent
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "pct"),
    [
        ("85", 85.0),
        ("85%", 85.0),
        (" 85 % ", 85.0),
        ("0", 0.0),
        ("100", 100.0),
        ("12.5", 12.5),
        ("0.85", 0.85),  # a percentage, never a fraction
        ("0.5%", 0.5),  # with a percent sign it is a percentage
        ("1", 1.0),  # no decimal point: 1%, not 100%
    ],
)
def test_parse_percent(text: str, pct: float) -> None:
    assert parse_percent(text) == pytest.approx(pct)


@pytest.mark.parametrize("text", ["", "%", "eighty", "85 percent", "5%%"])
def test_parse_percent_refuses_what_is_not_a_number(text: str) -> None:
    with pytest.raises(ValueError, match="not a percentage"):
        parse_percent(text)


@pytest.mark.parametrize("text", ["-5", "-0.5", "101", "150%", "nan", "inf"])
def test_parse_percent_refuses_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_percent(text)


# ---------------------------------------------------------------------------------------
# UtilWindow
# ---------------------------------------------------------------------------------------
def test_an_empty_window_has_no_mean() -> None:
    assert UtilWindow(window_s=10).mean() is None


def test_the_mean_is_over_the_samples_in_the_window() -> None:
    window = UtilWindow(window_s=10)
    for at, util in [(0.0, 100.0), (2.0, 50.0), (4.0, 0.0)]:
        window.add(at, util)

    assert window.mean() == pytest.approx(50.0)


def test_samples_older_than_the_window_are_dropped() -> None:
    """At t=10 with a 10 s window the sample from t=0 is out (the window is (0, 10]):
    the mean is of 50 and 0 only."""
    window = UtilWindow(window_s=10)
    window.add(0.0, 100.0)
    window.add(5.0, 50.0)
    assert window.mean() == pytest.approx(75.0)

    window.add(10.0, 0.0)
    assert window.mean() == pytest.approx(25.0)


def test_a_burst_fades_once_the_window_moves_past_it() -> None:
    window = UtilWindow(window_s=5)
    window.add(0.0, 100.0)
    for at in range(1, 20):
        window.add(float(at), 10.0)

    assert window.mean() == pytest.approx(10.0)


def test_the_mean_never_goes_negative_from_rounding() -> None:
    """A running sum that adds and removes many fractions may drift below zero."""
    window = UtilWindow(window_s=1)
    for at in range(1000):
        window.add(float(at), 0.1 if at % 2 else 33.3)
    for at in range(1000, 1010):
        window.add(float(at), 0.0)

    mean = window.mean()
    assert mean is not None
    assert mean == pytest.approx(0.0, abs=1e-9)
    assert mean >= 0.0
