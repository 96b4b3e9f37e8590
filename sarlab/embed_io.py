"""Embedding files: pooled vectors as GeoParquet, dense patch grids as Zarr or NetCDF.

The ``embedding`` column is a fixed-size float32 list (Arrow ``fixed_size_list``), so any
Parquet reader sees one vector length for the whole file, and geopandas opens the file as is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

__all__ = [
    "EMBEDDING_COLUMN",
    "embedding_matrix",
    "read_embeddings",
    "write_dense",
    "write_embeddings",
]

PathLike = str | os.PathLike[str]
EMBEDDING_COLUMN = "embedding"
_META_KEY = b"sarlab_embeddings"


def write_dense(grid: xr.Dataset, path: PathLike) -> Path:
    """Write a dense patch-embedding grid to Zarr (``.zarr``) or NetCDF (``.nc``)."""
    path = Path(path)
    if path.suffix == ".nc":
        grid.to_netcdf(path, engine="h5netcdf")
    else:
        grid.to_zarr(path, mode="w", consolidated=False)
    return path


def embedding_matrix(gdf: pd.DataFrame) -> np.ndarray:
    """The embeddings as one (N, D) float32 array."""
    values = gdf[EMBEDDING_COLUMN].to_numpy()
    if len(values) == 0:
        return np.zeros((0, 0), np.float32)
    return np.stack(values).astype(np.float32, copy=False)


def write_embeddings(gdf, path: PathLike) -> Path:
    """GeoParquet with ``embedding`` as a fixed-size float32 list (readable by geopandas)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from geopandas.io.arrow import _geopandas_to_arrow

    from sarlab.atomic import atomic_file

    matrix = embedding_matrix(gdf)
    dim = matrix.shape[1] if matrix.size else int(gdf.attrs.get("sarlab_embeddings", {})["dim"])
    table = _geopandas_to_arrow(gdf.drop(columns=[EMBEDDING_COLUMN]), index=False)
    column = pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim)
    table = table.append_column(EMBEDDING_COLUMN, column)
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = json.dumps(gdf.attrs.get("sarlab_embeddings", {}), default=str).encode()
    table = table.replace_schema_metadata(meta)
    path = Path(path)
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_embeddings(path: PathLike):
    """A GeoDataFrame written by :func:`write_embeddings`, with its metadata in ``.attrs``."""
    import geopandas as gpd
    import pyarrow.parquet as pq

    gdf = gpd.read_parquet(path)
    meta = pq.read_schema(path).metadata or {}
    if _META_KEY in meta:
        gdf.attrs["sarlab_embeddings"] = json.loads(meta[_META_KEY])
    return gdf
