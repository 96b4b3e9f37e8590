"""Sentinel-1 SAFE reader: calibrated, noise-corrected backscatter in radar geometry.

Built on xarray-sentinel, which parses the manifest, the product annotation
(image timing, burst structure, geolocation grid) and opens the measurement
GeoTIFFs lazily. sarlab adds what every SSL pipeline needs and a raw SAFE does
not give: radiometric calibration with the product's own LUTs, thermal-noise
removal, per-pixel incidence angle and latitude/longitude, and the sarlab
naming convention (``backscatter`` (band, y, x), units in attrs).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from functools import partial
from xml.etree import ElementTree

import dask.array
import numpy as np
import xarray as xr
from xarray_sentinel import sentinel1

from sarlab.conventions import IMAGE_VAR, INCIDENCE_VAR, POLARIZATIONS, sar_attrs
from sarlab.errors import InputError
from sarlab.io.safe_files import SafeFiles, check_measurement
from sarlab.io.safe_luts import (
    LUT_NAMES,
    Evaluate,
    VectorLut,
    calibration_lut,
    lazy_field,
    noise_luts,
    radiometry_block,
)

__all__ = ["open_safe"]

PathLike = str | os.PathLike[str]
Chunks = str | int | Mapping[str, int] | None
_AUTO_CHUNK_BYTES = 32 * 2**20
# annotation facts worth keeping from xarray-sentinel's measurement attrs
_KEEP_ATTRS = (
    "radar_frequency",
    "azimuth_pixel_spacing",
    "range_pixel_spacing",
    "azimuth_time_interval",
    "range_sampling_rate",
    "incidence_angle_mid_swath",
    "ascending_node_time",
    "number_of_bursts",
    "lines_per_burst",
    "geospatial_bounds",
    "geospatial_lat_min",
    "geospatial_lat_max",
    "geospatial_lon_min",
    "geospatial_lon_max",
)


def open_safe(
    path: PathLike,
    polarizations: str | Iterable[str] | None = None,
    quantity: str = "sigma0",
    *,
    swath: str | None = None,
    remove_noise: bool = True,
    chunks: Chunks = "auto",
) -> xr.Dataset | xr.DataTree:
    """Open a Sentinel-1 SAFE product (folder or .zip; GRD or SLC; IW, EW, SM) as sarlab arrays.

    Returns a Dataset for a product with one image per polarisation (GRD, or a
    single swath picked with ``swath=``) and an ``xarray.DataTree`` with one
    Dataset per swath (``IW1``, ``IW2``, ...) for multi-swath SLC products.

    Each Dataset holds ``backscatter`` (band, y, x) float32 in linear units with
    band = polarisation, ``incidence_angle`` (y, x) in degrees, 2-D ``latitude``/
    ``longitude`` coords, ``azimuth_time`` (y) and ``ground_range`` (GRD) or
    ``slant_range_time`` (SLC) coords; y/x are the line/pixel of the measurement.
    Everything is lazy (dask): LUTs and geolocation are evaluated per chunk.

    Radiometry, per pixel (line, pixel)::

        power  = |DN|^2                       # detected intensity; SLC: |I + jQ|^2
        power  = max(power - eta, 0)          # remove_noise: eta = range LUT * azimuth LUT
        value  = power / A^2                  # A = sigmaNought | betaNought | gamma LUT

    * ``quantity``: ``sigma0``, ``beta0``, ``gamma0`` (calibrated; needs the
      calibration XML) or ``intensity`` (uncalibrated |DN|^2).
    * LUTs are interpolated bilinearly in (line, pixel) and held constant beyond
      the annotated span. The noise azimuth vectors of IPF >= 2.9 multiply the
      range vectors inside their block; older products have range vectors only,
      and pixels outside every azimuth block use the range vector alone.
    * Over-subtracted noise (negative power, common in HV/VH over dark water
      and sea ice) is clipped to 0, not NaN: NaN would bias multilooked means
      upward by dropping the low tail; 0 becomes NaN only on conversion to dB.
    * DN == 0 (the zero fill outside the valid swath and between bursts) is
      nodata and becomes NaN.
    * SLC: each swath is returned as stored, bursts stacked line after line with
      their overlaps (no deburst, no mosaic); the ``burst`` coord (y) says which
      burst a line belongs to, and ``azimuth_time`` jumps back at burst edges.
      Latitude/longitude/incidence are interpolated in azimuth *time*, so lines
      in a burst overlap get the geolocation of where they really are.

    ``polarizations``: names (``"HH"``, ``["VV", "VH"]``, ``"VV,VH"``) in the
    band order wanted; None = every polarisation with a measurement file.
    ``chunks``: ``"auto"`` (~32 MiB, whole rows, aligned with the TIFF strips),
    an int, ``{"y": .., "x": ..}`` (-1 = whole axis), or None (one chunk).

    Raises InputError (naming the product and the file) for a missing manifest,
    measurement or calibration/noise file, a truncated measurement TIFF, or a
    polarisation/swath the product does not hold.
    """
    if quantity not in LUT_NAMES:
        raise ValueError(f"quantity must be one of {sorted(LUT_NAMES)}, got {quantity!r}")
    product = SafeFiles.open(path)
    requested = _requested_polarizations(polarizations, product)
    swaths = _select_swaths(product, swath)
    datasets = {
        name: _open_swath(product, name, requested, quantity, remove_noise, chunks)
        for name in swaths
    }
    if len(datasets) == 1:
        return next(iter(datasets.values()))
    tree = xr.DataTree.from_dict({f"/{name}": ds for name, ds in datasets.items()})
    tree.attrs = _product_attrs(product)
    return tree


def _requested_polarizations(
    polarizations: str | Iterable[str] | None, product: SafeFiles
) -> list[str] | None:
    if polarizations is None:
        return None
    items = polarizations.split(",") if isinstance(polarizations, str) else list(polarizations)
    names = [str(p).strip().upper() for p in items]
    unknown = [p for p, n in zip(items, names, strict=True) if n not in POLARIZATIONS]
    if unknown:
        raise InputError(
            product.path,
            f"unknown polarisation {unknown[0]!r}; expected some of {', '.join(POLARIZATIONS)}",
        )
    if not names or len(set(names)) != len(names):
        raise InputError(product.path, f"polarisations must be distinct and non-empty: {items}")
    return names


def _select_swaths(product: SafeFiles, swath: str | None) -> list[str]:
    available = product.swaths()
    if not available:
        listed = [rel for (kind, *_), rel in product.missing.items() if kind == "measurement"]
        detail = (
            f"manifest.safe lists {len(listed)} (e.g. {listed[0]}) but none exists"
            if listed
            else "manifest.safe lists none"
        )
        raise InputError(product.path, f"no measurement files: {detail}")
    if swath is None:
        return available
    name = swath.strip().upper()
    if name not in available:
        raise InputError(
            product.path,
            f"swath {swath!r} has no measurement in this product; it holds {', '.join(available)}",
        )
    return [name]


def _swath_polarizations(product: SafeFiles, swath: str, requested: list[str] | None) -> list[str]:
    present = product.polarizations(swath)
    if requested is None:
        return present
    for pol in requested:
        if pol in present:
            continue
        listed = product.missing.get(("measurement", swath, pol))
        if listed is not None:
            problem = f"{pol} measurement file {listed} is listed in manifest.safe but missing"
        else:
            problem = f"it holds no {pol} measurement"
        raise InputError(
            product.path, f"{problem} (swath {swath} has {', '.join(present) or 'none'})"
        )
    return requested


def _resolve_chunks(
    chunks: Chunks, shape: tuple[int, int], block: tuple[int, int]
) -> dict[str, int]:
    if chunks is None:
        return {"y": shape[0], "x": shape[1]}
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ValueError(f"chunks must be 'auto', an int, a mapping or None, got {chunks!r}")
        norm = dask.array.core.normalize_chunks(
            "auto", shape, limit=_AUTO_CHUNK_BYTES, dtype=np.float64, previous_chunks=block
        )
        return {"y": norm[0][0], "x": norm[1][0]}
    if isinstance(chunks, int):
        chunks = {"y": chunks, "x": chunks}
    out = {}
    for axis, size in zip(("y", "x"), shape, strict=True):
        value = int(chunks.get(axis, -1))
        out[axis] = size if value in (-1, 0) or value > size else value
    return out


def _open_pol(product: SafeFiles, swath: str, pol: str, chunks: Chunks, with_gcp: bool):
    """xarray-sentinel's measurement dataset (and geolocation grid) for one polarisation."""
    annotation_rel = product.require("annotation", swath, pol)
    measurement_rel = product.require("measurement", swath, pol)
    shape, block = check_measurement(product, measurement_rel)
    annotation = product.open_bytes(annotation_rel).getvalue()
    try:
        gcp = sentinel1.open_gcp_dataset(io.BytesIO(annotation), attrs={}) if with_gcp else None
        ds = sentinel1.open_pol_dataset(
            product.gdal_path(measurement_rel),
            io.BytesIO(annotation),
            attrs={},
            gcp=gcp,
            rasterio_chunks=_resolve_chunks(chunks, shape, block),
        )
    except (KeyError, TypeError, ValueError, ElementTree.ParseError) as exc:
        raise InputError(
            product.display(annotation_rel), f"cannot be read as a Sentinel-1 annotation ({exc})"
        ) from exc
    return ds, gcp


def _geolocation(gcp: xr.Dataset, seconds: np.ndarray) -> dict[str, Evaluate]:
    """Tie-point LUTs whose row axis is the image's own time at each tie-point line.

    Longitudes of a scene crossing the antimeridian are interpolated on [0, 360)
    and wrapped back, so pixels between 179.9 and -179.9 do not land near 0.
    """
    lines = np.clip(gcp["line"].values, 0, seconds.size - 1)
    rows = list(seconds[lines])
    pixels = [gcp["pixel"].values.astype(np.float64)] * len(rows)
    lon = gcp["longitude"].values
    crosses = np.ptp(lon) > 180.0
    if crosses:
        lon = np.where(lon < 0, lon + 360.0, lon)
    lon_lut = VectorLut.from_vectors(rows, pixels, list(lon))
    return {
        "latitude": VectorLut.from_vectors(rows, pixels, list(gcp["latitude"].values)),
        "longitude": partial(_wrap_longitude, lon_lut) if crosses else lon_lut,
        INCIDENCE_VAR: VectorLut.from_vectors(rows, pixels, list(gcp["incidenceAngle"].values)),
    }


def _wrap_longitude(lut: VectorLut, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return (lut(rows, cols) + 180.0) % 360.0 - 180.0


def _product_attrs(product: SafeFiles) -> dict:
    a = product.attrs
    return {
        "platform": f"Sentinel-1{a['number']}",
        "mode": a["mode"],
        "product": a["product_type"],
        "scene_id": product.name,
        "source": str(product.path),
        "pass": a["pass"],
        "orbit_number": a["orbit_number"],
        "relative_orbit_number": a["relative_orbit_number"],
        "start_time": a["start_time"],
        "stop_time": a["stop_time"],
    }


def _bands(
    product: SafeFiles,
    swath: str,
    pols: list[str],
    quantity: str,
    remove_noise: bool,
    chunks: Chunks,
) -> tuple[dask.array.Array, xr.Dataset, xr.Dataset, dict]:
    """The (band, y, x) radiometry graph, plus the first polarisation's dataset and tie points."""
    bands, attrs, first, gcp = [], {}, None, None
    for pol in pols:
        lut, cal_attrs = calibration_lut(product, swath, pol, quantity)
        noise_range, noise_azimuth, noise_how = noise_luts(product, swath, pol, remove_noise)
        pol_ds, pol_gcp = _open_pol(product, swath, pol, chunks, with_gcp=first is None)
        dn = pol_ds["measurement"]
        if first is None:
            first, gcp = pol_ds, pol_gcp
        elif dn.shape != first["measurement"].shape:
            raise InputError(
                product.path,
                f"{swath} {pol} measurement is {dn.shape}, "
                f"{pols[0]} is {first['measurement'].shape}",
            )
        meta = np.empty((0, 0), dtype=np.float32)
        bands.append(
            dask.array.map_blocks(
                radiometry_block, dn.data, lut, noise_range, noise_azimuth, meta=meta
            )
        )
        attrs = {**cal_attrs, "thermal_noise": noise_how}
    return dask.array.stack(bands), first, gcp, attrs


def _open_swath(
    product: SafeFiles,
    swath: str,
    requested: list[str] | None,
    quantity: str,
    remove_noise: bool,
    chunks: Chunks,
) -> xr.Dataset:
    pols = _swath_polarizations(product, swath, requested)
    image, pol_ds, gcp, lut_attrs = _bands(product, swath, pols, quantity, remove_noise, chunks)
    dn = pol_ds["measurement"]
    ny, nx = dn.shape
    azimuth_time = dn["azimuth_time"].values
    seconds = (azimuth_time - azimuth_time[0]) / np.timedelta64(1, "s")
    cols = np.arange(nx, dtype=np.float64)
    fields = {
        name: lazy_field(
            lut, seconds, cols, dn.data.chunks, np.float32 if name == INCIDENCE_VAR else float
        )
        for name, lut in _geolocation(gcp, seconds).items()
    }
    range_coord = "ground_range" if "ground_range" in dn.coords else "slant_range_time"
    coords = {
        "band": ("band", pols),
        "y": ("y", np.arange(ny)),
        "x": ("x", np.arange(nx)),
        "azimuth_time": ("y", azimuth_time),
        range_coord: (
            "x",
            dn[range_coord].values,
            {"units": "m" if range_coord == "ground_range" else "s"},
        ),
        "latitude": (("y", "x"), fields["latitude"], {"units": "degrees_north"}),
        "longitude": (("y", "x"), fields["longitude"], {"units": "degrees_east"}),
    }
    meta = pol_ds.attrs
    if meta.get("lines_per_burst"):
        coords["burst"] = ("y", (np.arange(ny) // meta["lines_per_burst"]).astype(np.int16))
    image_attrs = {
        **sar_attrs(quantity, "linear", pols),
        **lut_attrs,
        "long_name": f"{quantity} backscatter",
        "nodata": "NaN where DN == 0; negative power after noise removal clipped to 0",
    }
    angle_attrs = {"units": "degrees", "long_name": "ellipsoid incidence angle"}
    ds = xr.Dataset(
        {
            IMAGE_VAR: (("band", "y", "x"), image, image_attrs),
            INCIDENCE_VAR: (("y", "x"), fields[INCIDENCE_VAR], angle_attrs),
        },
        coords=coords,
    )
    ds.attrs = {**_product_attrs(product), "swath": swath}
    ds.attrs.update({k: meta[k] for k in _KEEP_ATTRS if k in meta})
    return ds
