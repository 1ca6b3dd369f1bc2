"""Out-of-memory evidence and the raised expectation of the next run."""

from __future__ import annotations

import pytest

from gpugate.model import Expectation, ExpectationSource
from gpugate.oom import oom_evidence, raised_expectation
from gpugate.units import GiB

DECLARED = ExpectationSource.DECLARED


@pytest.mark.parametrize(
    "line",
    [
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; ...)",
        "RuntimeError: CUDA error: out of memory",
        "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`",
        "jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory allocating",
    ],
)
def test_framework_messages_are_evidence_and_quoted(line: str) -> None:
    tail = "epoch 3\n" + line + "\n"
    assert oom_evidence(tail, None, 24 * GiB) == line


def test_other_failures_are_not_oom() -> None:
    assert oom_evidence("ValueError: bad input\n", 4 * GiB, 24 * GiB) is None
    assert oom_evidence("", None, None) is None


def test_a_peak_at_the_gpus_capacity_is_evidence_even_without_a_message() -> None:
    assert oom_evidence("Killed\n", int(23 * GiB), 24 * GiB) == (
        "its peak reached 96% of the GPU's memory"
    )
    assert oom_evidence("Killed\n", int(22 * GiB), 24 * GiB) is None  # 92%: not enough


def test_the_next_run_expects_twice_as_much_or_a_quarter_over_its_peak() -> None:
    cap = int(21.6 * GiB)
    twice = raised_expectation(Expectation(4 * GiB, 30.0, DECLARED), None, cap)
    assert twice == Expectation(8 * GiB, 30.0, ExpectationSource.OOM_RETRY)
    over_peak = raised_expectation(Expectation(4 * GiB, 30.0, DECLARED), 12 * GiB, cap)
    assert over_peak is not None and over_peak.mem_bytes == 15 * GiB
    capped = raised_expectation(Expectation(16 * GiB, 30.0, DECLARED), None, cap)
    assert capped is not None and capped.mem_bytes == cap


def test_at_the_cap_it_asks_for_a_whole_gpu_and_after_that_there_is_no_more() -> None:
    cap = int(21.6 * GiB)
    whole = raised_expectation(Expectation(cap, 30.0, DECLARED, run_s=60.0), None, cap)
    assert whole == Expectation(None, 100.0, ExpectationSource.OOM_RETRY, run_s=60.0)
    assert raised_expectation(whole, None, cap) is None
