"""Persistence: one Store protocol, a SQLite backend for the daemon, a memory one for tests."""

from gpugate.store.base import Store, UnknownJob

__all__ = ["Store", "UnknownJob"]
