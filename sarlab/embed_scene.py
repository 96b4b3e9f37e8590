"""Whole-scene embeddings by sliding window: pooled vectors per window, optional dense grids.

Any scene a sarlab reader opens (GeoTIFF in any CRS, AI4Arctic netCDF in radar geometry) is
read a block of window rows at a time, so a full 5000 x 5200 scene needs little memory; the
rows are those of :func:`sarlab.embed.embed_chips` (``row``/``col`` instead of ``index``).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from sarlab.chips_scene import open_scene
from sarlab.conventions import IMAGE_VAR, INCIDENCE_VAR
from sarlab.embed_core import embedding_frame, model_hash, run_encoder, stats_for
from sarlab.errors import InputError, UnitsError
from sarlab.geo import latlon_centre, latlon_footprint, window_centre, window_footprint
from sarlab.models import ViTEncoder
from sarlab.preprocess.normalize import BandStats
from sarlab.report import utc_now

__all__ = ["embed_scene", "scene_footprint"]

PathLike = str | os.PathLike[str]


def scene_footprint(ds: xr.Dataset):
    """The scene's outline in EPSG:4326: its lat/lon border ring, or its grid's edges."""
    height, width = ds.sizes["y"], ds.sizes["x"]
    footprint, _, _ = _geometry(ds)
    return footprint(0, 0, height, width)


def _geometry(ds: xr.Dataset):
    """(footprint fn, centre fn, crs string | None, 2-D lat/lon loaded or None)."""
    if "latitude" in ds.coords and ds["latitude"].ndim == 2:
        lat = np.asarray(ds["latitude"].values, dtype=np.float64)
        lon = np.asarray(ds["longitude"].values, dtype=np.float64)
        return (
            lambda r, c, h, w: latlon_footprint(lat, lon, r, c, h, w),
            lambda r, c, h, w: latlon_centre(lat, lon, r, c, h, w),
            None,
        )
    if ds.rio.crs is None:
        raise InputError(ds.attrs.get("source"), "has neither a CRS nor 2-D latitude/longitude")
    transform, crs = ds.rio.transform(), ds.rio.crs
    return (
        lambda r, c, h, w: window_footprint(transform, crs, r, c, h, w),
        lambda r, c, h, w: window_centre(transform, crs, r, c, h, w),
        crs.to_string(),
    )


def _check_units(image: xr.DataArray, stats: BandStats, bands: list[str], name: Any) -> None:
    units = image.attrs.get("units")
    if units != stats.units:
        raise UnitsError(
            f"{name}: the scene is in {units} but the encoder's statistics in {stats.units}; "
            "convert explicitly (sarlab.preprocess.radiometry) first"
        )
    have = [str(b) for b in image["band"].values]
    missing = [b for b in bands if b not in have]
    if missing:
        raise InputError(name, f"has bands {have}, the encoder needs {bands}")


@torch.inference_mode()
def embed_scene(
    scene: PathLike | xr.Dataset,
    encoder: ViTEncoder,
    *,
    size: int | None = None,
    stride: int | None = None,
    stats: BandStats | None = None,
    bands: list[str] | None = None,
    pool: str = "mean",
    dense: bool = False,
    min_valid: float = 0.5,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    reader: str | None = None,
    manifest: str | None = None,
    progress: bool = True,
):
    """Sliding-window embeddings of a whole scene that a sarlab reader opens (any CRS or lat/lon).

    Windows of ``size`` (default: the encoder's training size) every ``stride`` pixels
    (default ``size``) are read a block of rows (about one storage chunk) at a time, so memory
    stays near two blocks plus a batch. Windows with fewer than ``min_valid`` finite pixels
    are skipped. Returns the GeoDataFrame of :func:`embed_chips` (``row``/``col`` instead of
    ``index``); with ``dense`` a tuple ``(gdf, grid)`` where ``grid`` is an xarray Dataset of patch
    embeddings (write it with :func:`write_dense`).
    """
    ds = open_scene(scene, reader)
    name = ds.attrs.get("source", scene if not isinstance(scene, xr.Dataset) else "scene")
    card = getattr(encoder, "model_card", None) or {}
    bands = list(bands or card.get("bands") or [str(b) for b in ds[IMAGE_VAR]["band"].values])
    stats = stats_for(encoder, stats)
    if stats is None:
        raise ValueError("the encoder has no model card statistics: pass stats=")
    stats = stats.subset(bands)
    image = ds[IMAGE_VAR].sel(band=bands).transpose("band", "y", "x")
    _check_units(image, stats, bands, name)
    needs_inc = encoder.incidence_embed is not None
    if needs_inc and INCIDENCE_VAR not in ds:
        raise InputError(name, "has no incidence angle; this encoder needs one")
    size = int(size or encoder.config.img_size)
    stride = int(stride or size)
    height, width = image.sizes["y"], image.sizes["x"]
    if height < size or width < size:
        raise InputError(name, f"is {height}x{width} pixels, smaller than one {size}px window")
    footprint, centre, crs = _geometry(ds)
    scene_id = str(ds.attrs.get("scene_id") or Path(str(name)).stem)
    encoder = encoder.to(device).eval()
    n_rows = (height - size) // stride + 1
    n_cols = (width - size) // stride + 1
    gh, gw = encoder.grid_size(size)
    dense_grid = (
        np.zeros((encoder.embed_dim, n_rows * gh, n_cols * gw), np.float32) if dense else None
    )
    rows: list[dict[str, Any]] = []
    vectors: list[np.ndarray] = []
    batch: list[tuple[np.ndarray, np.ndarray | None, int, int]] = []

    def flush() -> None:
        x = torch.from_numpy(np.stack([b[0] for b in batch])).to(device)
        x = torch.nan_to_num_(stats.normalize(x, band_axis=1), nan=0.0)
        inc = torch.from_numpy(np.stack([b[1] for b in batch])).to(device) if needs_inc else None
        pooled, grid = run_encoder(encoder, x, inc, pool, dense)
        vectors.append(pooled)
        for k, (_, _, r, c) in enumerate(batch):
            fp = footprint(r, c, size, size)
            lon, lat = centre(r, c, size, size)
            rows.append(
                {"chip_id": f"{scene_id}_r{r:05d}_c{c:05d}", "scene_id": scene_id,
                 "row": r, "col": c, "lon": lon, "lat": lat, "geometry": fp}
            )  # fmt: skip
            if grid is not None:
                i, j = r // stride, c // stride
                dense_grid[:, i * gh : (i + 1) * gh, j * gw : (j + 1) * gw] = grid[k]
        batch.clear()

    bar = tqdm(total=n_rows * n_cols, desc=f"embedding {scene_id[:30]}", unit="chip",
               disable=not progress)  # fmt: skip

    # Rows of windows are read in blocks about one storage chunk high: a lazy (dask) array
    # decodes whole chunks, so reading one window-high strip at a time would decode each
    # chunk many times over.
    chunk_h = max(image.chunksizes["y"]) if image.chunks is not None else 1024
    per_block = max(1, (max(chunk_h, size) - size) // stride + 1)
    blocks = [list(range(i, min(i + per_block, n_rows))) for i in range(0, n_rows, per_block)]

    def read(block: list[int]) -> tuple[int, np.ndarray, np.ndarray | None]:
        top = block[0] * stride
        rows_ = slice(top, block[-1] * stride + size)
        pixels = np.asarray(image.isel(y=rows_).values, dtype=np.float32)
        if not needs_inc:
            return top, pixels, None
        return top, pixels, np.asarray(ds[INCIDENCE_VAR].isel(y=rows_).values, np.float32)

    # the next block is read (I/O and decoding release the GIL) while this one is encoded
    pool_ = ThreadPoolExecutor(max_workers=1)
    pending = pool_.submit(read, blocks[0])
    for b, block in enumerate(blocks):
        top, pixels, inc_pixels = pending.result()
        if b + 1 < len(blocks):
            pending = pool_.submit(read, blocks[b + 1])
        for i in block:
            r = i * stride
            for j in range(n_cols):
                c = j * stride
                chip = pixels[:, r - top : r - top + size, c : c + size]
                if np.isfinite(chip).all(axis=0).mean() >= min_valid:
                    inc = None
                    if inc_pixels is not None:
                        inc = inc_pixels[r - top : r - top + size, c : c + size]
                    batch.append((chip, inc, r, c))
                    if len(batch) == batch_size:
                        flush()
                bar.update(1)
        del pixels, inc_pixels
    if batch:
        flush()
    pool_.shutdown()
    bar.close()
    meta = {
        "source": str(name), "pool": pool, "model_card_hash": model_hash(encoder),
        "data_manifest": manifest, "created": utc_now(), "dim": encoder.embed_dim,
        "bands": bands, "size": size, "stride": stride, "crs": crs,
    }  # fmt: skip
    vec = np.concatenate(vectors) if vectors else np.zeros((0, encoder.embed_dim), np.float32)
    gdf = embedding_frame(rows, vec, meta)
    if not dense:
        return gdf
    return gdf, _dense_dataset(ds, dense_grid, size, stride, gh, meta)


def _dense_dataset(ds, grid, size, stride, gh, meta) -> xr.Dataset:
    """Patch embeddings on their grid, geo-referenced: CRS + transform, or sampled lat/lon."""
    patch = size // gh
    n_rows, n_cols = grid.shape[1] // gh, grid.shape[2] // gh
    # pixel coordinates of each patch's top-left corner in the scene
    py = np.concatenate([i * stride + np.arange(gh) * patch for i in range(n_rows)])
    px = np.concatenate([j * stride + np.arange(gh) * patch for j in range(n_cols)])
    out = xr.Dataset(
        {"patch_embedding": (("feature", "y", "x"), grid)},
        coords={"pixel_row": ("y", py), "pixel_col": ("x", px)},
        attrs={k: json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v)
               for k, v in meta.items()},
    )  # fmt: skip
    if meta["crs"] is not None and stride == size:  # windows tile the scene: a regular grid
        from affine import Affine

        t = ds.rio.transform()
        out = out.assign_coords(
            x=t.c + t.a * (px + patch / 2), y=t.f + t.e * (py + patch / 2)
        ).rio.write_crs(meta["crs"])
        out = out.rio.write_transform(t @ Affine.scale(patch))
    elif "latitude" in ds.coords:
        cy, cx = py + patch // 2, px + patch // 2
        lat = np.asarray(ds["latitude"].values)[np.ix_(cy, cx)]
        lon = np.asarray(ds["longitude"].values)[np.ix_(cy, cx)]
        out = out.assign_coords(latitude=(("y", "x"), lat), longitude=(("y", "x"), lon))
    return out
