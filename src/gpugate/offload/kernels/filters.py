"""Image filters on 2-D float images: separable Gaussian blur and Sobel edge magnitude.

Borders follow SciPy's ``mode="reflect"`` (half-sample symmetric, ``d c b a | a b c d |
d c b a``, the same as ``numpy.pad(mode="symmetric")``), folded as many times as needed, so
an image smaller than the filter's radius is still well defined. Each filter takes an
``(H, W)`` float32 or float64 image and returns one of the same shape and dtype.
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, prange

FloatArray = npt.NDArray[np.floating[Any]]
IndexArray = npt.NDArray[np.intp]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_TRUNCATE_SIGMAS = 3.0  # the Gaussian is cut at 3 sigma: 99.7% of its weight


def gaussian_weights(sigma: float, dtype: npt.DTypeLike = np.float64) -> FloatArray:
    """The ``2*radius + 1`` normalized weights of a 1-D Gaussian of ``sigma`` pixels,
    ``radius = int(3*sigma + 0.5)``, computed in float64 and then cast to ``dtype``."""
    radius = gaussian_radius(sigma)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    normalized: FloatArray = (weights / weights.sum()).astype(dtype)
    return normalized


def gaussian_radius(sigma: float) -> int:
    """Pixels on each side of the centre that the blur of ``sigma`` pixels reaches."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma}")
    return int(_TRUNCATE_SIGMAS * sigma + 0.5)


def reflect_indices(size: int, radius: int) -> IndexArray:
    """Source index of each position ``-radius .. size + radius - 1`` along an axis of
    ``size`` samples under SciPy's "reflect" border: the signal mirrored about its edges
    repeats with period ``2*size``, so fold into one period, then mirror the upper half."""
    positions = np.arange(-radius, size + radius) % (2 * size)
    return np.where(positions < size, positions, 2 * size - 1 - positions)


def gaussian_blur_numpy(image: FloatArray, sigma: float = 2.0) -> FloatArray:
    """Separable Gaussian blur: the weights along each row, then along each column."""
    _check_image(image)
    weights = gaussian_weights(sigma, image.dtype)
    rows_done = _correlate_axis(image, weights, axis=1)
    return _correlate_axis(rows_done, weights, axis=0)


def gaussian_blur_numba(image: FloatArray, sigma: float = 2.0) -> FloatArray:
    """The same blur with parallel loops over image rows."""
    _check_image(image)
    weights = gaussian_weights(sigma, image.dtype)
    radius = gaussian_radius(sigma)
    height, width = image.shape
    rows_done = np.zeros_like(image, order="C")
    _blur_rows(np.ascontiguousarray(image), weights, reflect_indices(width, radius), rows_done)
    out = np.zeros_like(image, order="C")
    _blur_columns(rows_done, weights, reflect_indices(height, radius), out)
    return out


def gaussian_blur_cupy(image: Any, sigma: float = 2.0) -> Any:
    """The same blur on the GPU with ``cupyx.scipy.ndimage.convolve1d``; takes and returns
    a CuPy array. The weights are symmetric, so convolution and correlation agree."""
    cupy = importlib.import_module("cupy")  # optional extra: imported only when used
    ndimage = importlib.import_module("cupyx.scipy.ndimage")
    _check_image(image)
    weights = cupy.asarray(gaussian_weights(sigma, image.dtype))  # 2*radius + 1 numbers
    rows_done = ndimage.convolve1d(image, weights, axis=1, mode="reflect")
    return ndimage.convolve1d(rows_done, weights, axis=0, mode="reflect")


def gaussian_blur_work(image: FloatArray, sigma: float = 2.0) -> float:
    """Multiply-adds of the blur: ``2*radius + 1`` per pixel in each of the two passes."""
    _check_image(image)
    height, width = image.shape
    return float(height * width * 2 * (2 * gaussian_radius(sigma) + 1))


def sobel_numpy(image: FloatArray) -> FloatArray:
    """Edge magnitude ``hypot(gx, gy)``, where ``gx`` and ``gy`` are SciPy's
    ``ndimage.sobel(image, axis=1)`` and ``axis=0``: the difference ``[-1, 0, 1]`` along
    the axis, then the smoothing ``[1, 2, 1]`` across it."""
    _check_image(image)
    height, width = image.shape
    padded = image[np.ix_(reflect_indices(height, 1), reflect_indices(width, 1))]
    along_x = padded[:, 2:] - padded[:, :-2]  # (H + 2, W)
    gx = along_x[:-2] + 2 * along_x[1:-1] + along_x[2:]
    along_y = padded[2:, :] - padded[:-2, :]  # (H, W + 2)
    gy = along_y[:, :-2] + 2 * along_y[:, 1:-1] + along_y[:, 2:]
    magnitude: FloatArray = np.hypot(gx, gy)
    return magnitude


def sobel_numba(image: FloatArray) -> FloatArray:
    """The same edge magnitude with parallel loops over image rows."""
    _check_image(image)
    height, width = image.shape
    out = np.zeros_like(image, order="C")
    _sobel_pixels(
        np.ascontiguousarray(image), reflect_indices(height, 1), reflect_indices(width, 1), out
    )
    return out


def sobel_cupy(image: Any) -> Any:
    """The same edge magnitude on the GPU with ``cupyx.scipy.ndimage.convolve1d``; takes and
    returns a CuPy array."""
    cupy = importlib.import_module("cupy")  # optional extra: imported only when used
    ndimage = importlib.import_module("cupyx.scipy.ndimage")
    _check_image(image)
    # Convolution flips its weights: [1, 0, -1] here is SciPy's correlation with [-1, 0, 1].
    difference = cupy.asarray([1, 0, -1], dtype=image.dtype)
    smoothing = cupy.asarray([1, 2, 1], dtype=image.dtype)
    gx = ndimage.convolve1d(image, difference, axis=1, mode="reflect")
    gx = ndimage.convolve1d(gx, smoothing, axis=0, mode="reflect")
    gy = ndimage.convolve1d(image, difference, axis=0, mode="reflect")
    gy = ndimage.convolve1d(gy, smoothing, axis=1, mode="reflect")
    return cupy.hypot(gx, gy)


def sobel_work(image: FloatArray) -> float:
    """Pixels of the image: each costs the same fixed stencil."""
    _check_image(image)
    height, width = image.shape
    return float(height * width)


def image_input(
    height: int, width: int, dtype: npt.DTypeLike = np.float32, seed: int = 0
) -> FloatArray:
    """A seeded synthetic image in [0, 1]: a diagonal gradient, a few flat rectangles (sharp
    edges for Sobel) and a little noise (texture for the blur)."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.0, 1.0, height)[:, None]
    columns = np.linspace(0.0, 1.0, width)[None, :]
    image = 0.3 * (rows + columns) / 2
    for _ in range(4):
        top, bottom = np.sort(rng.integers(0, height + 1, 2))
        left, right = np.sort(rng.integers(0, width + 1, 2))
        image[top:bottom, left:right] += rng.uniform(0.1, 0.4)
    image += rng.normal(0.0, 0.02, (height, width))
    return np.clip(image, 0.0, 1.0).astype(dtype)


def _check_image(image: FloatArray) -> None:
    """Raise ValueError unless ``image`` is a non-empty 2-D float32 or float64 array."""
    if image.ndim != 2:
        raise ValueError(f"the image must be 2-D (height, width), got {image.ndim}-D")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image must not be empty, got shape {image.shape}")
    if image.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"the image must be float32 or float64, got {image.dtype}")


def _correlate_axis(image: FloatArray, weights: FloatArray, axis: int) -> FloatArray:
    """``out[x] = sum_t weights[t] * image[x + t - radius]`` along ``axis``, reflected at the
    borders: one shifted view of the padded image per weight."""
    radius = (len(weights) - 1) // 2
    size = image.shape[axis]
    padded = np.take(image, reflect_indices(size, radius), axis=axis)
    window: list[slice] = [slice(None)] * image.ndim
    out = np.zeros_like(image)
    term = np.empty_like(image)  # one temporary for all the weights, not one each
    for t, weight in enumerate(weights):
        window[axis] = slice(t, t + size)
        np.multiply(padded[tuple(window)], weight, out=term)
        out += term
    return out


@njit(parallel=True, cache=True, fastmath=False)
def _blur_rows(
    image: FloatArray, weights: FloatArray, source_x: IndexArray, out: FloatArray
) -> None:
    """``out[y, x] = sum_t weights[t] * image[y, source_x[x + t]]``, parallel over rows.
    Accumulating in ``out`` (not in a local) keeps the sums in the image's dtype."""
    height, width = image.shape
    for y in prange(height):
        for t in range(weights.shape[0]):
            weight = weights[t]
            for x in range(width):
                out[y, x] += weight * image[y, source_x[x + t]]


@njit(parallel=True, cache=True, fastmath=False)
def _blur_columns(
    image: FloatArray, weights: FloatArray, source_y: IndexArray, out: FloatArray
) -> None:
    """``out[y, x] = sum_t weights[t] * image[source_y[y + t], x]``, parallel over rows; the
    inner loop runs along contiguous rows."""
    height, width = image.shape
    for y in prange(height):
        for t in range(weights.shape[0]):
            weight = weights[t]
            source_row = source_y[y + t]
            for x in range(width):
                out[y, x] += weight * image[source_row, x]


@njit(parallel=True, cache=True, fastmath=False)
def _sobel_pixels(
    image: FloatArray, source_y: IndexArray, source_x: IndexArray, out: FloatArray
) -> None:
    """The per-pixel form of ``sobel_numpy``, in the same order of operations. ``d + d``
    stands for ``2*d``: equal in value, and it keeps float32 sums in float32 where the
    integer 2 would promote them to float64."""
    height, width = image.shape
    for y in prange(height):
        above, row, below = source_y[y], source_y[y + 1], source_y[y + 2]
        for x in range(width):
            left, centre, right = source_x[x], source_x[x + 1], source_x[x + 2]
            dx_above = image[above, right] - image[above, left]
            dx_row = image[row, right] - image[row, left]
            dx_below = image[below, right] - image[below, left]
            gx = dx_above + (dx_row + dx_row) + dx_below
            dy_left = image[below, left] - image[above, left]
            dy_centre = image[below, centre] - image[above, centre]
            dy_right = image[below, right] - image[above, right]
            gy = dy_left + (dy_centre + dy_centre) + dy_right
            out[y, x] = np.hypot(gx, gy)
