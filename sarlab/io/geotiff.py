"""Sentinel-1 GeoTIFF / COG reader and writer.

GeoTIFFs rarely say what their pixels are: a dB file and a linear file look the
same to GDAL. The reader therefore takes units, quantity and polarisations from
the caller or from the file's own tags and refuses to guess; the writer records
them so that its files read back without help.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import dask.array
import numpy as np
import rasterio
import rioxarray
import xarray as xr
from rasterio.errors import RasterioError

from sarlab.atomic import atomic_file
from sarlab.conventions import (
    IMAGE_VAR,
    INCIDENCE_VAR,
    POLARIZATIONS,
    QUANTITIES,
    check_backscatter,
)
from sarlab.errors import InputError, UnitsError

__all__ = ["open_geotiff", "parse_s1_name", "write_geotiff"]

PathLike = str | os.PathLike[str]
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ANGLE_WORDS = ("incid", "angle", "theta")
_UNITS = {"db": "dB", "decibel": "dB", "decibels": "dB", "linear": "linear", "lin": "linear"}
_QUANTITY_ALIASES = {"sigmanought": "sigma0", "gammanought": "gamma0", "betanought": "beta0"}
_DEGREES = ("deg", "degree", "degrees")
_RADIANS = ("rad", "radian", "radians")
_S1_NAME = re.compile(
    r"(?P<mission>S1[A-D])_(?P<mode>IW|EW|WV|S[1-6])_(?P<product>GRD|SLC|RAW|OCN)"
    r"(?P<resolution>[FHM_])_(?P<level>\d)(?P<cls>[SA])(?P<pol>SH|SV|DH|DV|HH|HV|VV|VH)"
    r"_(?P<start>\d{8}T\d{6})"
)
_POL_FIELD = {"SH": "HH", "SV": "VV", "DH": "HH,HV", "DV": "VV,VH"}
_SCENE_KEYS = ("platform", "mode", "product", "scene_id")


@dataclass(frozen=True)
class _Header:
    """What one GeoTIFF says about itself, read without touching the pixels."""

    path: Path
    count: int
    shape: tuple[int, int]
    block_shape: tuple[int, int]
    crs: rasterio.crs.CRS | None
    transform: rasterio.Affine
    nodata: float | None
    descriptions: tuple[str | None, ...]
    tags: dict[str, str]
    band_tags: tuple[dict[str, str], ...]
    band_units: tuple[str, ...]


def parse_s1_name(name: str) -> dict[str, str]:
    """Platform, mode, product, start time and polarisations from a Sentinel-1 product name.

    Many datasets keep only the product name (``S1A_IW_GRDH_1SDV_20170613T165043_...``);
    it is the one reliable record of what was acquired. Returns {} when no name is found.
    """
    match = _S1_NAME.search(name)
    if match is None:
        return {}
    mode = match["mode"]
    return {
        "platform": f"Sentinel-1{match['mission'][-1]}",
        "mode": "SM" if mode.startswith("S") else mode,
        "product": match["product"],
        "start_time": datetime.strptime(match["start"], "%Y%m%dT%H%M%S").isoformat(),
        "polarizations": _POL_FIELD.get(match["pol"], match["pol"]),
    }


def _lower_keys(tags: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in tags.items()}


def _check_complete(src: rasterio.DatasetReader, path: Path) -> None:
    """Fail now, not deep inside a dask graph, when the file was cut short."""
    size = path.stat().st_size
    height, width = src.shape
    for bidx in src.indexes:
        bh, bw = src.block_shapes[bidx - 1]
        ny, nx = -(-height // bh), -(-width // bw)
        offset = src.get_tag_item(f"BLOCK_OFFSET_{nx - 1}_{ny - 1}", "TIFF", bidx=bidx)
        nbytes = src.get_tag_item(f"BLOCK_SIZE_{nx - 1}_{ny - 1}", "TIFF", bidx=bidx)
        if offset and nbytes and int(offset) + int(nbytes) > size:
            raise InputError(
                path,
                f"truncated: band {bidx} needs {int(offset) + int(nbytes)} bytes but the file "
                f"has {size}; download it again",
            )
        src.read(bidx, window=src.block_window(bidx, ny - 1, nx - 1))


def _read_header(path: PathLike) -> _Header:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic not in _TIFF_MAGIC:
        raise InputError(path, f"not a TIFF file (it starts with {magic!r}); expected a GeoTIFF")
    try:
        with rasterio.open(path) as src:
            _check_complete(src, path)
            return _Header(
                path=path,
                count=src.count,
                shape=src.shape,
                block_shape=src.block_shapes[0],
                crs=src.crs,
                transform=src.transform,
                nodata=src.nodata,
                descriptions=tuple(src.descriptions),
                tags=_lower_keys(src.tags()),
                band_tags=tuple(_lower_keys(src.tags(i)) for i in src.indexes),
                band_units=tuple(u or "" for u in src.units),
            )
    except RasterioError as exc:
        raise InputError(
            path, f"cannot be read as a GeoTIFF, truncated or corrupt ({exc})"
        ) from exc


def _normalize_pol(value: str, path: PathLike | None) -> str:
    name = str(value).strip().upper()
    if name not in POLARIZATIONS:
        raise InputError(
            path, f"unknown polarisation {value!r}; expected one of {', '.join(POLARIZATIONS)}"
        )
    return name


def _is_angle(text: str | None) -> bool:
    return bool(text) and any(word in text.lower() for word in _ANGLE_WORDS)


def _pol_in_text(text: str | None) -> str | None:
    """The polarisation a free-text name mentions (``sigma0_VV`` -> VV), if exactly one."""
    if not text:
        return None
    found = {t for t in re.split(r"[^A-Za-z0-9]+", text.upper()) if t in POLARIZATIONS}
    return found.pop() if len(found) == 1 else None


def _band_kind(hdr: _Header, i: int) -> str | None:
    """Polarisation name, INCIDENCE_VAR, or None when the file does not say."""
    tags = hdr.band_tags[i]
    for key in ("polarization", "polarisation"):
        if key in tags:
            return _normalize_pol(tags[key], hdr.path)
    desc = hdr.descriptions[i]
    if _is_angle(desc):
        return INCIDENCE_VAR
    return _pol_in_text(desc)


def _units_value(value: str, path: Path | None) -> str:
    key = value.strip().lower()
    if key not in _UNITS:
        raise InputError(path, f"unrecognised units tag {value!r}; expected dB or linear")
    return _UNITS[key]


def _quantity_value(value: str, path: Path | None) -> str:
    key = re.sub(r"[^a-z0-9]", "", value.lower())
    key = _QUANTITY_ALIASES.get(key, key)
    if key not in QUANTITIES:
        raise InputError(path, f"unrecognised quantity tag {value!r}; expected one of {QUANTITIES}")
    return key


def _file_says(hdr: _Header, bands: Sequence[int], key: str) -> set[str]:
    """Every value the file states for ``key`` (dataset tag, band tags, GDAL band units)."""
    norm = _units_value if key == "units" else _quantity_value
    keys = ("units", "unit") if key == "units" else ("quantity",)
    stated = [hdr.tags[k] for k in keys if k in hdr.tags]
    for i in bands:
        stated += [hdr.band_tags[i][k] for k in keys if k in hdr.band_tags[i]]
        if key == "units" and hdr.band_units[i]:
            stated.append(hdr.band_units[i])
    return {norm(v, hdr.path) for v in stated if v.strip()}


def _resolve(key: str, caller: str | None, hdrs: Sequence[tuple[_Header, Sequence[int]]]) -> str:
    """Caller's value or the files' value; disagreement and silence are both errors."""
    first, seen = None, None
    for hdr, bands in hdrs:
        said = _file_says(hdr, bands, key)
        if len(said) > 1:
            raise InputError(hdr.path, f"the file states conflicting {key}: {sorted(said)}")
        if said:
            value = said.pop()
            if caller is not None and value != caller:
                raise InputError(
                    hdr.path, f"{key}={caller!r} was given but the file says {value!r}"
                )
            if seen is not None and value != seen:
                raise InputError(hdr.path, f"says {key} {value!r} but {first} says {seen!r}")
            first, seen = hdr.path, value
    if caller is not None:
        return caller
    if seen is None:
        hint = "units='dB' or units='linear'" if key == "units" else "quantity='sigma0' (…)"
        raise InputError(hdrs[0][0].path, f"the file does not state its {key}; pass {hint}")
    return seen


def _angle_scale(hdr: _Header, i: int) -> float:
    unit = (hdr.band_tags[i].get("units") or hdr.band_units[i] or "deg").strip().lower()
    if unit in _DEGREES:
        return 1.0
    if unit in _RADIANS:
        return 180.0 / math.pi
    raise InputError(hdr.path, f"incidence angle band has units {unit!r}; expected degrees")


def _chunks(hdr: _Header, nbands: int, chunks: object) -> object:
    """Dask chunks aligned with the file's blocks (rioxarray's own 'auto' path is deprecated)."""
    if chunks != "auto":
        return chunks
    shape = (nbands, *hdr.shape)
    norm = dask.array.core.normalize_chunks(
        "auto", shape, dtype=np.float32, previous_chunks=(1, *hdr.block_shape)
    )
    return {"band": norm[0], "y": norm[1], "x": norm[2]}


def _load(hdr: _Header, bands: Sequence[int], chunks: object, nodata: float | None) -> xr.DataArray:
    """Lazily read ``bands`` (0-based) as float32 (band, y, x) with nodata -> NaN."""
    da = rioxarray.open_rasterio(hdr.path, chunks=_chunks(hdr, hdr.count, chunks))
    da = da.isel(band=list(bands)).astype(np.float32).drop_vars("spatial_ref")
    for value in {hdr.nodata, nodata} - {None}:
        if not np.isnan(value):
            da = da.where(da != value)
    da.attrs = {}
    da.encoding = {}
    return da


def _single_file(
    path: PathLike, pols: list[str] | None
) -> tuple[_Header, list[int], list[str], int | None]:
    hdr = _read_header(path)
    kinds = [_band_kind(hdr, i) for i in range(hdr.count)]
    angles = [i for i, kind in enumerate(kinds) if kind == INCIDENCE_VAR]
    if len(angles) > 1:
        raise InputError(
            hdr.path, f"bands {[i + 1 for i in angles]} all look like incidence angles"
        )
    bands = [i for i in range(hdr.count) if i not in angles]
    if pols is None:
        pols = []
        for i in bands:
            if kinds[i] is None:
                raise InputError(
                    hdr.path,
                    f"band {i + 1} ({hdr.descriptions[i] or 'no description'}) names no "
                    f"polarisation ({', '.join(POLARIZATIONS)}); pass polarizations=[...]",
                )
            pols.append(kinds[i])
    elif len(pols) != len(bands):
        raise InputError(
            hdr.path,
            f"has {len(bands)} backscatter band(s) but polarizations={pols} names {len(pols)}",
        )
    for i, pol in zip(bands, pols, strict=True):
        if kinds[i] is not None and kinds[i] != pol:
            raise InputError(
                hdr.path, f"band {i + 1} is {kinds[i]} in the file but {pol} was given"
            )
    return hdr, bands, pols, (angles[0] if angles else None)


def _as_items(path_or_paths: object, pols: list[str] | None) -> list[tuple[str | None, Path]]:
    if isinstance(path_or_paths, Mapping):
        if pols is not None:
            raise InputError(
                None, "give polarisations as the dict keys or as polarizations=, not both"
            )
        items = []
        for key, path in path_or_paths.items():
            kind = INCIDENCE_VAR if _is_angle(str(key)) else _normalize_pol(str(key), Path(path))
            items.append((kind, Path(path)))
        return items
    paths = [Path(p) for p in path_or_paths]
    if pols is not None and len(pols) != len(paths):
        raise InputError(None, f"{len(paths)} files but polarizations={pols} names {len(pols)}")
    return list(zip(pols or [None] * len(paths), paths, strict=True))


def _many_files(path_or_paths: object, pols: list[str] | None):
    """One single-band file per polarisation (and optionally one incidence-angle file)."""
    found: dict[str, _Header] = {}
    for given, path in _as_items(path_or_paths, pols):
        hdr = _read_header(path)
        if hdr.count != 1:
            raise InputError(path, f"has {hdr.count} bands; a per-polarisation file holds one")
        in_file = _band_kind(hdr, 0)
        if in_file is None:
            in_file = INCIDENCE_VAR if _is_angle(path.stem) else _pol_in_text(path.stem)
        if given is not None and in_file is not None and given != in_file:
            raise InputError(path, f"holds {in_file} according to the file, but {given} was given")
        kind = given or in_file
        if kind is None:
            raise InputError(path, "the polarisation is not in the file or its name; pass a dict")
        if kind in found:
            raise InputError(path, f"{kind} given twice (also {found[kind].path})")
        ref = next(iter(found.values()), None)
        if ref is not None:
            for what in ("shape", "crs", "transform"):
                mine, theirs = getattr(hdr, what), getattr(ref, what)
                if mine != theirs:
                    show = (lambda v: tuple(v)[:6]) if what == "transform" else str
                    raise InputError(
                        path,
                        f"{what} {show(mine)} differs from {show(theirs)} in {ref.path}; "
                        "per-polarisation files must share one grid",
                    )
        found[kind] = hdr
    if not set(found) - {INCIDENCE_VAR}:
        raise InputError(None, "no backscatter file given")
    return found


def open_geotiff(
    path_or_paths: PathLike | Sequence[PathLike] | Mapping[str, PathLike],
    *,
    polarizations: Sequence[str] | None = None,
    units: str | None = None,
    quantity: str | None = None,
    chunks: object = "auto",
    nodata: float | None = None,
) -> xr.Dataset:
    """Read Sentinel-1 backscatter from one multi-band GeoTIFF or one file per polarisation.

    Returns the sarlab convention: lazy float32 ``backscatter`` (band, y, x) with NaN
    for nodata (the file's value and/or ``nodata``), rioxarray CRS and transform, and
    ``incidence_angle`` in degrees where a band or file is named like one.
    """
    pols = None if polarizations is None else [_normalize_pol(p, None) for p in polarizations]
    if pols is not None and len(set(pols)) != len(pols):
        raise InputError(None, f"polarizations={pols} repeats a polarisation")
    units = None if units is None else _units_value(units, None)
    quantity = None if quantity is None else _quantity_value(quantity, None)
    angle = None
    if isinstance(path_or_paths, (str, os.PathLike)):
        hdr, bands, pols, angle_band = _single_file(path_or_paths, pols)
        checks = [(hdr, bands)]
        image = _load(hdr, bands, chunks, nodata)
        if angle_band is not None:
            angle = _load(hdr, [angle_band], chunks, nodata)[0] * _angle_scale(hdr, angle_band)
        sources = [hdr.path]
    else:
        found = _many_files(path_or_paths, pols)
        pols = [k for k in found if k != INCIDENCE_VAR]
        checks = [(found[p], [0]) for p in pols]
        hdr = found[pols[0]]
        image = xr.concat([_load(found[p], [0], chunks, nodata) for p in pols], dim="band")
        if INCIDENCE_VAR in found:
            ahdr = found[INCIDENCE_VAR]
            angle = _load(ahdr, [0], chunks, nodata)[0] * _angle_scale(ahdr, 0)
        sources = [h.path for h in found.values()]
    units = _resolve("units", units, checks)
    quantity = _resolve("quantity", quantity, checks)
    image = image.assign_coords(band=pols)
    image.attrs = {"quantity": quantity, "units": units, "polarization": ",".join(pols)}
    data = {IMAGE_VAR: image}
    if angle is not None:
        data[INCIDENCE_VAR] = angle.drop_vars("band").astype(np.float32)
        data[INCIDENCE_VAR].attrs = {"units": "degrees", "long_name": "incidence angle"}
    ds = xr.Dataset(data)
    if hdr.crs is not None:
        ds = ds.rio.write_crs(hdr.crs)
    ds = ds.rio.write_transform(hdr.transform)
    attrs = parse_s1_name(hdr.path.name) or parse_s1_name(str(hdr.path.parent))
    attrs.pop("polarizations", None)
    attrs["scene_id"] = re.sub(r"[_-](HH|HV|VV|VH)$", "", hdr.path.stem, flags=re.IGNORECASE)
    attrs.update({k: hdr.tags[k] for k in _SCENE_KEYS if k in hdr.tags})
    attrs["source"] = ",".join(str(p) for p in sources)
    ds.attrs = attrs
    return ds


def write_geotiff(ds: xr.Dataset, path: PathLike, cog: bool = True) -> Path:
    """Write backscatter (+ incidence angle) so that :func:`open_geotiff` reads it back alone.

    Band descriptions, per-band polarisation tags and units/quantity tags travel in
    the file; NaN is the nodata value; the file appears only once complete.
    """
    image = ds[IMAGE_VAR]
    check_backscatter(image)
    if image.dims != ("band", "y", "x"):
        raise UnitsError(f"backscatter dims are {image.dims}; expected ('band', 'y', 'x')")
    pols = [str(b) for b in image["band"].values]
    layers = [(p, image.sel(band=p), image.attrs["units"]) for p in pols]
    if INCIDENCE_VAR in ds:
        layers.append((INCIDENCE_VAR, ds[INCIDENCE_VAR].transpose("y", "x"), "degrees"))
    height, width = image.sizes["y"], image.sizes["x"]
    profile = {
        "driver": "COG" if cog else "GTiff",
        "dtype": "float32",
        "count": len(layers),
        "height": height,
        "width": width,
        "crs": ds.rio.crs,
        "transform": ds.rio.transform(),
        "nodata": np.nan,
        "compress": "deflate",
        "predictor": 3,
    }
    if not cog and min(height, width) >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    tags = {"UNITS": image.attrs["units"], "QUANTITY": image.attrs["quantity"]}
    tags.update({k.upper(): str(ds.attrs[k]) for k in _SCENE_KEYS if k in ds.attrs})
    path = Path(path)
    with atomic_file(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.update_tags(**tags)
        for bidx, (name, layer, unit) in enumerate(layers, start=1):
            dst.write(np.asarray(layer.values, dtype=np.float32), bidx)
            dst.set_band_description(bidx, name)
            dst.set_band_unit(bidx, unit)
            if name != INCIDENCE_VAR:
                dst.update_tags(bidx, POLARIZATION=name)
    return path
