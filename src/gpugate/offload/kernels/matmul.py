"""Dense matrix product ``(m, k) @ (k, n)``: NumPy (BLAS), parallel Numba loops, CuPy (cuBLAS).

All three take two 2-D arrays of the same float dtype (float32 or float64) and return the
product in that dtype. Work is counted in floating-point operations (``2*m*k*n``).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, prange

FloatArray = npt.NDArray[np.floating[Any]]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Rows per parallel task: a block of output rows stays in cache while each row of ``b``
# streams past it once per block rather than once per row.
_ROW_BLOCK = 8
# Inner-dimension slice per pass: ``_K_BLOCK`` rows of ``b`` (256 KiB of float64 at
# n=1024) are reused by every row of the block while they are still in L2.
_K_BLOCK = 32


def matmul_numpy(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a @ b`` with NumPy, i.e. the BLAS NumPy was built with."""
    _check_operands(a, b)
    product: FloatArray = np.matmul(a, b)
    return product


def matmul_numba(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a @ b`` with parallel loops, accumulating in the input dtype."""
    _check_operands(a, b)
    out = np.zeros((a.shape[0], b.shape[1]), dtype=a.dtype)
    _matmul_blocked(np.ascontiguousarray(a), np.ascontiguousarray(b), out)
    return out


def matmul_cupy(a: Any, b: Any) -> Any:
    """``a @ b`` on the GPU with cuBLAS; ``a`` and ``b`` are CuPy arrays, so is the result."""
    cupy = importlib.import_module("cupy")  # optional extra: imported only when used
    _check_operands(a, b)
    return cupy.matmul(a, b)


def matmul_work(a: FloatArray, b: FloatArray) -> float:
    """Floating-point operations of ``a @ b``: a multiply and an add per ``(i, p, j)``."""
    _check_operands(a, b)
    m, k = a.shape
    return float(2 * m * k * b.shape[1])


def matmul_inputs(
    n: int, dtype: npt.DTypeLike = np.float32, seed: int = 0
) -> tuple[FloatArray, FloatArray]:
    """Two seeded ``n x n`` matrices with values in [-1, 1)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.0, 1.0, (n, n)).astype(dtype)
    b = rng.uniform(-1.0, 1.0, (n, n)).astype(dtype)
    return a, b


def _check_operands(a: FloatArray, b: FloatArray) -> None:
    """Raise ValueError unless ``a @ b`` is a product of two float matrices of one dtype."""
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"matmul needs two 2-D matrices, got {a.ndim}-D and {b.ndim}-D")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul shapes do not match: {a.shape} @ {b.shape}")
    if a.dtype not in _FLOAT_DTYPES or a.dtype != b.dtype:
        raise ValueError(
            f"matmul needs two float32 or two float64 matrices, got {a.dtype} and {b.dtype}"
        )


@njit(parallel=True, cache=True, fastmath=False)
def _matmul_blocked(a: FloatArray, b: FloatArray, out: FloatArray) -> None:
    """``out += a @ b``, parallel over blocks of rows, i-k-j order within a block: the
    innermost loop runs along contiguous rows of ``b`` and ``out``, which the compiler
    vectorizes (i-j-k would stride down a column of ``b`` instead)."""
    m, k = a.shape
    n = b.shape[1]
    for block in prange((m + _ROW_BLOCK - 1) // _ROW_BLOCK):
        first_row = block * _ROW_BLOCK
        last_row = min(m, first_row + _ROW_BLOCK)
        for first_p in range(0, k, _K_BLOCK):
            last_p = min(k, first_p + _K_BLOCK)
            for i in range(first_row, last_row):
                for p in range(first_p, last_p):
                    a_ip = a[i, p]
                    for j in range(n):
                        out[i, j] += a_ip * b[p, j]
