"""The on-disk layout of a chip store, shared by the builder and the readers.

A store is one folder::

    <store>/zarr.json        Zarr v3 group; attrs: bands, quantity, units, stats, ...
    <store>/image/           (N, C, H, W) float32, one chip per chunk, NaN = nodata
    <store>/incidence/       (N, H, W) float32 degrees (optional)
    <store>/labels/          (N, K, H, W) uint8, IGNORE_INDEX = nodata (optional)
    <store>/chips.parquet    one row per chip (GeoParquet; geometry = EPSG:4326 footprint)

One chunk per chip makes a random read one file and one decompression. The chunk
key encoding is pinned ("default", "/" separator: ``image/c/<i>/0/0/0``) so that
the builder can move finished scene parts into the final store by hard-linking
chunk files instead of re-encoding them.

Compression: Sentinel-1 dB backscatter is speckle, close to incompressible in
its mantissa. Blosc-LZ4 with byte shuffle still saves ~23% (the sign/exponent
bytes, and far more where NaN fills the swath edge) and decodes at GB/s, so a
random chip read costs about what an uncompressed one does; plain zstd saves
less (~16%, no shuffle) and reads ~4x slower (``sarlab bench chips`` measures
all three).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from sarlab.conventions import IGNORE_INDEX

__all__ = [
    "ARRAYS",
    "COMPRESSIONS",
    "FORMAT_VERSION",
    "TABLE",
    "array_specs",
    "chunk_file",
    "create_arrays",
]

FORMAT_VERSION = 1
TABLE = "chips.parquet"
ARRAYS = ("image", "incidence", "labels")
CHUNK_KEY_ENCODING = {"name": "default", "separator": "/"}
COMPRESSIONS = ("lz4", "zstd", "none")


def _compressors(compression: str) -> list[Any] | None:
    if compression == "lz4":
        return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
    if compression == "zstd":
        return [ZstdCodec(level=3)]
    if compression == "none":
        return None
    raise ValueError(f"unknown compression {compression!r}; expected one of {COMPRESSIONS}")


def array_specs(
    n: int, bands: int, size: int, n_labels: int, incidence: bool
) -> dict[str, tuple[tuple[int, ...], str, float | int, tuple[str, ...]]]:
    """name -> (shape, dtype, fill value, dimension names) for a store of ``n`` chips."""
    specs = {"image": ((n, bands, size, size), "float32", np.nan, ("chip", "band", "y", "x"))}
    if incidence:
        specs["incidence"] = ((n, size, size), "float32", np.nan, ("chip", "y", "x"))
    if n_labels:
        specs["labels"] = (
            (n, n_labels, size, size),
            "uint8",
            IGNORE_INDEX,
            ("chip", "label", "y", "x"),
        )
    return specs


def create_arrays(
    path: Path,
    n: int,
    *,
    bands: int,
    size: int,
    n_labels: int,
    incidence: bool,
    compression: str,
) -> dict[str, zarr.Array]:
    """Create (overwrite) the store's group and arrays at ``path``, one chip per chunk."""
    group = zarr.open_group(path, mode="w")
    arrays = {}
    for name, (shape, dtype, fill, dims) in array_specs(
        n, bands, size, n_labels, incidence
    ).items():
        arrays[name] = group.create_array(
            name,
            shape=shape,
            chunks=(1, *shape[1:]),
            dtype=dtype,
            fill_value=fill,
            compressors=_compressors(compression),
            dimension_names=dims,
            chunk_key_encoding=CHUNK_KEY_ENCODING,
        )
    return arrays


def chunk_file(array_dir: Path, index: int, ndim: int) -> Path:
    """The file holding chip ``index`` of an array with ``ndim`` dimensions."""
    return array_dir.joinpath("c", str(index), *(["0"] * (ndim - 1)))
