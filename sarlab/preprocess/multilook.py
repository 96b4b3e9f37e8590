"""Multilooking: block averaging of linear power, the classic speckle-for-resolution trade.

Averaging ``az x rg`` independent looks multiplies the ENL by up to ``az * rg``
and the pixel size by the same factors. It must happen in linear power (the
mean of dB values is a biased, different quantity), so dB input is refused.

* NaN is nodata: a block's mean uses its valid pixels, all-NaN blocks stay NaN.
* Rows/columns that do not fill a whole block at the bottom/right are dropped,
  so the geo-transform keeps its origin and only the pixel size grows.
* Coordinates (1-D x/y, 2-D latitude/longitude, incidence angle) are averaged;
  the rioxarray transform is rewritten with the pixel size multiplied.
* Integer label variables take the block's majority class (ignore-index pixels
  do not vote; a block of only ignore-index stays ignore-index).
"""

from __future__ import annotations

import warnings

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR
from sarlab.preprocess._checks import image_of, require_power

__all__ = ["multilook", "multilook_array"]


def _check_factors(factors: tuple[int, int] | int) -> tuple[int, int]:
    fy, fx = (factors, factors) if np.ndim(factors) == 0 else tuple(factors)
    if int(fy) != fy or int(fx) != fx or fy < 1 or fx < 1:
        raise ValueError(f"multilook factors must be positive integers, got {factors!r}")
    return int(fy), int(fx)


def multilook_array(x: np.ndarray, factors: tuple[int, int] | int) -> np.ndarray:
    """NaN-aware block mean over the last two axes (azimuth=rows, range=columns)."""
    fy, fx = _check_factors(factors)
    x = np.asarray(x)
    ny, nx = x.shape[-2] // fy, x.shape[-1] // fx
    if ny == 0 or nx == 0:
        raise ValueError(f"image {x.shape[-2:]} is smaller than one {fy}x{fx} block")
    blocks = x[..., : ny * fy, : nx * fx].reshape(*x.shape[:-2], ny, fy, nx, fx)
    valid = np.isfinite(blocks)
    total = np.where(valid, blocks, 0).sum(axis=(-3, -1), dtype=np.float64)
    count = valid.sum(axis=(-3, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return mean.astype(np.result_type(x.dtype, np.float32))


def _block_mode(x: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """Majority class over ``axis`` ignoring IGNORE_INDEX; ties go to the smaller class."""
    x = np.asarray(x)
    moved = np.moveaxis(x, axis, tuple(range(x.ndim - len(axis), x.ndim)))
    blocks = moved.reshape(*moved.shape[: x.ndim - len(axis)], -1)
    best = np.full(blocks.shape[:-1], IGNORE_INDEX, dtype=x.dtype)
    best_count = np.zeros(blocks.shape[:-1], dtype=np.int64)
    for value in np.unique(blocks):
        if value == IGNORE_INDEX:
            continue
        count = (blocks == value).sum(axis=-1)
        better = count > best_count
        best = np.where(better, value, best)
        best_count = np.where(better, count, best_count)
    return best


def _coarsen(da: xr.DataArray, fy: int, fx: int) -> xr.DataArray:
    rolling = da.coarsen(y=fy, x=fx, boundary="trim", coord_func="mean")
    if np.issubdtype(da.dtype, np.integer) or da.dtype == bool:
        out = rolling.reduce(_block_mode)
    else:
        out = rolling.mean()  # skips NaN for floats
    out.attrs = dict(da.attrs)
    return out


def _rewrite_transform(
    source: xr.Dataset | xr.DataArray, out: xr.Dataset | xr.DataArray, fy: int, fx: int
) -> xr.Dataset | xr.DataArray:
    """Scale the rioxarray transform where the input is geo-referenced."""
    grid = source.rio.grid_mapping
    has_transform = grid in source.coords and "GeoTransform" in source.coords[grid].attrs
    if source.rio.crs is None and not has_transform:
        return out
    with warnings.catch_warnings():  # rioxarray still multiplies Affines with `*`
        warnings.filterwarnings("ignore", "Use `@` matmul", PendingDeprecationWarning)
        transform = source.rio.transform()
    transform = transform @ Affine.scale(fx, fy)
    return out.rio.write_transform(transform)


def multilook(
    obj: xr.Dataset | xr.DataArray, factors: tuple[int, int] | int
) -> xr.Dataset | xr.DataArray:
    """Average ``factors = (azimuth, range)`` blocks of a linear-power image (and its companions).

    Azimuth is the ``y`` (row) axis and range the ``x`` (column) axis. The
    backscatter attrs gain ``multilook = [az, rg]`` (cumulative over repeated calls).
    """
    fy, fx = _check_factors(factors)
    da = image_of(obj)
    require_power(da, "multilook")
    if not {"y", "x"} <= set(da.dims):
        raise ValueError(f"multilook needs 'y' and 'x' dimensions, got {da.dims}")
    if da.sizes["y"] < fy or da.sizes["x"] < fx:
        raise ValueError(f"image {da.sizes['y']}x{da.sizes['x']} is smaller than one block")
    previous = da.attrs.get("multilook", [1, 1])
    looks = [int(previous[0]) * fy, int(previous[1]) * fx]

    if isinstance(obj, xr.DataArray):
        out = _coarsen(obj, fy, fx)
        out.attrs["multilook"] = looks
        return _rewrite_transform(obj, out, fy, fx)

    variables = {}
    for name, var in obj.data_vars.items():
        variables[name] = _coarsen(var, fy, fx) if {"y", "x"} <= set(var.dims) else var
    variables[IMAGE_VAR].attrs["multilook"] = looks
    spatial = [
        n for n, c in obj.coords.items() if {"y", "x"} <= set(c.dims) and n not in ("y", "x")
    ]
    out = xr.Dataset(variables, attrs=dict(obj.attrs))
    missing = [n for n in spatial if n not in out.coords]
    if missing:
        coords = obj.reset_coords(missing)[missing]
        out = out.assign_coords({n: _coarsen(coords[n], fy, fx) for n in missing})
    for name, coord in obj.coords.items():
        if name not in out.coords and not ({"y", "x"} & set(coord.dims)):
            out = out.assign_coords({name: coord})
    return _rewrite_transform(obj, out, fy, fx)
