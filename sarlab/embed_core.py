"""What embedding chips and scenes share: the model hash, normalisation, the forward, the table.

Kept apart from :mod:`sarlab.embed` (chip stores) and :mod:`sarlab.embed_scene` (whole scenes)
so both build rows the same way and neither imports the other.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import torch

from sarlab.embed_io import EMBEDDING_COLUMN
from sarlab.models import ViTEncoder, model_card_hash
from sarlab.preprocess.normalize import BandStats

__all__ = ["embedding_frame", "model_hash", "run_encoder", "stats_for"]


def model_hash(encoder: ViTEncoder) -> str:
    """The model card hash, or for an encoder without card a hash of its weights."""
    card = getattr(encoder, "model_card", None)
    if card:
        return model_card_hash(card)
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "weights-" + digest.hexdigest()


def stats_for(encoder: ViTEncoder, fallback: BandStats | None) -> BandStats | None:
    """The statistics the encoder was trained with (its card's), else ``fallback``."""
    card = getattr(encoder, "model_card", None) or {}
    given = card.get("normalization") or getattr(encoder, "normalization", None)
    return BandStats.from_dict(given) if given else fallback


def run_encoder(
    encoder: ViTEncoder, x: torch.Tensor, inc: torch.Tensor | None, pool: str, dense: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled vectors (B, D) and, with ``dense``, the patch tokens as grids (B, D, gh, gw)."""
    tokens = encoder.forward_features(x, inc if encoder.incidence_embed is not None else None)
    pooled = ViTEncoder.pool(tokens, pool).float().cpu().numpy()
    if not dense:
        return pooled, None
    gh, gw = encoder.grid_size(tuple(x.shape[-2:]))
    grid = tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, gh, gw)
    return pooled, grid.float().cpu().numpy()


def embedding_frame(rows: list[dict[str, Any]], vectors: np.ndarray, meta: dict[str, Any]):
    """The GeoDataFrame of :func:`sarlab.embed.embed_chips`: rows, vectors and provenance."""
    import geopandas as gpd

    geometry = [r.pop("geometry") for r in rows]
    gdf = gpd.GeoDataFrame(pd.DataFrame(rows), geometry=geometry, crs="EPSG:4326")
    gdf[EMBEDDING_COLUMN] = list(np.asarray(vectors, dtype=np.float32))
    gdf["model_card_hash"] = meta["model_card_hash"]
    gdf["data_manifest"] = meta.get("data_manifest") or ""
    gdf["created"] = meta["created"]
    gdf.attrs["sarlab_embeddings"] = meta
    return gdf
