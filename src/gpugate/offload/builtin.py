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
from gpugate.offload.task import Impl, OffloadTask, task


# Work functions run on every decision, before any variant: they only read shapes (the
# kernels' own *_work functions also validate, which costs microseconds).
# A call with the wrong arguments fails here first, with the kernel's own clear error.
def _arrays(kind: str, *values: Any) -> None:
    for value in values:
        if not hasattr(value, "shape"):
            raise TypeError(f"{kind} takes NumPy or CuPy arrays, not {type(value).__name__}")


def _matmul_flops(a: Any, b: Any) -> float:
    _arrays("matmul", a, b)
    if a.ndim != 2 or b.ndim != 2:
        mm.matmul_work(np.asarray(a), np.asarray(b))  # raises the kernel's ValueError
    return 2.0 * float(a.shape[0] * a.shape[1] * b.shape[1])


def _blur_taps(image: Any, sigma: float = 2.0) -> float:
    _arrays("gaussian_blur", image)
    if image.ndim != 2:
        filters.gaussian_blur_work(np.asarray(image), sigma)
    return float(image.size) * 2.0 * (2 * filters.gaussian_radius(sigma) + 1)


def _pixels(image: Any) -> float:
    _arrays("sobel", image)
    if image.ndim != 2:
        filters.sobel_work(np.asarray(image))
    return float(image.size)


def _pairs(pos: Any, vel: Any, mass: Any, *rest: Any, **options: Any) -> float:
    _arrays("nbody", pos, vel, mass)
    if pos.ndim != 2:
        nbody.nbody_work(np.asarray(pos), np.asarray(vel), np.asarray(mass), *rest, **options)
    return float(len(pos)) ** 2


def _matmul_out_bytes(a: Any, b: Any) -> int:
    return int(a.shape[0] * b.shape[1] * a.itemsize)


def _nbody_out_bytes(pos: Any, vel: Any, *_: Any, **__: Any) -> int:
    return int(pos.nbytes + vel.nbytes)


def _image_bytes(image: Any, *_: Any, **__: Any) -> int:
    return int(image.nbytes)


def _builtin(
    kind: str, numpy: Impl, numba: Impl, cupy: Impl, work: Callable[..., float], out: Any
) -> OffloadTask:
    """A built-in task: its NumPy, Numba-loop and CuPy implementations of one kernel."""
    made = task(numpy, kind=kind, work=work, out_bytes=out, variant="cpu:numpy")
    made.cpu("numba")(numba)
    made.gpu(cupy)
    return made


matmul = _builtin(
    "matmul", mm.matmul_numpy, mm.matmul_numba, mm.matmul_cupy, _matmul_flops, _matmul_out_bytes
)
gaussian_blur = _builtin(
    "gaussian_blur",
    filters.gaussian_blur_numpy,
    filters.gaussian_blur_numba,
    filters.gaussian_blur_cupy,
    _blur_taps,
    _image_bytes,
)
sobel = _builtin(
    "sobel", filters.sobel_numpy, filters.sobel_numba, filters.sobel_cupy, _pixels, _image_bytes
)
nbody_step = _builtin(
    "nbody",
    nbody.nbody_step_numpy,
    nbody.nbody_step_numba,
    nbody.nbody_step_cupy,
    _pairs,
    _nbody_out_bytes,
)

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
    elements: Callable[[int], int]  # input elements at a size (to refuse what cannot fit)

    def input_bytes(self, size: int, itemsize: int) -> int:
        return self.elements(size) * itemsize

    def describe(self, size: int) -> str:
        return f"{self.task.kind} {self.unit}={size}"


def _image(height: int, dtype: Any) -> tuple[Any, ...]:
    return (filters.image_input(height, (height * 16) // 9, dtype=dtype),)


def _image_sweep(filter_task: OffloadTask) -> Sweep:
    """16:9 images from 64x36 to 4K (3840x2160)."""
    heights = (36, 90, 240, 540, 1080, 2160)
    return Sweep(filter_task, heights, heights[:3], _image, "height", lambda h: h * (h * 16 // 9))


CALIBRATION: dict[str, Sweep] = {
    "matmul": Sweep(
        matmul,
        (24, 48, 96, 192, 384, 768),
        (16, 64, 128),
        lambda n, dt: mm.matmul_inputs(n, dt),
        "n",
        lambda n: 2 * n * n,
    ),
    "gaussian_blur": _image_sweep(gaussian_blur),
    "sobel": _image_sweep(sobel),
    "nbody": Sweep(
        nbody_step,
        (64, 192, 512, 1536, 4096),
        (32, 96, 256),
        lambda n, dt: nbody.nbody_inputs(n, dt),
        "bodies",
        lambda n: 7 * n,
    ),
}
DTYPES = {"float32": np.float32, "float64": np.float64}
