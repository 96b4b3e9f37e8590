"""Speckle filters and equivalent-number-of-looks (ENL) estimates for linear intensity.

Speckle is multiplicative: an intensity pixel is ``I = R * v`` with the
reflectivity ``R`` and a unit-mean Gamma(L, 1/L) variate ``v`` whose variance is
``1/L`` (L = ENL). Every filter here relies on that model, so they accept linear
power only and refuse dB (where speckle is additive and its statistics differ).

Shared rules:

* Windows are square with odd ``size``; at the image border they are truncated.
* NaN (and +-inf) pixels are nodata: they are left out of every window
  statistic and stay NaN in the output.
* Window statistics (count, mean, population variance) come from cumulative
  sums along each axis, so the cost per pixel does not depend on the window
  size (see :func:`local_stats`).
* Inputs may be 2-D ``(y, x)`` or stacks ``(..., y, x)``; numpy arrays, xarray
  DataArrays (attrs/coords kept, dask-backed ones run chunk-wise with
  ``map_overlap``) or a sarlab Dataset (its ``backscatter`` is filtered).
  Numpy input holds a few dozen float64 copies of the image at once; chunk
  whole scenes with dask (e.g. 2048 x 2048) instead.

References: Lee 1980/1981 (local-statistics MMSE filter; refined edge-aligned
version, also Lee, Grunes & de Grandi 1999, IEEE TGRS 37(5)); Lopes, Nezry,
Touzi & Laur 1990 (Gamma MAP, Int. J. Remote Sens. 11(9)).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from sarlab.preprocess._checks import image_of, require_power, with_image
from sarlab.preprocess._refined import refined_lee_kernel

__all__ = [
    "boxcar",
    "enl_map",
    "estimate_enl",
    "estimate_enl_auto",
    "gamma_map",
    "lee",
    "local_stats",
    "refined_lee",
]

Kernel = Callable[[np.ndarray], np.ndarray]


def _check_size(size: int) -> int:
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be a positive odd integer, got {size!r}")
    return int(size)


def _check_looks(looks: float) -> float:
    if not np.isfinite(looks) or looks <= 0:
        raise ValueError(f"looks (ENL) must be a positive number, got {looks!r}")
    return float(looks)


def _box_sum_1d(a: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Sum over ``[i - radius, i + radius]`` (clipped) along one axis via a cumulative sum."""
    n = a.shape[axis]
    shape = list(a.shape)
    shape[axis] = 1
    c = np.concatenate([np.zeros(shape), np.cumsum(a, axis=axis)], axis=axis)
    i = np.arange(n)
    upper = np.clip(i + radius + 1, 0, n)
    lower = np.clip(i - radius, 0, n)
    return np.take(c, upper, axis=axis) - np.take(c, lower, axis=axis)


def _box_sum(a: np.ndarray, radius: int) -> np.ndarray:
    """Sum over a ``(2r+1)^2`` window on the last two axes, O(1) per pixel (separable)."""
    return _box_sum_1d(_box_sum_1d(a, radius, -2), radius, -1)


def _prepare(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid mask, values shifted by their per-image mean (precision), and that shift."""
    x = np.asarray(x, dtype=np.float64)
    valid = np.isfinite(x)
    counts = valid.sum(axis=(-2, -1), keepdims=True)
    totals = np.where(valid, x, 0.0).sum(axis=(-2, -1), keepdims=True)
    shift = np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)
    return valid, np.where(valid, x - shift, 0.0), shift


def local_stats(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window count of valid pixels, mean and population variance; NaN-aware, O(1) per pixel.

    The mean is NaN where a window holds no valid pixel. Sums run on values
    shifted by the image mean, which keeps ``E[x^2] - E[x]^2`` accurate.
    """
    radius = _check_size(size) // 2
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"expected an array (..., y, x), got shape {x.shape}")
    valid, shifted, shift = _prepare(x)
    count = _box_sum(valid.astype(np.float64), radius)
    s1 = _box_sum(shifted, radius)
    s2 = _box_sum(shifted * shifted, radius)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = s1 / count
        var = np.maximum(s2 / count - m1 * m1, 0.0)
    return count, m1 + shift, var


def _lee_mmse(x: np.ndarray, mean: np.ndarray, var: np.ndarray, looks: float) -> np.ndarray:
    """Lee's MMSE estimate under multiplicative noise of variance 1/L."""
    cu2 = 1.0 / looks
    var_x = np.maximum((var - mean * mean * cu2) / (1.0 + cu2), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.where(var > 0, var_x / var, 0.0)
    return mean + b * (x - mean)


def _finish(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """NaN where the input was nodata, in the input's float precision."""
    dtype = np.result_type(np.asarray(x).dtype, np.float32)
    return np.where(np.isfinite(x), out, np.nan).astype(dtype)


def _boxcar_kernel(size: int) -> Kernel:
    def kernel(x: np.ndarray) -> np.ndarray:
        _, mean, _ = local_stats(x, size)
        return _finish(x, mean)

    return kernel


def _lee_kernel(size: int, looks: float) -> Kernel:
    def kernel(x: np.ndarray) -> np.ndarray:
        _, mean, var = local_stats(x, size)
        return _finish(x, _lee_mmse(np.asarray(x, dtype=np.float64), mean, var, looks))

    return kernel


def _gamma_map_kernel(size: int, looks: float) -> Kernel:
    def kernel(x: np.ndarray) -> np.ndarray:
        _, mean, var = local_stats(x, size)
        xf = np.asarray(x, dtype=np.float64)
        cu2 = 1.0 / looks
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            ci2 = np.where(mean > 0, var / (mean * mean), 0.0)
            alpha = (1.0 + cu2) / (ci2 - cu2)
            b = alpha - looks - 1.0
            d = np.maximum(mean * mean * b * b + 4.0 * alpha * looks * mean * xf, 0.0)
            estimate = (b * mean + np.sqrt(d)) / (2.0 * alpha)
        out = np.where(ci2 <= cu2, mean, np.where(ci2 >= 2.0 * cu2, xf, estimate))
        return _finish(x, out)

    return kernel


def _run(
    obj: np.ndarray | xr.DataArray | xr.Dataset, kernel: Kernel, depth: int, label: str
) -> np.ndarray | xr.DataArray | xr.Dataset:
    """Apply a window kernel to numpy, numpy/dask-backed DataArrays or a Dataset's image."""
    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        x = np.asarray(obj)
        if x.ndim < 2:
            raise ValueError(f"expected an array (..., y, x), got shape {x.shape}")
        return kernel(x)
    da = image_of(obj)
    require_power(da, f"apply {label}")
    dims = da.dims
    if {"y", "x"} <= set(dims):
        da = da.transpose(..., "y", "x")
    data = da.data
    if hasattr(data, "map_overlap"):
        dtype = np.result_type(data.dtype, np.float32)
        deep = {axis: (depth if axis >= data.ndim - 2 else 0) for axis in range(data.ndim)}
        data = data.astype(dtype).map_overlap(kernel, depth=deep, boundary=np.nan, dtype=dtype)
    else:
        data = kernel(data)
    out = da.copy(data=data).transpose(*dims)
    previous = da.attrs.get("speckle_filter")
    out.attrs = {**da.attrs, "speckle_filter": f"{previous}; {label}" if previous else label}
    return with_image(obj, out)


def boxcar(
    obj: np.ndarray | xr.DataArray | xr.Dataset, size: int = 5
) -> np.ndarray | xr.DataArray | xr.Dataset:
    """Window mean: the simplest multilook-like filter; blurs edges as much as speckle."""
    size = _check_size(size)
    return _run(obj, _boxcar_kernel(size), size // 2, f"boxcar(size={size})")


def lee(
    obj: np.ndarray | xr.DataArray | xr.Dataset, *, looks: float, size: int = 7
) -> np.ndarray | xr.DataArray | xr.Dataset:
    """Lee (1981) MMSE filter: smooths where the window looks like pure speckle, keeps contrast.

    ``x = m + b (I - m)`` with ``b = var_R / var_I`` and
    ``var_R = (var_I - m^2 / L) / (1 + 1/L)`` (clipped at 0).
    """
    size, looks = _check_size(size), _check_looks(looks)
    return _run(obj, _lee_kernel(size, looks), size // 2, f"lee(size={size}, looks={looks:g})")


def refined_lee(
    obj: np.ndarray | xr.DataArray | xr.Dataset, *, looks: float
) -> np.ndarray | xr.DataArray | xr.Dataset:
    """Refined Lee: the Lee MMSE estimate over one of 8 edge-aligned halves of a 7x7 window.

    The half on the centre's side of the strongest local edge is used, so edges
    are not smeared across; see :mod:`sarlab.preprocess._refined` for the details.
    """
    looks = _check_looks(looks)

    def kernel(x: np.ndarray) -> np.ndarray:
        mean, var = refined_lee_kernel(x)
        return _finish(x, _lee_mmse(np.asarray(x, dtype=np.float64), mean, var, looks))

    return _run(obj, kernel, 3, f"refined_lee(looks={looks:g})")


def gamma_map(
    obj: np.ndarray | xr.DataArray | xr.Dataset, *, looks: float, size: int = 7
) -> np.ndarray | xr.DataArray | xr.Dataset:
    """Gamma MAP (Lopes et al. 1990): MAP estimate with a Gamma-distributed reflectivity.

    With ``Cu^2 = 1/L`` and local ``Ci^2 = var/mean^2``: ``Ci <= Cu`` gives the
    window mean, ``Ci >= sqrt(2) Cu`` keeps the pixel (a point target), and in
    between ``x = (B m + sqrt(B^2 m^2 + 4 a L m I)) / (2 a)`` with
    ``a = (1 + Cu^2) / (Ci^2 - Cu^2)`` and ``B = a - L - 1``.
    """
    size, looks = _check_size(size), _check_looks(looks)
    label = f"gamma_map(size={size}, looks={looks:g})"
    return _run(obj, _gamma_map_kernel(size, looks), size // 2, label)


def _intensity_values(obj: np.ndarray | xr.DataArray, action: str) -> xr.DataArray | None:
    """The DataArray (checked to be linear power), or None for plain arrays."""
    if isinstance(obj, (xr.DataArray, xr.Dataset)):
        da = image_of(obj)
        require_power(da, action)
        return da
    return None


def _enl(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if values.size < 2:
        raise ValueError("ENL needs at least two valid pixels")
    var = values.var(ddof=1)
    return float(values.mean() ** 2 / var) if var > 0 else float("inf")


def estimate_enl(
    obj: np.ndarray | xr.DataArray | xr.Dataset, mask: np.ndarray | None = None
) -> float | xr.DataArray:
    """ENL = mean^2 / variance over a homogeneous region (``mask`` True inside it).

    For numpy input all (masked) elements are pooled into one float; a DataArray
    with a ``band`` dimension gives one value per band.
    """
    da = _intensity_values(obj, "estimate the ENL")
    if da is None:
        x = np.asarray(obj, dtype=np.float64)
        if mask is not None:
            x = x[np.broadcast_to(np.asarray(mask, dtype=bool), x.shape)]
        return _enl(x.ravel())
    if mask is not None:
        da = da.where(xr.DataArray(np.asarray(mask, dtype=bool), dims=da.dims[-2:]))
    if "band" in da.dims:
        values = [_enl(np.asarray(da.sel(band=b).values).ravel()) for b in da["band"].values]
        return xr.DataArray(values, dims=["band"], coords={"band": da["band"].values}, name="enl")
    return xr.DataArray(_enl(np.asarray(da.values).ravel()), name="enl")


def enl_map(
    obj: np.ndarray | xr.DataArray | xr.Dataset, size: int = 7
) -> np.ndarray | xr.DataArray:
    """Local ENL (mean^2 / variance in each window): high where homogeneous, low at edges."""
    size = _check_size(size)

    def kernel(x: np.ndarray) -> np.ndarray:
        _, mean, var = local_stats(x, size)
        with np.errstate(invalid="ignore", divide="ignore"):
            enl = np.where(var > 0, mean * mean / var, np.inf)
        return _finish(x, enl)

    da = _intensity_values(obj, "map the ENL")
    if da is None:
        return _run(obj, kernel, size // 2, "enl_map")
    out = _run(da, kernel, size // 2, f"enl_map(size={size})")
    out.attrs = {"long_name": "local equivalent number of looks", "window": size}
    return out.rename("enl")


def _auto_enl_2d(x: np.ndarray, block: int, fraction: float) -> float:
    """Split-half estimate: choose blocks on one checkerboard half, measure on the other."""
    ny, nx = x.shape[0] // block, x.shape[1] // block
    if ny == 0 or nx == 0:
        raise ValueError(f"image {x.shape} is smaller than one {block}x{block} block")
    tiles = x[: ny * block, : nx * block].reshape(ny, block, nx, block).swapaxes(1, 2)
    tiles = tiles.reshape(ny * nx, block, block)
    yy, xx = np.indices((block, block))
    half_a, half_b = tiles[:, (yy + xx) % 2 == 0], tiles[:, (yy + xx) % 2 == 1]
    ok = (np.isfinite(half_a).mean(axis=1) >= 0.9) & (np.isfinite(half_b).mean(axis=1) >= 0.9)
    half_a, half_b = half_a[ok], half_b[ok]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_a = np.nanmean(half_a, axis=1)
        mean_b = np.nanmean(half_b, axis=1)
        cv_a = np.nanstd(half_a, axis=1, ddof=1) / mean_a
        ratio_b = np.nanvar(half_b, axis=1, ddof=1) / (mean_b * mean_b)
    usable = (mean_a > 0) & (mean_b > 0) & np.isfinite(cv_a) & np.isfinite(ratio_b)
    if not usable.any():
        raise ValueError("no block with enough valid positive pixels to estimate the ENL")
    cv_a, ratio_b = cv_a[usable], ratio_b[usable]
    chosen = ratio_b[cv_a <= np.quantile(cv_a, fraction)].mean()
    return float(1.0 / chosen) if chosen > 0 else float("inf")


def estimate_enl_auto(
    obj: np.ndarray | xr.DataArray | xr.Dataset, *, block: int = 16, fraction: float = 0.1
) -> float | xr.DataArray:
    """ENL without a hand-drawn region: the most homogeneous ``fraction`` of blocks.

    Blocks are ranked by the coefficient of variation of one checkerboard half
    of their pixels and the ENL is measured on the other half. Ranking and
    measuring on the same pixels would pick blocks whose speckle happens to be
    weak and overestimate the ENL; with independent halves the estimate of
    pure Gamma(L) speckle is ``L + O(1/block^2)``. Spatially correlated speckle
    (real products) couples the halves a little.
    """
    if block < 4:
        raise ValueError(f"block must be at least 4 pixels, got {block}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    da = _intensity_values(obj, "estimate the ENL")
    if da is None:
        x = np.asarray(obj, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D image, got shape {x.shape}")
        return _auto_enl_2d(x, block, fraction)
    if "band" in da.dims:
        values = [
            _auto_enl_2d(np.asarray(da.sel(band=b).values, float), block, fraction)
            for b in da["band"].values
        ]
        return xr.DataArray(values, dims=["band"], coords={"band": da["band"].values}, name="enl")
    return xr.DataArray(_auto_enl_2d(np.asarray(da.values, float), block, fraction), name="enl")
