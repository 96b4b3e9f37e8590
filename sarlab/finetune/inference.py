"""Whole-scene prediction: overlapping windows blended with Hann weights, plus entropy.

Tiles are the chip size the model was trained on; each tile's class probabilities
are weighted by a 2-D Hann window (floored so scene borders still count) and the
weighted sum is divided by the summed weights, which removes the seams a plain
mosaic of tiles shows. The entropy of the blended probabilities is the
uncertainty layer. :func:`write_prediction` writes a Cloud-Optimised GeoTIFF with
the scene's CRS and transform; a scene without a CRS (radar geometry) goes to
NetCDF with its latitude/longitude coordinates instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
import xarray as xr
from torch import nn

from sarlab.atomic import atomic_file
from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR, INCIDENCE_VAR
from sarlab.errors import InputError, UnitsError
from sarlab.preprocess.normalize import BandStats

__all__ = [
    "blend_weights",
    "predict_array",
    "predict_scene",
    "tile_starts",
    "write_prediction",
]


def blend_weights(size: int, floor: float = 1e-3) -> np.ndarray:
    """``(size, size)`` outer product of a Hann window (no zero ends), at least ``floor``."""
    w = np.hanning(size + 2)[1:-1]
    return np.maximum(np.outer(w, w), floor).astype(np.float64)


def tile_starts(length: int, tile: int, stride: int) -> list[int]:
    """Window starts covering ``[0, length)``: every ``stride``, the last flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


@torch.no_grad()
def predict_array(
    model: nn.Module,
    image: np.ndarray,
    tile: int,
    overlap: float = 0.5,
    incidence: np.ndarray | None = None,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Blended class probabilities ``{task: (K, H, W)}`` of a normalised ``(C, H, W)`` image.

    NaN pixels are filled with 0 (the band mean after normalisation) as in training.
    Scenes smaller than a tile are padded by reflection and cropped back.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    image = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0)
    _, h, w = image.shape
    ph, pw = max(0, tile - h), max(0, tile - w)
    if ph or pw:
        image = np.pad(image, ((0, 0), (0, ph), (0, pw)), mode="reflect")
        if incidence is not None:
            incidence = np.pad(incidence, ((0, ph), (0, pw)), mode="reflect")
    hh, ww = image.shape[1:]
    stride = max(1, round(tile * (1 - overlap)))
    windows = [(r, c) for r in tile_starts(hh, tile, stride) for c in tile_starts(ww, tile, stride)]
    weight = blend_weights(tile)
    acc: dict[str, np.ndarray] = {}
    total = np.zeros((hh, ww))
    model.eval().to(device)
    for i in range(0, len(windows), batch_size):
        chunk = windows[i : i + batch_size]
        x = torch.from_numpy(np.stack([image[:, r : r + tile, c : c + tile] for r, c in chunk]))
        inc = None
        if incidence is not None:
            inc = torch.from_numpy(
                np.stack([incidence[r : r + tile, c : c + tile] for r, c in chunk]).astype(
                    np.float32
                )
            ).to(device)
        out = model(x.to(device), inc)
        for task, logits in out.items():
            probs = logits.float().softmax(1).cpu().numpy().astype(np.float64)
            dest = acc.setdefault(task, np.zeros((probs.shape[1], hh, ww)))
            for (r, c), p in zip(chunk, probs, strict=True):
                dest[:, r : r + tile, c : c + tile] += p * weight
        for r, c in chunk:
            total[r : r + tile, c : c + tile] += weight
    return {t: (v / total)[:, :h, :w].astype(np.float32) for t, v in acc.items()}


def _entropy(probs: np.ndarray) -> np.ndarray:
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=0).astype(np.float32)


def predict_scene(
    model: nn.Module,
    scene: xr.Dataset,
    stats: BandStats,
    tile: int,
    overlap: float = 0.5,
    bands: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    device: str | torch.device = "cpu",
    use_incidence: bool = False,
) -> xr.Dataset:
    """Predict a scene read by a sarlab reader: ``<task>`` (argmax, 255 on nodata) and
    ``<task>_entropy`` (nats) per task, plus ``<task>_label`` for ``labels`` = {task: scene var}.

    ``stats`` must be in the scene's units (the chip store's statistics); coordinates,
    CRS and transform are copied from the scene.
    """
    image_da = scene[IMAGE_VAR]
    if stats.units != image_da.attrs.get("units"):
        raise UnitsError(
            f"statistics are in {stats.units} but the scene's backscatter in "
            f"{image_da.attrs.get('units')}"
        )
    bands = list(bands) if bands is not None else list(stats.bands)
    have = [str(b) for b in image_da["band"].values]
    if any(b not in have for b in bands):
        raise InputError(scene.attrs.get("source"), f"has bands {have}, the model needs {bands}")
    raw = np.asarray(image_da.sel(band=bands).transpose("band", "y", "x").values, dtype=np.float32)
    nodata = ~np.isfinite(raw).all(axis=0)
    x = np.asarray(stats.subset(bands).normalize(raw), dtype=np.float32)
    inc = None
    if use_incidence and INCIDENCE_VAR in scene:
        inc = np.asarray(scene[INCIDENCE_VAR].transpose("y", "x").values, dtype=np.float32)
    probs = predict_array(model, x, tile, overlap, incidence=inc, device=device)
    out = xr.Dataset(coords={k: v for k, v in image_da.coords.items() if k != "band"})
    for task, p in probs.items():
        pred = p.argmax(0).astype(np.uint8)
        pred[nodata] = IGNORE_INDEX
        ent = _entropy(p)
        ent[nodata] = np.nan
        out[task] = (("y", "x"), pred, {"long_name": f"predicted {task}", "nodata": IGNORE_INDEX})
        out[f"{task}_entropy"] = (("y", "x"), ent, {"long_name": f"{task} entropy", "units": "nat"})
    for task, var in (labels or {}).items():
        out[f"{task}_label"] = scene[var].transpose("y", "x").astype(np.uint8)
    out.attrs = {k: v for k, v in scene.attrs.items() if isinstance(v, (str, int, float))}
    if scene.rio.crs is not None:
        out = out.rio.write_crs(scene.rio.crs).rio.write_transform(scene.rio.transform())
    return out


def write_prediction(ds: xr.Dataset, path: str | os.PathLike[str], cog: bool = True) -> Path:
    """Write a :func:`predict_scene` result: a float32 COG (one band per variable, NaN nodata,
    band descriptions = variable names) with the CRS and transform, written atomically.

    Without a CRS (radar geometry) a GeoTIFF would be meaningless; ``path`` must then
    end in ``.nc`` and the dataset (with its latitude/longitude coordinates) goes to NetCDF.
    """
    path = Path(path)
    names = [str(v) for v in ds.data_vars if ds[v].dims == ("y", "x")]
    if not names:
        raise ValueError("nothing to write: no (y, x) variables")
    if ds.rio.crs is None:
        if path.suffix != ".nc":
            raise InputError(
                path, "the prediction has no CRS (radar geometry): write it to a .nc file"
            )
        with atomic_file(path) as tmp:
            ds.to_netcdf(tmp, engine="h5netcdf")
        return path
    layers = []
    for name in names:
        v = np.asarray(ds[name].values, dtype=np.float32)
        if ds[name].dtype == np.uint8:
            v[ds[name].values == IGNORE_INDEX] = np.nan
        layers.append(v)
    height, width = layers[0].shape
    profile = {
        "driver": "COG" if cog else "GTiff", "dtype": "float32", "count": len(layers),
        "height": height, "width": width, "crs": ds.rio.crs, "transform": ds.rio.transform(),
        "nodata": np.nan, "compress": "deflate",
    }  # fmt: skip
    with atomic_file(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for bidx, (name, layer) in enumerate(zip(names, layers, strict=True), start=1):
            dst.write(layer, bidx)
            dst.set_band_description(bidx, name)
    return path
