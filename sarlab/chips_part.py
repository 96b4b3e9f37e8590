"""Cut one scene into chips and write them as one finished "part" of a chip store.

A part is the unit of work and of resumption: one scene, one folder, written
atomically, so a crashed build keeps every finished scene and redoes none of
them. The scene is read in strips of ``size`` rows, so memory stays at one strip
however large the scene is.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine

from sarlab.atomic import atomic_directory, atomic_write_json
from sarlab.chips_format import FORMAT_VERSION, TABLE, create_arrays
from sarlab.chips_scene import LAT, LON, SceneInfo, open_scene
from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR, INCIDENCE_VAR
from sarlab.errors import InputError
from sarlab.geo import (
    latlon_centre,
    latlon_footprint,
    window_centre,
    window_footprint,
    window_transform,
)

__all__ = [
    "COLUMNS",
    "PART_ARRAYS",
    "PART_META",
    "ChipConfig",
    "chip_windows",
    "read_part_meta",
    "write_part",
]

PART_META = "part.json"
PART_ARRAYS = "arrays"
COLUMNS = [
    "chip_id",
    "scene_id",
    "source",
    "row",
    "col",
    "height",
    "width",
    "valid_fraction",
    "source_crs",
    "affine",
    "lon",
    "lat",
    "footprint",
    "platform",
    "mode",
    "product",
]


@dataclass(frozen=True)
class ChipConfig:
    """Everything that decides a part's content; a part built under another config is redone."""

    size: int
    stride: int
    min_valid: float
    bands: tuple[str, ...]
    quantity: str
    units: str
    label_vars: tuple[str, ...]
    incidence: bool
    compression: str

    def fingerprint(self) -> dict[str, Any]:
        """JSON form, compared on resume."""
        return {"format_version": FORMAT_VERSION, **asdict(self)} | {
            "bands": list(self.bands),
            "label_vars": list(self.label_vars),
        }


def chip_windows(shape: tuple[int, int], size: int, stride: int) -> tuple[range, range]:
    """Top-left rows and columns of the chips that fit entirely in a (height, width) scene."""
    height, width = shape
    return range(0, height - size + 1, stride), range(0, width - size + 1, stride)


def _strip(ds: xr.Dataset, name: str, rows: slice) -> np.ndarray:
    var = ds[name]
    order = ("band", "y", "x") if "band" in var.dims else ("y", "x")
    return np.asarray(var.transpose(*order).isel(y=rows).values)


def _labels_strip(
    ds: xr.Dataset, info: SceneInfo, names: tuple[str, ...], rows: slice
) -> np.ndarray:
    height, width = rows.stop - rows.start, info.shape[1]
    out = np.full((len(names), height, width), IGNORE_INDEX, dtype=np.uint8)
    for k, name in enumerate(names):
        if name not in ds:
            continue  # a scene without this label is unlabelled: ignore everywhere
        values = _strip(ds, name, rows)
        if values.dtype != np.uint8:
            if values.size and (values.min() < 0 or values.max() > 255):
                raise InputError(
                    info.source,
                    f"label {name!r} has values outside 0..255 "
                    f"({values.min()}..{values.max()}); readers map nodata to {IGNORE_INDEX}",
                )
            values = values.astype(np.uint8)
        out[k] = values
    return out


def _geometry(
    info: SceneInfo,
    latlon: tuple[np.ndarray, np.ndarray] | None,
    row: int,
    col: int,
    size: int,
) -> dict[str, Any]:
    """Footprint, centre, chip affine and CRS of one chip."""
    if info.crs is not None:
        transform = Affine(*info.transform)
        footprint = window_footprint(transform, info.crs, row, col, size, size)
        lon, lat = window_centre(transform, info.crs, row, col, size, size)
        chip_transform = list(window_transform(transform, row, col))[:6]
    else:
        lat_strip, lon_strip = latlon
        footprint = latlon_footprint(lat_strip, lon_strip, 0, col, size, size)
        lon, lat = latlon_centre(lat_strip, lon_strip, 0, col, size, size)
        chip_transform = None
    return {
        "source_crs": info.crs,
        "affine": chip_transform,
        "lon": lon,
        "lat": lat,
        "footprint": footprint.wkb,
    }


def _cut(ds: xr.Dataset, info: SceneInfo, config: ChipConfig, out: Path) -> int:
    size = config.size
    rows, cols = chip_windows(info.shape, size, config.stride)
    arrays = create_arrays(
        out / PART_ARRAYS,
        len(rows) * len(cols),
        bands=len(config.bands),
        size=size,
        n_labels=len(config.label_vars),
        incidence=config.incidence,
        compression=config.compression,
    )
    records: list[dict[str, Any]] = []
    for row in rows:
        ysl = slice(row, row + size)
        image = _strip(ds, IMAGE_VAR, ysl).astype(np.float32, copy=False)
        finite = np.isfinite(image).all(axis=0)
        keep = [
            (col, float(finite[:, col : col + size].mean()))
            for col in cols
            if finite[:, col : col + size].mean() >= config.min_valid
        ]
        if not keep:
            continue
        start, stop = len(records), len(records) + len(keep)
        arrays["image"][start:stop] = np.stack([image[:, :, c : c + size] for c, _ in keep])
        if config.incidence:
            angle = _strip(ds, INCIDENCE_VAR, ysl).astype(np.float32, copy=False)
            arrays["incidence"][start:stop] = np.stack([angle[:, c : c + size] for c, _ in keep])
        if config.label_vars:
            labels = _labels_strip(ds, info, config.label_vars, ysl)
            arrays["labels"][start:stop] = np.stack([labels[:, :, c : c + size] for c, _ in keep])
        latlon = None if info.crs is not None else (_strip(ds, LAT, ysl), _strip(ds, LON, ysl))
        for col, valid in keep:
            records.append(
                {
                    "chip_id": f"{info.scene_id}_r{row:05d}_c{col:05d}",
                    "scene_id": info.scene_id,
                    "source": info.source,
                    "row": row,
                    "col": col,
                    "height": size,
                    "width": size,
                    "valid_fraction": valid,
                    **_geometry(info, latlon, row, col, size),
                    **{k: info.attrs.get(k) for k in ("platform", "mode", "product")},
                }
            )
    n = len(records)
    for arr in arrays.values():
        arr.resize((n, *arr.shape[1:]))
    table = pd.DataFrame.from_records(records, columns=COLUMNS)
    table.to_parquet(out / TABLE, index=False)
    return n


def write_part(info: SceneInfo, config: ChipConfig, part_dir: Path) -> int:
    """Chip one scene into ``part_dir`` (which appears only when complete); returns the count."""
    # Parallelism is across scenes; within one, dask-backed readers run in this thread.
    with dask.config.set(scheduler="synchronous"):
        ds = open_scene(info)
        try:
            with atomic_directory(part_dir, overwrite=True) as tmp:
                n = _cut(ds, info, config, tmp)
                meta = {
                    "scene_id": info.scene_id,
                    "source": info.source,
                    "n_chips": n,
                    "config": config.fingerprint(),
                }
                atomic_write_json(tmp / PART_META, meta)
        finally:
            if not isinstance(info.item, xr.Dataset):
                ds.close()
    return n


def read_part_meta(part_dir: Path) -> dict[str, Any] | None:
    """The finished part's metadata, or None where there is no finished part."""
    path = part_dir / PART_META
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None
