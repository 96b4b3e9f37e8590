"""One scene of a chip store: open it with the right reader, check it, describe it.

The build opens every scene once, lazily, before any pixel is read, so that a
wrong unit, band order or missing geo-reference fails in seconds and names the
scene, not after hours of chipping. The same :class:`SceneInfo` travels to the
worker that cuts the scene (:mod:`sarlab.chips_part`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sarlab.conventions import IMAGE_VAR, INCIDENCE_VAR, check_backscatter
from sarlab.errors import InputError, UnitsError
from sarlab.geo import crs_string

__all__ = [
    "READERS",
    "SceneInfo",
    "check_same_kind",
    "inspect_scene",
    "open_scene",
    "resolve_reader",
]

# Layout name -> reader, by import path so that a worker process imports only what it uses.
READERS: dict[str, str] = {
    "geotiff": "sarlab.io.geotiff:open_geotiff",
    "ai4arctic": "sarlab.io.ai4arctic:open_ai4arctic",
    "sen1floods11": "sarlab.io.sen1floods11:open_sen1floods11",
    "bigearthnet": "sarlab.io.bigearthnet:open_bigearthnet_s1",
}
_BY_SUFFIX = {".tif": "geotiff", ".tiff": "geotiff", ".nc": "ai4arctic"}
LAT, LON = "latitude", "longitude"

Reader = Callable[..., xr.Dataset]


def resolve_reader(reader: str | Reader | None, path: str | os.PathLike[str] | None) -> Reader:
    """A reader function from a layout name, ``"module:function"``, a callable or a file suffix."""
    if callable(reader):
        return reader
    if reader is None:
        suffix = Path(path).suffix.lower() if path is not None else ""
        if suffix not in _BY_SUFFIX:
            raise InputError(
                path,
                f"cannot tell which reader opens this; pass reader= one of {sorted(READERS)} "
                "or 'module:function'",
            )
        reader = _BY_SUFFIX[suffix]
    target = READERS.get(reader, reader)
    module_name, sep, func_name = target.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(
            f"unknown reader {reader!r}; expected one of {sorted(READERS)} or 'module:function'"
        )
    try:
        return getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"reader {reader!r} ({target}) cannot be imported: {err}") from err


@dataclass
class SceneInfo:
    """What the build needs to know about one scene, without its pixels."""

    position: int
    scene_id: str
    source: str
    item: Any  # the path, or the in-memory Dataset
    reader: str | Reader | None
    reader_kwargs: dict[str, Any]
    bands: list[str]
    quantity: str
    units: str
    shape: tuple[int, int]
    crs: str | None
    transform: tuple[float, ...] | None
    label_vars: list[str]
    label_attrs: dict[str, dict[str, Any]]
    has_incidence: bool
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """How messages name the scene: its id and where it came from."""
        return f"scene {self.scene_id!r} ({self.source})"

    @property
    def key(self) -> str:
        """A folder name for the scene's part: readable, filesystem-safe and unique."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.scene_id)[:60]
        digest = hashlib.sha1(self.scene_id.encode("utf-8")).hexdigest()[:10]
        return f"{safe}-{digest}"


def open_scene(info_or_item: SceneInfo | Any, reader=None, reader_kwargs=None) -> xr.Dataset:
    """The scene as a (lazy) sarlab Dataset: in-memory Datasets pass through."""
    if isinstance(info_or_item, SceneInfo):
        item, reader, reader_kwargs = (
            info_or_item.item,
            info_or_item.reader,
            info_or_item.reader_kwargs,
        )
    else:
        item = info_or_item
    if isinstance(item, xr.Dataset):
        return item
    open_fn = resolve_reader(reader, item)
    return open_fn(item, **(reader_kwargs or {}))


def _json_safe(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _label_vars(ds: xr.Dataset) -> list[str]:
    """Integer (y, x) data variables: the per-pixel labels of the convention."""
    return [
        str(name)
        for name, var in ds.data_vars.items()
        if name not in (IMAGE_VAR, INCIDENCE_VAR)
        and set(var.dims) == {"y", "x"}
        and np.issubdtype(var.dtype, np.integer)
    ]


def _georeference(ds: xr.Dataset, source: str, shape: tuple[int, int]):
    crs = ds.rio.crs
    if crs is not None:
        return crs_string(crs), tuple(ds.rio.transform())[:6]
    if LAT in ds.variables and LON in ds.variables:
        for name in (LAT, LON):
            var = ds[name]
            if set(var.dims) != {"y", "x"} or var.transpose("y", "x").shape != shape:
                raise InputError(
                    source,
                    f"{name} has dims {var.dims} and shape {var.shape}; radar-geometry "
                    f"footprints need 2-D (y, x) coordinates of the image's shape {shape}",
                )
        return None, None
    raise InputError(
        source,
        "has no geo-reference (neither a rioxarray CRS nor 2-D latitude/longitude); "
        "every chip must keep its footprint",
    )


def inspect_scene(
    item: Any,
    position: int,
    reader: str | Reader | None = None,
    reader_kwargs: Mapping[str, Any] | None = None,
) -> SceneInfo:
    """Open one scene lazily and check it follows the convention; raise naming it if not."""
    in_memory = isinstance(item, xr.Dataset)
    where = None if in_memory else str(item)
    ds = open_scene(item, reader, reader_kwargs)
    try:
        source = str(ds.attrs.get("source") or where or f"in-memory scene #{position}")
        if IMAGE_VAR not in ds:
            raise InputError(source, f"has no {IMAGE_VAR!r} variable; not a sarlab scene")
        image = ds[IMAGE_VAR]
        if set(image.dims) != {"band", "y", "x"}:
            raise InputError(source, f"{IMAGE_VAR} has dims {image.dims}; expected (band, y, x)")
        try:
            check_backscatter(image)
        except UnitsError as err:
            raise UnitsError(f"{source}: {err}") from err
        shape = (image.sizes["y"], image.sizes["x"])
        if INCIDENCE_VAR in ds and set(ds[INCIDENCE_VAR].dims) != {"y", "x"}:
            raise InputError(source, f"{INCIDENCE_VAR} has dims {ds[INCIDENCE_VAR].dims}")
        crs, transform = _georeference(ds, source, shape)
        scene_id = str(ds.attrs.get("scene_id") or "")
        if not scene_id:
            scene_id = Path(where).stem if where else f"scene{position:04d}"
        labels = _label_vars(ds)
        return SceneInfo(
            position=position,
            scene_id=scene_id,
            source=source,
            item=item,
            reader=reader,
            reader_kwargs=dict(reader_kwargs or {}),
            bands=image.attrs["polarization"].split(","),
            quantity=image.attrs["quantity"],
            units=image.attrs["units"],
            shape=shape,
            crs=crs,
            transform=transform,
            label_vars=labels,
            label_attrs={
                name: {
                    k: _json_safe(ds[name].attrs[k])
                    for k in ("flag_values", "flag_meanings")
                    if k in ds[name].attrs
                }
                for name in labels
            },
            has_incidence=INCIDENCE_VAR in ds,
            attrs={k: str(ds.attrs[k]) for k in ("platform", "mode", "product") if k in ds.attrs},
        )
    finally:
        if not in_memory:
            ds.close()


def check_same_kind(scenes: list[SceneInfo]) -> None:
    """Refuse scenes of different quantity, units or band order, naming the odd one out."""
    ref = scenes[0]
    for scene in scenes[1:]:
        for what in ("quantity", "units", "bands"):
            mine, theirs = getattr(scene, what), getattr(ref, what)
            if mine != theirs:
                raise UnitsError(
                    f"{scene.name} has {what} {mine} but {ref.name} has {theirs}; "
                    "one chip store holds one kind of data: convert or reorder explicitly first"
                )
