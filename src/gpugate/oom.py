"""Did a job die of GPU out-of-memory, and what should it expect next time?

Frameworks print a recognisable line when a GPU allocation fails; that line, not the exit
status (1, like any other error), is the evidence. The observed peak reaching the GPU's
capacity is the other: a job killed for memory by something that printed nothing.
"""

from __future__ import annotations

import re

from gpugate.model import Expectation, ExpectationSource

# What PyTorch/CUDA, cuBLAS, JAX/XLA and TensorFlow print when an allocation fails.
OOM_PATTERNS = re.compile(
    r"CUDA out of memory|CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED"
    r"|RESOURCE_EXHAUSTED|OutOfMemoryError|cudaErrorMemoryAllocation|hipErrorOutOfMemory"
)
PEAK_NEAR_TOTAL = 0.95  # a peak this close to the GPU's capacity counts as running out
GROWTH = 2.0  # the next run expects twice what the failed one was expected to use...
PEAK_MARGIN = 1.25  # ...or a quarter more than it was seen to use, whichever is larger


def oom_evidence(log_tail: str, peak_bytes: int | None, gpu_total_bytes: int | None) -> str | None:
    """Why this failed run looks like GPU out-of-memory (for ``show``), or None."""
    found = OOM_PATTERNS.search(log_tail)
    if found is not None:
        line = next(ln for ln in log_tail.splitlines() if found.group(0) in ln)
        return line.strip()[:200]
    if peak_bytes and gpu_total_bytes and peak_bytes >= PEAK_NEAR_TOTAL * gpu_total_bytes:
        return f"its peak reached {peak_bytes / gpu_total_bytes:.0%} of the GPU's memory"
    return None


def raised_expectation(
    expected: Expectation, peak_bytes: int | None, cap_bytes: int
) -> Expectation | None:
    """What the next run should reserve: twice the old expectation or 1.25x the seen peak,
    at most ``cap_bytes`` (the largest GPU's memory under its headroom). A job already
    expected to fill a GPU gets a whole GPU to itself; None when even that was tried."""
    if expected.mem_bytes is None:
        return None  # it had a whole GPU: more memory cannot be given
    if expected.mem_bytes >= cap_bytes:
        return Expectation(None, 100.0, ExpectationSource.OOM_RETRY, expected.run_s)
    wanted = max(expected.mem_bytes * GROWTH, (peak_bytes or 0) * PEAK_MARGIN)
    return Expectation(
        min(int(wanted), cap_bytes), expected.util_pct, ExpectationSource.OOM_RETRY, expected.run_s
    )
