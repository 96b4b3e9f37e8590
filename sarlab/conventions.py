"""The SAR conventions every sarlab array follows (see DESIGN.md).

Readers produce, and every later step expects, an ``xarray.Dataset`` with:

* ``backscatter``: dims ``("band", "y", "x")``, float32, NaN = nodata; the
  ``band`` coordinate holds the polarisation of each band (``"HH"``, ``"HV"``,
  ``"VV"``, ``"VH"``) and attrs ``quantity`` (sigma0|gamma0|beta0|intensity|
  amplitude), ``units`` (dB|linear) and ``polarization`` (the band order,
  comma-separated, e.g. ``"HH,HV"``).
* ``incidence_angle`` (optional): dims ``("y", "x")``, float32, degrees.
* label variables (optional): dims ``("y", "x")``, uint8, with
  :data:`IGNORE_INDEX` wherever the source marked nodata (255 in AI4Arctic,
  -1 in Sen1Floods11) and attrs ``flag_values``/``flag_meanings``.
* dataset attrs ``platform``, ``mode`` (IW|EW|SM), ``product`` (GRD|SLC|RTC),
  ``scene_id`` and ``source`` (the file it came from).
* geo-reference: a rioxarray CRS and transform where the source is gridded, or
  2-D ``latitude``/``longitude`` coordinates where it is in radar geometry.
"""

from __future__ import annotations

from collections.abc import Iterable

import xarray as xr

from sarlab.errors import UnitsError

IMAGE_VAR = "backscatter"
INCIDENCE_VAR = "incidence_angle"
IGNORE_INDEX = 255

QUANTITIES = ("sigma0", "gamma0", "beta0", "intensity", "amplitude")
UNITS = ("dB", "linear")
POLARIZATIONS = ("HH", "HV", "VV", "VH")
MODES = ("IW", "EW", "SM", "WV")
PRODUCTS = ("GRD", "SLC", "RTC")


def normalize_polarizations(
    polarizations: Iterable[str], *, source: str | None = None
) -> list[str]:
    """Upper-case and validate polarisation names; unknown names are an error."""
    result = []
    for pol in polarizations:
        name = str(pol).strip().upper()
        if name not in POLARIZATIONS:
            where = f"{source}: " if source else ""
            raise ValueError(
                f"{where}unknown polarisation {pol!r}; expected one of {', '.join(POLARIZATIONS)}"
            )
        result.append(name)
    return result


def sar_attrs(quantity: str, units: str, polarizations: Iterable[str]) -> dict[str, str]:
    """The attrs a backscatter DataArray carries, validated."""
    if quantity not in QUANTITIES:
        raise UnitsError(f"unknown quantity {quantity!r}; expected one of {QUANTITIES}")
    if units not in UNITS:
        raise UnitsError(f"unknown units {units!r}; expected one of {UNITS}")
    pols = normalize_polarizations(polarizations)
    return {"quantity": quantity, "units": units, "polarization": ",".join(pols)}


def check_backscatter(da: xr.DataArray) -> None:
    """Raise if a backscatter array does not say what it is (quantity, units, band order)."""
    missing = [key for key in ("quantity", "units", "polarization") if key not in da.attrs]
    if missing:
        raise UnitsError(f"backscatter array lacks attrs {missing}; it must say what it holds")
    sar_attrs(da.attrs["quantity"], da.attrs["units"], da.attrs["polarization"].split(","))
    if "band" in da.dims:
        bands = [str(b) for b in da["band"].values]
        if bands != da.attrs["polarization"].split(","):
            raise UnitsError(
                f"band coordinate {bands} disagrees with polarization attr "
                f"{da.attrs['polarization']!r}"
            )


def require_same_kind(*arrays: xr.DataArray) -> None:
    """Refuse to mix quantities or units (sigma0 with gamma0, dB with linear) in one operation."""
    kinds = {(a.attrs.get("quantity"), a.attrs.get("units")) for a in arrays}
    if len(kinds) > 1:
        raise UnitsError(f"cannot mix {sorted(map(str, kinds))}: convert explicitly first")
