"""The simulated GPUs' channel: what jobs leave there, read safely."""

from __future__ import annotations

import os
from pathlib import Path

from gpugate.gpu.sim import read_channel


def test_the_sim_channel_neither_follows_links_nor_blocks_on_fifos(tmp_path: Path) -> None:
    """The channel is world-writable under a root daemon: what a user leaves there must
    not make the daemon read through a link or hang on a FIFO."""
    secret = tmp_path / "secret.json"
    secret.write_text('{"pid": 0, "gpu": "0", "mem_bytes": 1, "util_pct": 1}')
    channel = tmp_path / "sim"
    channel.mkdir()
    (channel / "link.json").symlink_to(secret)
    os.mkfifo(channel / "fifo.json")
    assert read_channel(channel) == []
