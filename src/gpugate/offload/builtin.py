"""The built-in tasks: matrix multiply, Gaussian blur, Sobel edges, an n-body step.

Each has a NumPy variant (``cpu:numpy``, the honest NumPy/BLAS baseline), an
OpenMP-style parallel-loop variant (``cpu:numba``) and a CUDA variant (``gpu``, CuPy),
checked to agree numerically (tests/unit/test_offload_kernels.py). ``CALIBRATION``
gives, per task, the sizes ``gpugate offload calibrate`` measures and how to make
inputs of a size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpugate.offload.kernels import filters, nbody
from gpugate.offload.kernels import matmul as mm
from gpugate.offload.task import OffloadTask, task


# Work functions run on every decision, before any variant: they only read shapes (the
# kernels' own *_work functions also validate, which costs microseconds).
def _matmul_flops(a: Any, b: Any) -> float:
    return 2.0 * float(a.shape[0] * a.shape[1] * b.shape[1])


def _blur_taps(image: Any, sigma: float = 2.0) -> float:
    return float(image.size) * 2.0 * (2 * filters.gaussian_radius(sigma) + 1)


def _pixels(image: Any) -> float:
    return float(image.size)


def _pairs(pos: Any, *_: Any, **__: Any) -> float:
    return float(len(pos)) ** 2


def _matmul_out_bytes(a: Any, b: Any) -> int:
    return int(a.shape[0] * b.shape[1] * a.itemsize)


def _nbody_out_bytes(pos: Any, vel: Any, *_: Any, **__: Any) -> int:
    return int(pos.nbytes + vel.nbytes)


def _image_bytes(image: Any, *_: Any, **__: Any) -> int:
    return int(image.nbytes)


matmul = task(
    mm.matmul_numpy,
    kind="matmul",
    work=_matmul_flops,
    out_bytes=_matmul_out_bytes,
    variant="cpu:numpy",
)
matmul.cpu("numba")(mm.matmul_numba)
matmul.gpu(mm.matmul_cupy)

gaussian_blur = task(
    filters.gaussian_blur_numpy,
    kind="gaussian_blur",
    work=_blur_taps,
    out_bytes=_image_bytes,
    variant="cpu:numpy",
)
gaussian_blur.cpu("numba")(filters.gaussian_blur_numba)
gaussian_blur.gpu(filters.gaussian_blur_cupy)

sobel = task(
    filters.sobel_numpy,
    kind="sobel",
    work=_pixels,
    out_bytes=_image_bytes,
    variant="cpu:numpy",
)
sobel.cpu("numba")(filters.sobel_numba)
sobel.gpu(filters.sobel_cupy)

nbody_step = task(
    nbody.nbody_step_numpy,
    kind="nbody",
    work=_pairs,
    out_bytes=_nbody_out_bytes,
    variant="cpu:numpy",
)
nbody_step.cpu("numba")(nbody.nbody_step_numba)
nbody_step.gpu(nbody.nbody_step_cupy)

TASKS: dict[str, OffloadTask] = {t.kind: t for t in (matmul, gaussian_blur, sobel, nbody_step)}


@dataclass(frozen=True)
class Sweep:
    """Sizes to measure a task at, and how to make its inputs at one size.

    ``size`` is one number: the matrix side, the image height (16:9 images), the bodies."""

    task: OffloadTask
    sizes: Sequence[int]
    quick_sizes: Sequence[int]
    inputs: Callable[[int, Any], tuple[Any, ...]]
    unit: str

    def describe(self, size: int) -> str:
        return f"{self.task.kind} {self.unit}={size}"


def _image(height: int, dtype: Any) -> tuple[Any, ...]:
    return (filters.image_input(height, (height * 16) // 9, dtype=dtype),)


CALIBRATION: dict[str, Sweep] = {
    "matmul": Sweep(
        matmul,
        (24, 48, 96, 192, 384, 768),
        (16, 64, 128),
        lambda n, dt: mm.matmul_inputs(n, dt),
        "n",
    ),
    "gaussian_blur": Sweep(
        gaussian_blur, (36, 90, 240, 540, 1080, 2160), (36, 90, 240), _image, "height"
    ),
    "sobel": Sweep(sobel, (36, 90, 240, 540, 1080, 2160), (36, 90, 240), _image, "height"),
    "nbody": Sweep(
        nbody_step,
        (64, 192, 512, 1536, 4096),
        (32, 96, 256),
        lambda n, dt: nbody.nbody_inputs(n, dt),
        "bodies",
    ),
}
DTYPES = {"float32": np.float32, "float64": np.float64}
