"""Errors the command line shows as one line and an exit status."""

from __future__ import annotations

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as ``gpugate: error: ...``, exit status 1 (or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
