"""Radiometric conversions: dB <-> linear, amplitude -> intensity, sigma0/gamma0/beta0.

Each conversion is explicit and checks the ``units``/``quantity`` attrs first:
applying ``to_db`` twice, or converting sigma0 to gamma0 on dB values, gives
numbers that look plausible and are wrong, so both raise
:class:`~sarlab.errors.UnitsError` instead.

dB uses ``10 log10`` for power quantities (sigma0, gamma0, beta0, intensity) and
``20 log10`` for amplitude, so the dB value of a pixel is the same whichever of
the two it is stored as. Non-positive linear values have no logarithm and
become NaN (sarlab's float nodata) rather than ``-inf``: zeros in SAR products
are almost always masked borders or over-subtracted thermal noise, and ``-inf``
would poison every mean computed later.

The sigma0/gamma0/beta0 relations use the ellipsoid incidence angle theta that
travels with the image (``incidence_angle``, degrees)::

    gamma0 = sigma0 / cos(theta)        sigma0 = beta0 * sin(theta)

This is the flat-terrain normalisation; terrain-flattened gamma0 (RTC) needs a
DEM and is a different product.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import xarray as xr

from sarlab.errors import UnitsError
from sarlab.preprocess._checks import (
    apply_to_data,
    image_of,
    incidence_of,
    require_units,
    with_image,
)

__all__ = [
    "beta0_to_sigma0",
    "db_to_linear",
    "gamma0_to_sigma0",
    "linear_to_db",
    "sigma0_to_beta0",
    "sigma0_to_gamma0",
    "to_db",
    "to_intensity",
    "to_linear",
]

Array = npt.ArrayLike
SarObject = xr.Dataset | xr.DataArray


def _float(x: Array) -> np.ndarray:
    """Float view of the input that keeps float32 as float32 (and dask as dask)."""
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    dtype = np.result_type(x.dtype, np.float32)
    return x if x.dtype == dtype else x.astype(dtype)


def linear_to_db(x: Array, *, amplitude: bool = False) -> np.ndarray:
    """``10 log10(x)`` (``20 log10`` for amplitude); non-positive values become NaN."""
    x = _float(x)
    factor = 20.0 if amplitude else 10.0
    positive = np.where(x > 0, x, np.nan)
    return (factor * np.log10(positive)).astype(x.dtype)


def db_to_linear(x: Array, *, amplitude: bool = False) -> np.ndarray:
    """``10 ** (x / 10)`` (``x / 20`` for amplitude); NaN stays NaN."""
    x = _float(x)
    factor = 20.0 if amplitude else 10.0
    return np.power(10.0, x / factor).astype(x.dtype)


def to_db(obj: SarObject) -> SarObject:
    """Convert linear backscatter to dB; refuses input that is not declared linear."""
    da = image_of(obj)
    quantity = require_units(da, "linear", "convert to dB")
    amplitude = quantity == "amplitude"
    out = apply_to_data(da, lambda x: linear_to_db(x, amplitude=amplitude))
    out.attrs = {**da.attrs, "units": "dB"}
    return with_image(obj, out)


def to_linear(obj: SarObject) -> SarObject:
    """Convert dB backscatter to linear units; refuses input that is not declared dB."""
    da = image_of(obj)
    quantity = require_units(da, "dB", "convert to linear")
    amplitude = quantity == "amplitude"
    out = apply_to_data(da, lambda x: db_to_linear(x, amplitude=amplitude))
    out.attrs = {**da.attrs, "units": "linear"}
    return with_image(obj, out)


def to_intensity(obj: SarObject) -> SarObject:
    """Square a linear amplitude image into intensity (power), which speckle models assume."""
    da = image_of(obj)
    quantity = require_units(da, "linear", "convert amplitude to intensity")
    if quantity != "amplitude":
        raise UnitsError(f"cannot convert to intensity: quantity is already {quantity!r}")
    out = apply_to_data(da, lambda x: _float(x) ** 2)
    out.attrs = {**da.attrs, "quantity": "intensity"}
    return with_image(obj, out)


def _angle_factor(theta: object, func: str) -> object:
    """cos or sin of the incidence angle (degrees), as float64 to keep small angles exact."""
    radians = np.deg2rad(theta.astype("float64") if hasattr(theta, "astype") else theta)
    return np.cos(radians) if func == "cos" else np.sin(radians)


def _convert(
    obj: SarObject | np.ndarray,
    incidence_angle: object | None,
    *,
    source: str,
    target: str,
    func: str,
    divide: bool,
) -> SarObject | np.ndarray:
    """Multiply or divide linear backscatter by cos/sin(theta), relabelling the quantity."""
    theta = incidence_of(obj, incidence_angle)
    factor = _angle_factor(theta, func)
    if not isinstance(obj, (xr.Dataset, xr.DataArray)):
        x = _float(obj)
        f = np.asarray(factor)
        return (x / f if divide else x * f).astype(x.dtype)
    da = image_of(obj)
    quantity = require_units(da, "linear", f"convert {source} to {target}")
    if quantity != source:
        raise UnitsError(f"cannot convert {source} to {target}: quantity is {quantity!r}")
    if not isinstance(factor, xr.DataArray):
        f = np.asarray(factor)
        if f.ndim and f.shape != da.shape[-f.ndim :]:
            raise UnitsError(
                f"incidence angle shape {f.shape} does not match image shape {da.shape}"
            )
        factor = xr.DataArray(f, dims=da.dims[da.ndim - f.ndim :]) if f.ndim else float(f)
    elif set(factor.dims) - set(da.dims):
        raise UnitsError(f"incidence angle dims {factor.dims} are not among image dims {da.dims}")
    factor = factor.drop_vars(list(factor.coords)) if isinstance(factor, xr.DataArray) else factor
    scaled = da / factor if divide else da * factor
    out = scaled.astype(_float(da.data).dtype).transpose(*da.dims)
    out.attrs = {**da.attrs, "quantity": target}
    out.name = da.name
    return with_image(obj, out)


def sigma0_to_gamma0(
    obj: SarObject | np.ndarray, incidence_angle: object | None = None
) -> SarObject | np.ndarray:
    """gamma0 = sigma0 / cos(theta): removes most of the across-swath brightness trend."""
    return _convert(obj, incidence_angle, source="sigma0", target="gamma0", func="cos", divide=True)


def gamma0_to_sigma0(
    obj: SarObject | np.ndarray, incidence_angle: object | None = None
) -> SarObject | np.ndarray:
    """sigma0 = gamma0 * cos(theta), the inverse of :func:`sigma0_to_gamma0`."""
    return _convert(
        obj, incidence_angle, source="gamma0", target="sigma0", func="cos", divide=False
    )


def beta0_to_sigma0(
    obj: SarObject | np.ndarray, incidence_angle: object | None = None
) -> SarObject | np.ndarray:
    """sigma0 = beta0 * sin(theta): radar brightness to ground-range backscatter."""
    return _convert(obj, incidence_angle, source="beta0", target="sigma0", func="sin", divide=False)


def sigma0_to_beta0(
    obj: SarObject | np.ndarray, incidence_angle: object | None = None
) -> SarObject | np.ndarray:
    """beta0 = sigma0 / sin(theta), the inverse of :func:`beta0_to_sigma0`."""
    return _convert(obj, incidence_angle, source="sigma0", target="beta0", func="sin", divide=True)
