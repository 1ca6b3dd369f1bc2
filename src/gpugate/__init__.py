"""gpugate: a scheduler for the GPUs of one machine.

Kept import-light on purpose: the CLI must start in well under 150 ms, so nothing heavy is
imported here. ``gpugate.Client`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from gpugate.client import Client

__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from gpugate.client import Client

        return Client
    raise AttributeError(f"module 'gpugate' has no attribute {name!r}")
