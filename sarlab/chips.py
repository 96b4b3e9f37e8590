"""The chip store: SAR scenes cut into geo-referenced chips in one Zarr store, and a torch Dataset.

Pretraining reads millions of random chips; reading them as windows of large
GeoTIFFs is slow (a tile decode, a GDAL call and often several tiles per chip).
The store keeps one chip per chunk, with a Parquet table saying where every chip
came from (scene, pixel window, CRS, affine, EPSG:4326 footprint, split) and the
band statistics of the train split in its attrs.

    store = build_chip_store(paths, "chips.zarr", size=256, splits={"train": 0.8, "val": 0.2})
    loader = DataLoader(ChipDataset("chips.zarr", split="train"), batch_size=32, num_workers=4)

One build per store path at a time: a rerun resumes the last one's finished scenes.
Layout: :mod:`sarlab.chips_format`; the build: :mod:`sarlab.chips_build`;
reading: :mod:`sarlab.chips_read`; footprints: :mod:`sarlab.geo`.
"""

from __future__ import annotations

from sarlab.chips_build import assign_splits, build_chip_store, partial_path
from sarlab.chips_read import ChipDataset, ChipStore, ChunkArray
from sarlab.chips_scene import READERS, resolve_reader

__all__ = [
    "READERS",
    "ChipDataset",
    "ChipStore",
    "ChunkArray",
    "assign_splits",
    "build_chip_store",
    "partial_path",
    "resolve_reader",
]
