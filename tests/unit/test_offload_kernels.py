"""The offload runtime's compute kernels: NumPy against plain references written here,
Numba against NumPy, and (with a GPU) CuPy against NumPy."""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from gpugate.offload.kernels import filters, matmul, nbody

FLOATS = [np.float32, np.float64]
# Relative error allowed per dtype; absolute error is this times the scale of the values.
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def assert_close(actual: Any, expected: Any, scale: float = 1.0) -> None:
    """Same shape and dtype, and equal to rounding for values of about ``scale``."""
    assert actual.dtype == expected.dtype
    tolerance = TOLERANCE[expected.dtype]
    np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance * scale)


def mirror(index: int, size: int) -> int:
    """SciPy's "reflect" border by hand: bounce off the edges until inside."""
    while not 0 <= index < size:
        index = -index - 1 if index < 0 else 2 * size - 1 - index
    return index


# --- matmul -----------------------------------------------------------------------------


def triple_loop_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m, k = a.shape
    n = b.shape[1]
    out = np.zeros((m, n))
    for i in range(m):
        for j in range(n):
            out[i, j] = sum(float(a[i, p]) * float(b[p, j]) for p in range(k))
    return out


@pytest.mark.parametrize("dtype", FLOATS)
def test_numpy_matmul_is_the_textbook_product(dtype: type) -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 1, (3, 5)).astype(dtype)
    b = rng.uniform(-1, 1, (5, 2)).astype(dtype)

    product = matmul.matmul_numpy(a, b)

    assert_close(product, triple_loop_matmul(a, b).astype(dtype), scale=5)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    ("m", "k", "n"), [(1, 1, 1), (3, 5, 2), (37, 50, 29), (64, 64, 64), (9, 0, 4)]
)
def test_numba_matmul_agrees_with_numpy(dtype: type, m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(m * k * n)
    a = rng.uniform(-1, 1, (m, k)).astype(dtype)
    b = rng.uniform(-1, 1, (k, n)).astype(dtype)

    assert_close(matmul.matmul_numba(a, b), matmul.matmul_numpy(a, b), scale=max(k, 1))


def test_numba_matmul_reads_transposed_views() -> None:
    a, b = matmul.matmul_inputs(20, np.float64)
    assert_close(matmul.matmul_numba(a.T, b[:, ::2]), a.T @ b[:, ::2], scale=20)


def test_matmul_work_counts_a_multiply_and_an_add_per_term() -> None:
    a, b = np.zeros((3, 5)), np.zeros((5, 2))
    assert matmul.matmul_work(a, b) == 2 * 3 * 5 * 2


def test_matmul_inputs_are_seeded_square_matrices_in_the_unit_range() -> None:
    a, b = matmul.matmul_inputs(16, np.float64, seed=3)
    again, _ = matmul.matmul_inputs(16, np.float64, seed=3)

    assert a.shape == b.shape == (16, 16)
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, again)
    assert min(a.min(), b.min()) >= -1 and max(a.max(), b.max()) < 1


# --- Gaussian blur ----------------------------------------------------------------------


def direct_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """The 2-D convolution with the outer product of the 1-D Gaussian, in float64."""
    radius = int(3 * sigma + 0.5)
    weights = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-radius, radius + 1)]
    weights = [w / sum(weights) for w in weights]
    height, width = image.shape
    out = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            out[y, x] = sum(
                weights[dy + radius]
                * weights[dx + radius]
                * float(image[mirror(y + dy, height), mirror(x + dx, width)])
                for dy in range(-radius, radius + 1)
                for dx in range(-radius, radius + 1)
            )
    return out


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    ("height", "width", "sigma"), [(1, 1, 1.0), (5, 7, 1.0), (2, 3, 2.0), (6, 4, 0.7)]
)
def test_numpy_blur_is_the_direct_2d_convolution(
    dtype: type, height: int, width: int, sigma: float
) -> None:
    image = filters.image_input(height, width, dtype, seed=height)

    blurred = filters.gaussian_blur_numpy(image, sigma)

    assert_close(blurred, direct_blur(image, sigma).astype(dtype))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    ("height", "width", "sigma"),
    [(1, 1, 2.0), (2, 3, 2.0), (7, 13, 1.5), (64, 48, 2.0), (40, 90, 4.3)],
)
def test_numba_blur_agrees_with_numpy(dtype: type, height: int, width: int, sigma: float) -> None:
    image = filters.image_input(height, width, dtype, seed=width)

    blurred = filters.gaussian_blur_numba(image, sigma)

    assert_close(blurred, filters.gaussian_blur_numpy(image, sigma))


def test_gaussian_weights_are_a_normalized_symmetric_bell() -> None:
    weights = filters.gaussian_weights(2.0, np.float32)

    assert weights.dtype == np.float32
    assert len(weights) == 2 * 6 + 1  # radius int(3 * 2.0 + 0.5)
    assert math.isclose(float(weights.sum()), 1.0, rel_tol=1e-6)
    np.testing.assert_array_equal(weights, weights[::-1])
    assert weights.argmax() == 6 and np.all(np.diff(weights[:7]) > 0)


@pytest.mark.parametrize(("size", "radius"), [(1, 3), (2, 6), (3, 1), (5, 12), (10, 2)])
def test_reflect_indices_match_numpy_symmetric_padding(size: int, radius: int) -> None:
    expected = np.pad(np.arange(size), radius, mode="symmetric")
    np.testing.assert_array_equal(filters.reflect_indices(size, radius), expected)
    assert list(expected) == [mirror(i, size) for i in range(-radius, size + radius)]


def test_blur_work_counts_both_passes() -> None:
    assert filters.gaussian_blur_work(np.zeros((4, 6)), sigma=2.0) == 4 * 6 * 2 * 13


# --- Sobel ------------------------------------------------------------------------------


def per_pixel_sobel(image: np.ndarray) -> np.ndarray:
    """hypot(gx, gy) with SciPy's stencils: difference along the axis, [1, 2, 1] across."""
    height, width = image.shape

    def at(y: int, x: int) -> float:
        return float(image[mirror(y, height), mirror(x, width)])

    out = np.zeros((height, width))
    for y in range(height):
        for x in range(width):
            gx = sum(
                s * (at(y + d, x + 1) - at(y + d, x - 1)) for d, s in ((-1, 1), (0, 2), (1, 1))
            )
            gy = sum(
                s * (at(y + 1, x + d) - at(y - 1, x + d)) for d, s in ((-1, 1), (0, 2), (1, 1))
            )
            out[y, x] = math.hypot(gx, gy)
    return out


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 3), (6, 5)])
def test_numpy_sobel_is_the_per_pixel_formula(dtype: type, height: int, width: int) -> None:
    image = filters.image_input(height, width, dtype, seed=width)

    edges = filters.sobel_numpy(image)

    assert_close(edges, per_pixel_sobel(image).astype(dtype), scale=8)


def test_sobel_sees_a_vertical_step_as_a_vertical_edge() -> None:
    image = np.zeros((4, 6))
    image[:, 3:] = 1.0

    edges = filters.sobel_numpy(image)

    # |gx| = (1 + 2 + 1) * 1 on both sides of the step, nothing elsewhere.
    np.testing.assert_array_equal(edges[:, 2:4], 4.0)
    np.testing.assert_array_equal(edges[:, [0, 1, 4, 5]], 0.0)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(("height", "width"), [(1, 1), (2, 3), (7, 13), (64, 48)])
def test_numba_sobel_agrees_with_numpy(dtype: type, height: int, width: int) -> None:
    image = filters.image_input(height, width, dtype, seed=height)

    assert_close(filters.sobel_numba(image), filters.sobel_numpy(image), scale=8)


def test_sobel_work_counts_pixels() -> None:
    assert filters.sobel_work(np.zeros((4, 6))) == 24


def test_image_input_is_a_seeded_image_in_the_unit_range() -> None:
    image = filters.image_input(30, 40, np.float64, seed=2)

    assert image.shape == (30, 40) and image.dtype == np.float64
    assert image.min() >= 0 and image.max() <= 1
    np.testing.assert_array_equal(image, filters.image_input(30, 40, np.float64, seed=2))
    assert filters.sobel_numpy(image).max() > 0.2  # the rectangles give it edges


@pytest.mark.parametrize("dtype", FLOATS)
def test_filters_match_scipy_when_it_is_installed(dtype: type) -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    image = filters.image_input(23, 31, dtype, seed=5)
    wide = image.astype(np.float64)

    blurred = ndimage.gaussian_filter(wide, 2.0, mode="reflect", truncate=3.0)
    gx = ndimage.sobel(wide, axis=1, mode="reflect")
    gy = ndimage.sobel(wide, axis=0, mode="reflect")

    assert_close(filters.gaussian_blur_numpy(image, 2.0), blurred.astype(dtype))
    assert_close(filters.sobel_numpy(image), np.hypot(gx, gy).astype(dtype), scale=8)


# --- n-body -----------------------------------------------------------------------------


def double_loop_step(
    pos: np.ndarray, vel: np.ndarray, mass: np.ndarray, dt: float, softening: float
) -> tuple[np.ndarray, np.ndarray]:
    n = len(pos)
    new_vel = np.array(vel, dtype=np.float64)
    for i in range(n):
        acc = np.zeros(3)
        for j in range(n):
            offset = pos[j].astype(np.float64) - pos[i]
            acc += mass[j] * offset / (offset @ offset + softening**2) ** 1.5
        new_vel[i] += acc * dt
    return pos + new_vel * dt, new_vel


NBODY_STEPS = [nbody.nbody_step_numpy, nbody.nbody_step_numba]


@pytest.mark.parametrize("dtype", FLOATS)
def test_numpy_nbody_is_the_double_loop_in_any_chunking(
    dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    pos, vel, mass = nbody.nbody_inputs(5, dtype, seed=1)
    expected_pos, expected_vel = double_loop_step(pos, vel, mass, dt=0.05, softening=0.2)
    monkeypatch.setattr(nbody, "_chunk_rows", lambda n, itemsize: 2)  # chunks of 2, 2, 1

    new_pos, new_vel = nbody.nbody_step_numpy(pos, vel, mass, dt=0.05, softening=0.2)

    assert_close(new_vel, expected_vel.astype(dtype))
    assert_close(new_pos, expected_pos.astype(dtype))


def test_numpy_nbody_chunks_keep_each_temporary_small() -> None:
    for n, itemsize in [(8192, 4), (100_000, 8), (10, 8), (10**8, 8)]:
        rows = nbody._chunk_rows(n, itemsize)
        assert rows >= 1
        assert rows == 1 or rows * n * itemsize * nbody._TEMPORARIES_PER_CHUNK <= 64 * 2**20


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [1, 2, 5, 64, 300])
def test_numba_nbody_agrees_with_numpy(dtype: type, n: int) -> None:
    pos, vel, mass = nbody.nbody_inputs(n, dtype, seed=n)

    numba_pos, numba_vel = nbody.nbody_step_numba(pos, vel, mass)
    numpy_pos, numpy_vel = nbody.nbody_step_numpy(pos, vel, mass)

    # float32 sums in a different order differ by a few units in the last place of |a|.
    assert_close(numba_vel, numpy_vel, scale=10)
    assert_close(numba_pos, numpy_pos, scale=10)


@pytest.mark.parametrize("step", NBODY_STEPS)
def test_nbody_conserves_momentum_and_leaves_its_inputs_alone(
    step: Callable[..., tuple[np.ndarray, np.ndarray]],
) -> None:
    pos, vel, mass = nbody.nbody_inputs(200, np.float64, seed=7)
    before = pos.copy(), vel.copy(), mass.copy()

    new_pos, new_vel = step(pos, vel, mass, dt=0.1)

    momentum = (mass[:, None] * vel).sum(axis=0)
    np.testing.assert_allclose((mass[:, None] * new_vel).sum(axis=0), momentum, atol=1e-14)
    assert np.abs(new_vel - vel).max() > 1e-3  # the bodies did pull on each other
    for original, kept in zip(before, (pos, vel, mass), strict=True):
        np.testing.assert_array_equal(original, kept)
    assert not np.shares_memory(new_pos, pos) and not np.shares_memory(new_vel, vel)


def test_nbody_work_counts_pairs() -> None:
    pos, vel, mass = nbody.nbody_inputs(5)
    assert nbody.nbody_work(pos, vel, mass) == 25


# --- bad input --------------------------------------------------------------------------

F32 = np.zeros((4, 3), np.float32)
BAD_CALLS: list[tuple[str, Callable[..., Any], tuple[Any, ...]]] = [
    ("1-D matrix", matmul.matmul_numpy, (np.zeros(3), np.zeros((3, 2)))),
    ("shape mismatch", matmul.matmul_numba, (np.zeros((2, 3)), np.zeros((2, 3)))),
    ("integer matrices", matmul.matmul_numba, (np.zeros((2, 2), int), np.zeros((2, 2), int))),
    ("mixed dtypes", matmul.matmul_numpy, (F32, np.zeros((3, 2)))),
    ("1-D image", filters.gaussian_blur_numpy, (np.zeros(5),)),
    ("3-D image", filters.sobel_numba, (np.zeros((2, 2, 3)),)),
    ("integer image", filters.gaussian_blur_numba, (np.zeros((4, 4), np.uint8),)),
    ("float16 image", filters.sobel_numpy, (np.zeros((4, 4), np.float16),)),
    ("empty image", filters.sobel_numpy, (np.zeros((0, 4)),)),
    ("zero sigma", filters.gaussian_blur_numpy, (F32, 0.0)),
    ("positions not 3-D", nbody.nbody_step_numpy, (np.zeros((4, 2)), np.zeros((4, 2)), F32[:, 0])),
    ("velocity shape", nbody.nbody_step_numba, (F32, F32[:3], F32[:, 0])),
    ("mass shape", nbody.nbody_step_numpy, (F32, F32, F32)),
    (
        "integer bodies",
        nbody.nbody_step_numba,
        (F32.astype(int), F32.astype(int), np.zeros(4, int)),
    ),
    ("no softening", nbody.nbody_step_numpy, (F32, F32, F32[:, 0], 0.01, 0.0)),
]


@pytest.mark.parametrize(
    ("function", "args"), [call[1:] for call in BAD_CALLS], ids=[call[0] for call in BAD_CALLS]
)
def test_bad_input_is_a_value_error(function: Callable[..., Any], args: tuple[Any, ...]) -> None:
    with pytest.raises(ValueError, match=r"must|needs|match"):
        function(*args)


# --- GPU --------------------------------------------------------------------------------


def cupy_with_a_gpu() -> ModuleType:
    """CuPy, or skip: these tests need CuPy and at least one CUDA device."""
    cupy = pytest.importorskip("cupy", exc_type=ImportError)
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        devices = 0
    if devices == 0:
        pytest.skip("no CUDA device")
    return cupy


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
def test_cupy_matmul_agrees_with_numpy(dtype: type) -> None:
    cupy = cupy_with_a_gpu()
    a, b = matmul.matmul_inputs(200, dtype)

    product = matmul.matmul_cupy(cupy.asarray(a), cupy.asarray(b))

    assert isinstance(product, cupy.ndarray)
    assert_close(cupy.asnumpy(product), matmul.matmul_numpy(a, b), scale=200)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
def test_cupy_filters_agree_with_numpy(dtype: type) -> None:
    cupy = cupy_with_a_gpu()
    image = filters.image_input(257, 300, dtype)
    on_gpu = cupy.asarray(image)

    blurred = filters.gaussian_blur_cupy(on_gpu, 2.0)
    edges = filters.sobel_cupy(on_gpu)

    assert_close(cupy.asnumpy(blurred), filters.gaussian_blur_numpy(image, 2.0))
    assert_close(cupy.asnumpy(edges), filters.sobel_numpy(image), scale=8)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", FLOATS)
def test_cupy_nbody_agrees_with_numpy(dtype: type) -> None:
    cupy = cupy_with_a_gpu()
    pos, vel, mass = nbody.nbody_inputs(300, dtype)

    new_pos, new_vel = nbody.nbody_step_cupy(*(cupy.asarray(x) for x in (pos, vel, mass)))
    expected_pos, expected_vel = nbody.nbody_step_numpy(pos, vel, mass)

    assert_close(cupy.asnumpy(new_vel), expected_vel, scale=10)
    assert_close(cupy.asnumpy(new_pos), expected_pos, scale=10)
