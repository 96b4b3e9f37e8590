"""Embeddings of chips and whole scenes -> GeoParquet (pooled) and Zarr (dense patch grids).

What a foundation encoder has learned is easiest to judge on a map: one vector per chip,
with the chip's footprint, so that similar places can be searched and clustered
(:mod:`sarlab.embed_search`) and drawn (:mod:`sarlab.viz.maps`)::

    encoder = encoder_for_store(run_dir() / "checkpoint", store)   # or a random-init one
    gdf = embed_chips(store, encoder, pool="cls")
    write_embeddings(gdf, run_dir() / "embeddings.parquet")
    scene = embed_scene("scene.tif", encoder, size=64)           # sliding window, any CRS

Every row carries the model card hash (which weights made it), the data manifest and the
time, so an embedding file says where it came from (files: :mod:`sarlab.embed_io`).
Inference is in eval mode under ``torch.inference_mode``: the same weights and data give
bit-identical vectors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from sarlab.chips import ChipDataset, ChipStore
from sarlab.conventions import IGNORE_INDEX
from sarlab.embed_core import embedding_frame, model_hash, run_encoder, stats_for
from sarlab.embed_io import (
    EMBEDDING_COLUMN,
    embedding_matrix,
    read_embeddings,
    write_dense,
    write_embeddings,
)
from sarlab.embed_scene import embed_scene, scene_footprint
from sarlab.errors import InputError
from sarlab.models import ViTEncoder, load_encoder, vit_encoder
from sarlab.report import utc_now

__all__ = [
    "EMBEDDING_COLUMN",
    "chip_majority_labels",
    "embed_chips",
    "embed_scene",
    "embedding_matrix",
    "encoder_for_store",
    "model_hash",
    "random_like",
    "read_embeddings",
    "scene_footprint",
    "write_dense",
    "write_embeddings",
]

PathLike = str | os.PathLike[str]


def encoder_for_store(
    checkpoint: PathLike | None,
    store: ChipStore,
    *,
    preset: str = "tiny",
    patch_size: int = 8,
    seed: int = 0,
    verbose: bool = True,
    **encoder_kwargs: Any,
) -> ViTEncoder:
    """The checkpoint's encoder (checked against the store's bands and units), else random-init.

    A random-init encoder (same architecture family, seeded) is the baseline that shows
    how much pretraining adds; it is announced so nobody mistakes it for a trained one.
    """
    attrs = store.attrs
    if checkpoint and Path(checkpoint, "model_card.json").is_file():
        encoder = load_encoder(
            checkpoint,
            expect_bands=store.bands,
            expect_units=attrs["units"],
            expect_quantity=attrs["quantity"],
        )
        if verbose:
            print(f"encoder: {checkpoint} (model card {model_hash(encoder)[:12]})")
        return encoder.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = vit_encoder(
            preset,
            in_chans=len(store.bands),
            patch_size=patch_size,
            img_size=int(attrs["size"]),
            **encoder_kwargs,
        )
    encoder.model_card = None
    if verbose:
        where = f"no checkpoint at {checkpoint}" if checkpoint else "no checkpoint given"
        print(f"NOTE: {where}; using a RANDOM-INIT {preset} encoder (seed {seed}) as baseline")
    return encoder.eval()


def random_like(encoder: ViTEncoder, seed: int = 0) -> ViTEncoder:
    """A seeded random-init copy of an encoder (same architecture and card): the baseline.

    The card is kept so the copy normalises inputs the same way; its hash is of the weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        twin = ViTEncoder(encoder.config)
    card = getattr(encoder, "model_card", None)
    twin.model_card = None
    twin.normalization = (card or {}).get("normalization")
    return twin.eval()


@torch.inference_mode()
def embed_chips(
    store: ChipStore | PathLike,
    encoder: ViTEncoder,
    *,
    pool: str = "mean",
    split: str | list[str] | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    manifest: str | None = None,
    dense: bool = False,
    progress: bool = True,
):
    """One pooled embedding per chip of a store, as a GeoDataFrame (EPSG:4326 footprints).

    ``pool="mean"`` (patch-token mean) by default: masked-image methods (mae, hog, gradient)
    never train the cls token, whose vectors then barely differ between chips.

    Columns: chip_id, scene_id, split, index (store row), lon/lat (centre), geometry,
    embedding (float32 vector), model_card_hash, data_manifest, created. Normalised with
    the model card's statistics when it has them, else the store's. With ``dense`` a tuple
    ``(gdf, grid)``: ``grid`` holds every chip's patch tokens (:func:`_chip_grid`; in memory,
    N x D x (size / patch)^2 float32), written with :func:`write_dense`.
    """
    store = store if isinstance(store, ChipStore) else ChipStore(store)
    needs_inc = encoder.incidence_embed is not None
    stats = stats_for(encoder, store.stats)
    dataset = ChipDataset(
        store.path, split=split, with_labels=False, with_incidence=needs_inc, stats=stats
    )
    encoder = encoder.to(device).eval()
    vectors, grids = [], []
    n = len(dataset)
    bar = tqdm(total=n, desc="embedding chips", unit="chip", disable=not progress)
    for start in range(0, n, batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, n))]
        x = torch.stack([s["image"] for s in items]).to(device)
        inc = torch.stack([s["incidence"] for s in items]).to(device) if needs_inc else None
        pooled, grid = run_encoder(encoder, x, inc, pool, dense)
        vectors.append(pooled)
        if grid is not None:
            grids.append(grid)
        bar.update(len(items))
    bar.close()
    table = store.table.iloc[dataset.indices]
    rows = [
        {"chip_id": r.chip_id, "scene_id": r.scene_id, "split": r.split, "index": int(r.index),
         "lon": float(r.lon), "lat": float(r.lat), "geometry": r.geometry}
        for r in table.itertuples()
    ]  # fmt: skip
    dim = encoder.embed_dim
    meta = {
        "source": str(store.path), "pool": pool, "model_card_hash": model_hash(encoder),
        "data_manifest": manifest, "created": utc_now(), "dim": dim, "bands": store.bands,
    }  # fmt: skip
    gdf = embedding_frame(rows, np.concatenate(vectors) if vectors else np.zeros((0, dim)), meta)
    if not dense:
        return gdf
    gh, gw = encoder.grid_size(int(store.attrs["size"]))
    stacked = np.concatenate(grids) if grids else np.zeros((0, dim, gh, gw), np.float32)
    return gdf, _chip_grid(stacked, table, int(store.attrs["size"]) // gh, meta)


def _json_or_empty(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value.tolist() if hasattr(value, "tolist") else value)


def _chip_grid(grid: np.ndarray, table, patch: int, meta: dict[str, Any]) -> xr.Dataset:
    """Patch tokens of chips (chip, feature, y, x) with where each chip came from.

    A patch's pixel in its scene is ``(row + pixel_row, col + pixel_col)`` (its top-left
    corner); ``source_crs``/``affine`` are the scene's geo-reference where it has one
    (empty for radar geometry, whose latitude/longitude live in the scene file).
    """
    gh, gw = grid.shape[2:]
    # strings as objects: Zarr v3 has a specified variable-length string type, not fixed UTF-32
    per_chip = {name: ("chip", table[name].to_numpy().astype(object))
                for name in ("chip_id", "scene_id", "split")}  # fmt: skip
    per_chip.update({name: ("chip", table[name].to_numpy()) for name in ("index", "row", "col")})
    for name in ("source_crs", "affine"):
        values = table[name] if name in table else [None] * len(table)
        per_chip[name] = ("chip", np.array([_json_or_empty(v) for v in values], dtype=object))
    return xr.Dataset(
        {"patch_embedding": (("chip", "feature", "y", "x"), grid.astype(np.float32, copy=False))},
        coords={**per_chip, "pixel_row": ("y", np.arange(gh) * patch),
                "pixel_col": ("x", np.arange(gw) * patch)},
        attrs={**{k: json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v)
                  for k, v in meta.items()}, "patch_size": patch},
    )  # fmt: skip


def chip_majority_labels(store: ChipStore | PathLike, var: str = "SOD") -> np.ndarray:
    """The most frequent class of ``var`` in each chip (ignored pixels skipped; -1 if none)."""
    store = store if isinstance(store, ChipStore) else ChipStore(store)
    names = store.attrs["label_vars"]
    if var not in names:
        raise InputError(store.path, f"has labels {names}, not {var!r}")
    labels = np.asarray(store.array("labels")[:, names.index(var)])
    out = np.full(labels.shape[0], -1, dtype=np.int64)
    for i, chip in enumerate(labels.reshape(labels.shape[0], -1)):
        valid = chip[chip != IGNORE_INDEX]
        if valid.size:
            out[i] = int(np.bincount(valid).argmax())
    return out
