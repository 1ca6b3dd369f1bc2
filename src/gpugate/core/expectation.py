"""What a job is expected to use, from what it declared or what was remembered of it."""

from __future__ import annotations

from collections.abc import Callable

from gpugate.model import WHOLE_GPU, Expectation, ExpectationSource, JobSpec


def _nothing_remembered() -> Expectation | None:
    return None


def expected_use(
    spec: JobSpec, recall: Callable[[], Expectation | None] = _nothing_remembered
) -> Expectation:
    """Declared, else what ``recall`` remembers (the last successful run's observed peak),
    else the whole GPU. ``recall`` is only called when nothing was declared."""
    if spec.mem_bytes is not None or spec.util_pct is not None:
        return Expectation(spec.mem_bytes, spec.util_pct or 0.0, ExpectationSource.DECLARED)
    if spec.gpus == 0:
        return Expectation(0, 0.0, ExpectationSource.DECLARED)
    return recall() or WHOLE_GPU
