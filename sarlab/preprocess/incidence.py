"""Incidence-angle normalisation of dB backscatter to a reference angle.

Backscatter falls with incidence angle across a swath (for sea ice and water
roughly linearly in dB, about -0.1 to -0.3 dB per degree), so the same surface
looks darker in far range. Models and thresholds trained at one angle transfer
better after removing that trend::

    sigma0_dB(ref) = sigma0_dB(theta) - slope * (theta - ref)

The slope depends on polarisation and surface type, hence per-band and
per-class slopes (Mahmud et al. 2018; Lohse et al. 2021 fit one per ice class).
The result keeps ``incidence_angle`` beside it and records the slope and the
reference angle in attrs; normalising twice is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import xarray as xr

from sarlab.conventions import IGNORE_INDEX
from sarlab.errors import UnitsError
from sarlab.preprocess._checks import image_of, incidence_of, require_units, with_image

__all__ = ["fit_incidence_slope", "normalize_incidence"]

ClassSlopes = Mapping[int, float]
Slope = float | ClassSlopes | Mapping[str, float] | Mapping[str, ClassSlopes]


def _fit(db: np.ndarray, theta: np.ndarray, min_pixels: int) -> float | None:
    """Least-squares slope of dB against degrees over finite pairs; None if too few."""
    ok = np.isfinite(db) & np.isfinite(theta)
    if ok.sum() < max(min_pixels, 2):
        return None
    y, t = db[ok].astype(np.float64), theta[ok].astype(np.float64)
    tc = t - t.mean()
    spread = float(np.dot(tc, tc))
    if spread <= 0:
        return None
    return float(np.dot(tc, y - y.mean()) / spread)


def _fit_pooled(
    db: np.ndarray, theta: np.ndarray, classes: np.ndarray | None, min_pixels: int, what: str
) -> float | dict[int, float]:
    theta = np.broadcast_to(theta, db.shape)
    if classes is None:
        slope = _fit(db.ravel(), theta.ravel(), min_pixels)
        if slope is None:
            raise ValueError(
                f"{what}: need at least {max(min_pixels, 2)} valid pixels spanning more than "
                "one incidence angle to fit a slope"
            )
        return slope
    classes = np.broadcast_to(classes, db.shape)
    slopes: dict[int, float] = {}
    for value in np.unique(classes):
        if value == IGNORE_INDEX:
            continue
        here = classes == value
        slope = _fit(db[here], theta[here], min_pixels)
        if slope is not None:
            slopes[int(value)] = slope
    return slopes


def _classes_of(obj: object, classes: object) -> np.ndarray | None:
    if classes is None:
        return None
    if isinstance(classes, str):
        if not isinstance(obj, xr.Dataset) or classes not in obj:
            raise ValueError(f"classes={classes!r} names no variable of the dataset")
        classes = obj[classes]
    return np.asarray(classes.values if isinstance(classes, xr.DataArray) else classes)


def fit_incidence_slope(
    db: np.ndarray | xr.DataArray | xr.Dataset,
    theta: np.ndarray | xr.DataArray | None = None,
    classes: np.ndarray | xr.DataArray | str | None = None,
    *,
    min_pixels: int = 100,
) -> float | dict[int, float] | dict[str, float] | dict[str, dict[int, float]]:
    """Least-squares slope (dB per degree) of backscatter against incidence angle, NaN-aware.

    ``theta`` defaults to the Dataset's ``incidence_angle``. With ``classes``
    (a label array, or a Dataset variable name) one slope per class is fitted;
    :data:`~sarlab.conventions.IGNORE_INDEX` pixels and classes with fewer than
    ``min_pixels`` valid pixels are left out. Numpy input pools all elements;
    xarray input with a ``band`` dimension gives ``{band: slope(s)}``, which
    :func:`normalize_incidence` accepts as it is.
    """
    labels = _classes_of(db, classes)
    if not isinstance(db, (xr.Dataset, xr.DataArray)):
        if theta is None:
            raise ValueError("numpy input needs theta (incidence angle in degrees)")
        angles = np.asarray(incidence_of(np.asarray(db), theta), dtype=np.float64)
        return _fit_pooled(np.asarray(db, np.float64), angles, labels, min_pixels, "backscatter")
    da = image_of(db)
    require_units(da, "dB", "fit an incidence-angle slope")
    angles = incidence_of(db, theta)
    if {"y", "x"} <= set(da.dims):
        da = da.transpose(..., "y", "x")
        if isinstance(angles, xr.DataArray) and {"y", "x"} <= set(angles.dims):
            angles = angles.transpose("y", "x")
    angles = np.asarray(angles, dtype=np.float64)
    if "band" not in da.dims:
        return _fit_pooled(np.asarray(da.values, np.float64), angles, labels, min_pixels, "image")
    return {
        str(b): _fit_pooled(
            np.asarray(da.sel(band=b).values, np.float64), angles, labels, min_pixels, f"band {b}"
        )
        for b in da["band"].values
    }


def _slope_field(slope: float | ClassSlopes, classes: np.ndarray | None) -> float | np.ndarray:
    """A scalar slope, or a per-pixel slope from class slopes (NaN for classes without one)."""
    if not isinstance(slope, Mapping):
        return float(slope)
    if classes is None:
        raise ValueError("per-class slopes need classes= (the label array)")
    values, inverse = np.unique(classes, return_inverse=True)
    lut = np.array([float(slope.get(int(v), np.nan)) for v in values])
    return lut[inverse].reshape(classes.shape)


def _is_per_band(slope: object) -> bool:
    return isinstance(slope, Mapping) and all(isinstance(k, str) for k in slope)


def _describe(slope: Slope) -> float | str:
    """A netCDF-safe record of the slope: a float, or JSON for mappings."""
    if not isinstance(slope, Mapping):
        return float(slope)

    def plain(value: object) -> object:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        return float(value)

    return json.dumps(plain(slope), sort_keys=True)


def normalize_incidence(
    obj: np.ndarray | xr.DataArray | xr.Dataset,
    slope: Slope,
    *,
    reference_angle: float,
    incidence_angle: np.ndarray | xr.DataArray | None = None,
    classes: np.ndarray | xr.DataArray | str | None = None,
) -> np.ndarray | xr.DataArray | xr.Dataset:
    """Bring dB backscatter to ``reference_angle`` (degrees) with a linear-in-dB slope.

    ``slope`` is a float, ``{class: slope}`` (needs ``classes``), ``{band: slope}``
    or ``{band: {class: slope}}``, as :func:`fit_incidence_slope` returns them.
    Pixels of classes without a slope (and ignore-index pixels) become NaN.
    """
    if not 0 <= reference_angle < 90:
        raise ValueError(
            f"reference_angle must be in degrees within [0, 90), got {reference_angle}"
        )
    labels = _classes_of(obj, classes)
    if not isinstance(obj, (xr.Dataset, xr.DataArray)):
        if incidence_angle is None:
            raise ValueError("numpy input needs incidence_angle (degrees)")
        if _is_per_band(slope):
            raise ValueError("per-band slopes need an xarray input with a band coordinate")
        x = np.asarray(obj)
        theta = np.asarray(incidence_of(x, incidence_angle), dtype=np.float64)
        field = _slope_field(slope, labels)
        dtype = np.result_type(x.dtype, np.float32)
        return (x - field * (theta - reference_angle)).astype(dtype)

    da = image_of(obj)
    require_units(da, "dB", "normalise incidence angle")
    if "incidence_reference_angle" in da.attrs:
        raise UnitsError(
            "backscatter is already normalised to "
            f"{da.attrs['incidence_reference_angle']} degrees; normalising twice is an error"
        )
    theta = incidence_of(obj, incidence_angle)
    if not isinstance(theta, xr.DataArray):
        theta = xr.DataArray(np.asarray(theta), dims=da.dims[da.ndim - np.ndim(theta) :])
    theta = theta.drop_vars(list(theta.coords)).astype(np.float64)
    spatial = theta.dims
    if _is_per_band(slope):
        if "band" not in da.dims:
            raise ValueError("per-band slopes need a band dimension")
        missing = [str(b) for b in da["band"].values if str(b) not in slope]
        if missing:
            raise ValueError(f"no slope for bands {missing}")
        fields = [_slope_field(slope[str(b)], labels) for b in da["band"].values]
        stacked = np.stack([np.broadcast_to(f, theta.shape) for f in fields])
        field = xr.DataArray(stacked, dims=("band", *spatial), coords={"band": da["band"].values})
    else:
        value = _slope_field(slope, labels)
        field = xr.DataArray(value, dims=spatial if np.ndim(value) else ())
    dtype = np.result_type(da.dtype, np.float32)
    out = (da - field * (theta - reference_angle)).astype(dtype).transpose(*da.dims)
    out.name = da.name
    out.attrs = {
        **da.attrs,
        "incidence_slope": _describe(slope),
        "incidence_reference_angle": float(reference_angle),
    }
    return with_image(obj, out)
