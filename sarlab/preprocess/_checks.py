"""Shared guards for the preprocessing steps: which array is the image, and what it holds.

Every step in sarlab.preprocess accepts a Dataset (acting on its ``backscatter``
variable) or a bare DataArray, and refuses to guess units: a filter run on dB
values or a conversion run twice silently produces plausible-looking garbage,
so these checks turn both into a :class:`~sarlab.errors.UnitsError`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from sarlab.conventions import IMAGE_VAR, INCIDENCE_VAR, QUANTITIES, UNITS
from sarlab.errors import UnitsError

POWER_QUANTITIES = ("sigma0", "gamma0", "beta0", "intensity")


def image_of(obj: xr.Dataset | xr.DataArray) -> xr.DataArray:
    """The backscatter DataArray of a Dataset, or the DataArray itself."""
    if isinstance(obj, xr.Dataset):
        if IMAGE_VAR not in obj:
            raise UnitsError(f"dataset has no {IMAGE_VAR!r} variable (has {list(obj.data_vars)})")
        return obj[IMAGE_VAR]
    if isinstance(obj, xr.DataArray):
        return obj
    raise TypeError(f"expected an xarray Dataset or DataArray, got {type(obj).__name__}")


def with_image(obj: xr.Dataset | xr.DataArray, image: xr.DataArray) -> xr.Dataset | xr.DataArray:
    """Put a processed image back where it came from (Dataset variable or bare DataArray)."""
    if isinstance(obj, xr.Dataset):
        out = obj.copy()
        out[IMAGE_VAR] = image
        return out
    return image


def require_units(da: xr.DataArray, units: str, action: str) -> str:
    """Check ``units`` (and ``quantity``) attrs; return the quantity."""
    if "units" not in da.attrs:
        raise UnitsError(
            f"cannot {action}: array lacks a 'units' attr (expected {units!r}); "
            "set attrs['units'] to 'dB' or 'linear' to say what it holds"
        )
    got = da.attrs["units"]
    if got not in UNITS:
        raise UnitsError(f"cannot {action}: unknown units {got!r}; expected one of {UNITS}")
    if got != units:
        raise UnitsError(f"cannot {action}: array is in {got!r}, expected {units!r}")
    quantity = da.attrs.get("quantity")
    if quantity is None:
        raise UnitsError(f"cannot {action}: array lacks a 'quantity' attr")
    if quantity not in QUANTITIES:
        raise UnitsError(f"cannot {action}: unknown quantity {quantity!r}")
    return quantity


def require_power(da: xr.DataArray, action: str) -> str:
    """Linear power (intensity-like) image: what speckle statistics and multilooking assume."""
    quantity = require_units(da, "linear", action)
    if quantity not in POWER_QUANTITIES:
        raise UnitsError(
            f"cannot {action}: quantity is {quantity!r}; speckle statistics assume linear "
            "power (square amplitudes first with sarlab.preprocess.to_intensity)"
        )
    return quantity


def incidence_of(
    obj: xr.Dataset | xr.DataArray | np.ndarray, incidence_angle: object | None
) -> xr.DataArray | np.ndarray:
    """The incidence angle (degrees): given explicitly, or the Dataset's variable/coordinate."""
    if incidence_angle is not None:
        theta = incidence_angle
    elif isinstance(obj, (xr.Dataset, xr.DataArray)) and INCIDENCE_VAR in obj.coords:
        theta = obj.coords[INCIDENCE_VAR]
    elif isinstance(obj, xr.Dataset) and INCIDENCE_VAR in obj:
        theta = obj[INCIDENCE_VAR]
    else:
        raise UnitsError(
            f"no incidence angle: pass incidence_angle= or give a Dataset with {INCIDENCE_VAR!r}"
        )
    if isinstance(theta, xr.DataArray):
        check_values = theta.values if theta.chunks is None else None
    else:
        theta = np.asarray(theta, dtype=float)
        check_values = theta
    if check_values is not None:
        finite = np.asarray(check_values)[np.isfinite(check_values)]
        if finite.size and (finite.min() < 0 or finite.max() >= 90):
            raise UnitsError(
                f"incidence angle must be in degrees within [0, 90); got range "
                f"[{finite.min():.3g}, {finite.max():.3g}] (radians?)"
            )
    return theta


def apply_to_data(da: xr.DataArray, func: Callable[[np.ndarray], np.ndarray]) -> xr.DataArray:
    """Apply an elementwise numpy function to numpy- or dask-backed data, keeping coords."""
    return da.copy(data=func(da.data))
