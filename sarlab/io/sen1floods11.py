"""Sen1Floods11 hand-labelled flood chips (Bonafilia et al., CVPRW 2020).

Layout of the public bucket (v1.1, ``data/flood_events/HandLabeled/``)::

    S1Hand/<Event>_<chip>_S1Hand.tif       2 bands VV, VH; float32 sigma0 dB; EPSG:4326;
                                           512x512 at ~10 m; NaN where there is no data
    LabelHand/<Event>_<chip>_LabelHand.tif int16; -1 no data, 0 not water, 1 water

The S1 chips come from Google Earth Engine's ``COPERNICUS/S1_GRD`` collection (IW GRD,
thermal noise removed, calibrated, terrain corrected, in dB). The files carry no
band names or units, so this reader states them; the label's -1 becomes sarlab's
single ignore index (255) so losses and metrics treat every dataset alike.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr

from sarlab.atomic import atomic_file
from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR, check_backscatter
from sarlab.errors import InputError, UnitsError
from sarlab.io.geotiff import _read_header, open_geotiff, write_geotiff

__all__ = ["SEN1FLOODS11_FLAGS", "open_sen1floods11", "write_sen1floods11"]

PathLike = str | os.PathLike[str]
_BANDS = ["VV", "VH"]
LABEL_VAR = "water"
SEN1FLOODS11_FLAGS = {"not_water": 0, "water": 1}
_SOURCE_NODATA = -1
_NAME = re.compile(r"^(?P<event>.+)_(?P<chip>\d+)_S1[A-Za-z]*$")


def _scene(path: Path) -> dict[str, str]:
    """Event (country) and chip id from ``<Event>_<chip>_S1Hand.tif``."""
    match = _NAME.match(path.stem)
    if match is None:
        return {"scene_id": path.stem}
    return {"scene_id": f"{match['event']}_{match['chip']}", "event": match["event"]}


def _label_path_for(s1_path: Path, scene_id: str) -> Path:
    """Where the label of a chip lives: ``../LabelHand/`` in the bucket layout, else beside it."""
    name = f"{scene_id}_LabelHand.tif"
    if s1_path.parent.name.startswith("S1"):
        return s1_path.parent.parent / "LabelHand" / name
    return s1_path.parent / name


def _grids_match(a: rasterio.Affine, b: rasterio.Affine) -> bool:
    """Same pixel size, origins within half a pixel (exports round their origins)."""
    size_ok = np.allclose([a.a, a.e], [b.a, b.e], rtol=1e-6)
    return size_ok and abs(a.c - b.c) < abs(a.a) / 2 and abs(a.f - b.f) < abs(a.e) / 2


def _read_label(label_path: Path, image: xr.Dataset, s1_path: Path) -> xr.DataArray:
    hdr = _read_header(label_path)
    shape = (image.sizes["y"], image.sizes["x"])
    if hdr.count != 1:
        raise InputError(label_path, f"has {hdr.count} bands; a LabelHand chip has one")
    if hdr.shape != shape:
        raise InputError(
            label_path,
            f"label shape {hdr.shape} does not match image shape {shape} of {s1_path}",
        )
    if not _grids_match(hdr.transform, image.rio.transform()):
        raise InputError(label_path, f"label grid does not line up with image {s1_path}")
    with rasterio.open(label_path) as src:
        raw = src.read(1)
    bad = np.setdiff1d(np.unique(raw), [_SOURCE_NODATA, 0, 1])
    if bad.size:
        raise InputError(label_path, f"unexpected label values {bad.tolist()}; expected -1, 0, 1")
    water = np.where(raw == _SOURCE_NODATA, IGNORE_INDEX, raw).astype(np.uint8)
    attrs = {
        "flag_values": list(SEN1FLOODS11_FLAGS.values()),
        "flag_meanings": " ".join(SEN1FLOODS11_FLAGS),
        "ignore_index": IGNORE_INDEX,
        "source": str(label_path),
    }
    return xr.DataArray(water, dims=("y", "x"), coords={"y": image.y, "x": image.x}, attrs=attrs)


def open_sen1floods11(
    s1_path: PathLike, label_path: PathLike | None = None, *, chunks: object = None
) -> xr.Dataset:
    """Read one chip (and its hand label) in the sarlab convention.

    Without ``label_path`` the label is looked up where the dataset keeps it
    (``../LabelHand/<scene>_LabelHand.tif``, or beside the image); a chip without
    a label is returned without the ``water`` variable.
    """
    s1_path = Path(s1_path)
    ds = open_geotiff(s1_path, polarizations=_BANDS, units="dB", quantity="sigma0", chunks=chunks)
    attrs = _scene(s1_path)
    ds.attrs = {
        "platform": "Sentinel-1",
        "mode": "IW",
        "product": "GRD",
        **attrs,
        "source": str(s1_path),
        "dataset": "Sen1Floods11",
    }
    if label_path is None:
        guess = _label_path_for(s1_path, attrs["scene_id"])
        label_path = guess if guess.is_file() else None
    if label_path is not None:
        ds[LABEL_VAR] = _read_label(Path(label_path), ds, s1_path)
        ds.attrs["label_source"] = str(label_path)
    return ds


def write_sen1floods11(
    ds: xr.Dataset, s1_path: PathLike, label_path: PathLike | None = None
) -> tuple[Path, Path | None]:
    """Write a chip in the dataset's own layout (the inverse of :func:`open_sen1floods11`).

    The simulator uses this to produce look-alike chips, so the image must be VV, VH
    sigma0 in dB, and ``water`` (if present) is written as int16 with -1 for 255.
    """
    image = ds[IMAGE_VAR]
    check_backscatter(image)
    if [str(b) for b in image["band"].values] != _BANDS:
        raise UnitsError(f"Sen1Floods11 chips hold bands {_BANDS}; got {image['band'].values}")
    if (image.attrs["quantity"], image.attrs["units"]) != ("sigma0", "dB"):
        raise UnitsError(
            f"Sen1Floods11 chips hold sigma0 in dB; got {image.attrs['quantity']} in "
            f"{image.attrs['units']}: convert explicitly first"
        )
    s1_path = Path(s1_path)
    write_geotiff(ds[[IMAGE_VAR]], s1_path, cog=False)
    if LABEL_VAR not in ds:
        return s1_path, None
    water = np.asarray(ds[LABEL_VAR].transpose("y", "x").values)
    bad = np.setdiff1d(np.unique(water), [0, 1, IGNORE_INDEX])
    if bad.size:
        raise ValueError(f"water label holds {bad.tolist()}; expected 0, 1 or {IGNORE_INDEX}")
    raw = np.where(water == IGNORE_INDEX, _SOURCE_NODATA, water.astype(np.int16)).astype(np.int16)
    if label_path is None:
        label_path = _label_path_for(s1_path, _scene(s1_path)["scene_id"])
    label_path = Path(label_path)
    profile = {
        "driver": "GTiff",
        "dtype": "int16",
        "count": 1,
        "height": raw.shape[0],
        "width": raw.shape[1],
        "crs": ds.rio.crs,
        "transform": ds.rio.transform(),
        "nodata": _SOURCE_NODATA,
        "compress": "deflate",
    }
    with atomic_file(label_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(raw, 1)
    return s1_path, label_path
