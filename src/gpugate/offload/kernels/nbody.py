"""One step of a direct-summation gravitational n-body simulation.

Bodies have positions ``pos`` and velocities ``vel`` (both ``(n, 3)``) and masses ``mass``
(``(n,)``), all of one float dtype (float32 or float64). With G = 1, body ``i`` accelerates
by

    a_i = sum_j m_j (r_j - r_i) / (|r_j - r_i|**2 + softening**2) ** 1.5

(the softening keeps close encounters finite and makes ``j == i`` contribute exactly 0),
and a step of ``dt`` is a kick then a drift: ``v' = v + a*dt``, ``x' = x + v'*dt``. The
inputs are left unchanged; the step returns new ``(pos, vel)`` arrays of the input dtype.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, prange

FloatArray = npt.NDArray[np.floating[Any]]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# NumPy works on a chunk of rows of the n x n interaction at a time so that its
# temporaries (about this many (rows, n) arrays at once) stay under _CHUNK_BYTES in all.
_CHUNK_BYTES = 64 * 2**20
_TEMPORARIES_PER_CHUNK = 8
_THREADS_PER_BLOCK = 256

# One CUDA thread per body, summing the pull of every body in the same order as the loops
# of ``_accelerations_loops``. ``real_t`` and ``real_sqrt`` are defined per dtype.
_NBODY_CUDA_SOURCE = r"""
extern "C" __global__
void nbody_accelerations(const real_t* pos, const real_t* mass, const real_t soft2,
                         const int n, real_t* acc)
{
    const int i = blockDim.x * blockIdx.x + threadIdx.x;
    if (i >= n) {
        return;
    }
    const real_t xi = pos[3 * i], yi = pos[3 * i + 1], zi = pos[3 * i + 2];
    real_t ax = 0, ay = 0, az = 0;
    for (int j = 0; j < n; ++j) {
        const real_t dx = pos[3 * j] - xi;
        const real_t dy = pos[3 * j + 1] - yi;
        const real_t dz = pos[3 * j + 2] - zi;
        const real_t dist2 = dx * dx + dy * dy + dz * dz + soft2;
        const real_t scale = mass[j] / (dist2 * real_sqrt(dist2));
        ax += scale * dx;
        ay += scale * dy;
        az += scale * dz;
    }
    acc[3 * i] = ax;
    acc[3 * i + 1] = ay;
    acc[3 * i + 2] = az;
}
"""
_CUDA_TYPES = {
    np.dtype(np.float32): "typedef float real_t;\n#define real_sqrt sqrtf\n",
    np.dtype(np.float64): "typedef double real_t;\n#define real_sqrt sqrt\n",
}
# The compiled cupy.RawKernel per dtype: built at the first step of that dtype, then reused.
_cuda_kernels: dict[np.dtype[Any], Any] = {}


def nbody_step_numpy(
    pos: FloatArray, vel: FloatArray, mass: FloatArray, dt: float = 0.01, softening: float = 0.1
) -> tuple[FloatArray, FloatArray]:
    """One kick-drift step with NumPy, a chunk of rows of the interaction at a time."""
    _check_bodies(pos, vel, mass, dt, softening)
    soft2 = pos.dtype.type(softening) ** 2
    columns = np.ascontiguousarray(pos.T)  # (3, n): each coordinate contiguous
    acc = np.empty_like(pos)
    rows = _chunk_rows(len(pos), pos.itemsize)
    for first in range(0, len(pos), rows):
        targets = columns[:, first : first + rows]
        acc[first : first + rows] = _chunk_accelerations(targets, columns, mass, soft2)
    return _kick_drift(pos, vel, acc, dt)


def nbody_step_numba(
    pos: FloatArray, vel: FloatArray, mass: FloatArray, dt: float = 0.01, softening: float = 0.1
) -> tuple[FloatArray, FloatArray]:
    """One kick-drift step with the accelerations summed in parallel loops over bodies."""
    _check_bodies(pos, vel, mass, dt, softening)
    soft2 = pos.dtype.type(softening) ** 2
    acc = np.empty_like(pos, order="C")
    _accelerations_loops(np.ascontiguousarray(pos), np.ascontiguousarray(mass), soft2, acc)
    return _kick_drift(pos, vel, acc, dt)


def nbody_step_cupy(
    pos: Any, vel: Any, mass: Any, dt: float = 0.01, softening: float = 0.1
) -> tuple[Any, Any]:
    """One kick-drift step on the GPU with a CUDA kernel, one thread per body; takes and
    returns CuPy arrays."""
    cupy = importlib.import_module("cupy")  # optional extra: imported only when used
    _check_bodies(pos, vel, mass, dt, softening)
    n = len(pos)
    acc = cupy.empty((n, 3), dtype=pos.dtype)
    blocks = max(1, math.ceil(n / _THREADS_PER_BLOCK))
    soft2 = pos.dtype.type(softening) ** 2  # a NumPy scalar: passed as float or double
    # The kernel reads plain row-major buffers; n as int32 to match its ``int n``.
    args = (cupy.ascontiguousarray(pos), cupy.ascontiguousarray(mass), soft2, np.int32(n), acc)
    _cuda_kernel(cupy, pos.dtype)((blocks,), (_THREADS_PER_BLOCK,), args)
    new_vel = vel + acc * dt
    return pos + new_vel * dt, new_vel


def nbody_work(
    pos: FloatArray, vel: FloatArray, mass: FloatArray, dt: float = 0.01, softening: float = 0.1
) -> float:
    """Pairwise interactions of one step: ``n*n``."""
    _check_bodies(pos, vel, mass, dt, softening)
    return float(len(pos)) ** 2


def nbody_inputs(
    n: int, dtype: npt.DTypeLike = np.float32, seed: int = 0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Seeded ``(pos, vel, mass)`` of ``n`` bodies: a Gaussian cloud of unit radius, slow
    random velocities, and masses in [0.5, 1.5) / n (about unit total mass at any n)."""
    rng = np.random.default_rng(seed)
    pos = rng.standard_normal((n, 3)).astype(dtype)
    vel = (0.1 * rng.standard_normal((n, 3))).astype(dtype)
    mass = (rng.uniform(0.5, 1.5, n) / max(n, 1)).astype(dtype)
    return pos, vel, mass


def _check_bodies(
    pos: FloatArray, vel: FloatArray, mass: FloatArray, dt: float, softening: float
) -> None:
    """Raise ValueError unless the arrays describe the same n bodies in one float dtype and
    ``dt`` and ``softening`` are usable."""
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must have shape (n, 3), got {pos.shape}")
    if vel.shape != pos.shape or mass.shape != pos.shape[:1]:
        raise ValueError(
            f"vel must have the shape of pos {pos.shape} and mass ({pos.shape[0]},), "
            f"got {vel.shape} and {mass.shape}"
        )
    if pos.dtype not in _FLOAT_DTYPES or not pos.dtype == vel.dtype == mass.dtype:
        raise ValueError(
            "pos, vel and mass must all be float32 or all float64, "
            f"got {pos.dtype}, {vel.dtype} and {mass.dtype}"
        )
    if not (math.isfinite(softening) and softening > 0):
        raise ValueError(f"softening must be a positive length, got {softening}")
    if not math.isfinite(dt):
        raise ValueError(f"dt must be a finite time, got {dt}")


def _chunk_rows(n: int, itemsize: int) -> int:
    """Rows of the n x n interaction per chunk within the temporaries' byte budget."""
    return max(1, _CHUNK_BYTES // (_TEMPORARIES_PER_CHUNK * max(n, 1) * itemsize))


def _chunk_accelerations(
    targets: FloatArray, columns: FloatArray, mass: FloatArray, soft2: np.floating[Any]
) -> FloatArray:
    """Accelerations ``(c, 3)`` of the ``c`` bodies whose coordinates are ``targets``
    ``(3, c)``, pulled by every body of ``columns`` ``(3, n)``."""
    dx = columns[0][None, :] - targets[0][:, None]  # (c, n): r_j - r_i along x
    dy = columns[1][None, :] - targets[1][:, None]
    dz = columns[2][None, :] - targets[2][:, None]
    dist2 = dx * dx + dy * dy + dz * dz + soft2
    scale = mass / (dist2 * np.sqrt(dist2))
    return np.stack(
        [(scale * dx).sum(axis=1), (scale * dy).sum(axis=1), (scale * dz).sum(axis=1)], axis=1
    )


def _kick_drift(
    pos: FloatArray, vel: FloatArray, acc: FloatArray, dt: float
) -> tuple[FloatArray, FloatArray]:
    """New ``(pos, vel)`` after a kick by ``acc`` and a drift at the kicked velocity."""
    new_vel = vel + acc * dt
    return pos + new_vel * dt, new_vel


@njit(parallel=True, cache=True, fastmath=False)
def _accelerations_loops(
    pos: FloatArray, mass: FloatArray, soft2: np.floating[Any], acc: FloatArray
) -> None:
    """``acc[i] = a_i`` for every body, parallel over ``i``, with the sums kept in the
    dtype of ``pos`` (a zero of that dtype starts them; a literal 0.0 would be float64)."""
    n = pos.shape[0]
    zero = pos.dtype.type(0)
    for i in prange(n):
        xi, yi, zi = pos[i, 0], pos[i, 1], pos[i, 2]
        ax, ay, az = zero, zero, zero
        for j in range(n):
            dx = pos[j, 0] - xi
            dy = pos[j, 1] - yi
            dz = pos[j, 2] - zi
            dist2 = dx * dx + dy * dy + dz * dz + soft2
            scale = mass[j] / (dist2 * np.sqrt(dist2))
            ax += scale * dx
            ay += scale * dy
            az += scale * dz
        acc[i, 0], acc[i, 1], acc[i, 2] = ax, ay, az


def _cuda_kernel(cupy: Any, dtype: np.dtype[Any]) -> Any:
    """The ``nbody_accelerations`` RawKernel for ``dtype``, compiled on first use."""
    if dtype not in _cuda_kernels:
        source = _CUDA_TYPES[dtype] + _NBODY_CUDA_SOURCE
        _cuda_kernels[dtype] = cupy.RawKernel(source, "nbody_accelerations")
    return _cuda_kernels[dtype]
