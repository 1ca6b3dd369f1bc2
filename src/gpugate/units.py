"""Sizes and percentages as people write them ("10GiB", "512M", "85%") and back."""

from __future__ import annotations

import re

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

# Binary units are the default for bare letters because GPU tools (nvidia-smi, NVML) report
# memory in MiB: "--mem 10G" means what nvidia-smi would print as 10240MiB.
_UNITS = {
    "": 1,
    "b": 1,
    "k": KiB,
    "kib": KiB,
    "kb": 1000,
    "m": MiB,
    "mib": MiB,
    "mb": 1000**2,
    "g": GiB,
    "gib": GiB,
    "gb": 1000**3,
    "t": TiB,
    "tib": TiB,
    "tb": 1000**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str) -> int:
    """Parse "10GiB", "1.5G", "512MiB", "800MB" or "1048576" into bytes.

    K/M/G/T alone and KiB/MiB/GiB/TiB are powers of 1024; KB/MB/GB/TB are powers of 1000.
    Raises ValueError with a message fit to show a user.
    """
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 10GiB, 512MiB, 1.5G)")
    number, unit = match.groups()
    factor = _UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r} in {text!r} (use KiB, MiB, GiB, TiB)")
    value = int(float(number) * factor)
    if value < 1:
        raise ValueError(f"size must be at least one byte: {text!r}")
    return value


def format_bytes(n_bytes: int | None) -> str:
    """Render bytes for people: "10.0 GiB", "512 MiB", "-" for unknown."""
    if n_bytes is None:
        return "-"
    for unit, factor in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n_bytes) >= factor:
            value = n_bytes / factor
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n_bytes} B"


def parse_percent(text: str) -> float:
    """Parse "85" or "85%" into a percentage in [0, 100] (never a fraction: "0.85" is 0.85%)."""
    raw = text.strip().removesuffix("%")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"not a percentage: {text!r} (examples: 85, 85%)") from None
    if not 0 <= value <= 100:
        raise ValueError(f"percentage out of range 0-100: {text!r}")
    return value
