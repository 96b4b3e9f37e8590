"""Major TOM Core-S1RTC (VV, VH; gamma0 RTC, linear power) as a shard stream of parquet files.

Source: https://huggingface.co/datasets/Major-TOM/Core-S1RTC (ESA Phi-lab, CC-BY-SA-4.0;
Francis & Czerkawski 2024, arXiv:2402.12095). What the reader relies on:

* Shards ``images/part_00001.parquet`` ... ``part_02930.parquet`` (about 5 GB, ~500
  patches each), one row per patch. Columns (dataset card ``dataset_info``):
  ``product_id``, ``grid_cell``, ``product_datetime`` (strings), ``thumbnail`` (PNG),
  ``vv`` and ``vh`` (binary: one single-band GeoTIFF each, 1068 x 1068 px at 10 m).
* Each row is its own row group: Major TOM's tools read a patch with
  ``ParquetFile.read_row_group(parquet_row)`` and take element 0
  (github.com/ESA-PhiLab/Major-TOM ``MajorTOM/metadata_helpers.py``), where
  ``parquet_row`` comes from ``metadata.parquet`` (grid cell, product id, timestamp,
  nodata fraction, centre, CRS, parquet_url, parquet_row); that file is not a shard.
* Values: "Received Linear Power" (card); nodata is the GeoTIFF's nodata tag, -32768 in
  Major TOM's thumbnail code (``extras/thumbnail_s1rtc.py``), which also clamps
  negative powers before its dB conversion. The quantity gamma0 is inferred from the
  product (radiometric terrain correction), as in data_manifests/major-tom-core-s1rtc.yaml.

Reading streams row groups with ``ParquetFile.iter_batches`` over the ``vv``/``vh``
(and id) columns only, so a shard is never loaded whole and the thumbnails are
never read. Values become dB explicitly (:func:`~sarlab.preprocess.radiometry.
linear_to_db`: non-positive powers and nodata become NaN) unless ``units="linear"``.
Patches are large, so give ``size`` (and perhaps ``crops_per_item``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
from rasterio.io import MemoryFile

from sarlab.errors import InputError
from sarlab.io.streaming import ShardStream, find_shards

__all__ = ["COLUMNS", "MajorTOMS1Stream", "read_geotiff_bytes"]

PathLike = str | os.PathLike[str]
#: Image columns of Core-S1RTC shards (dataset card); vv and vh are required.
COLUMNS = ("product_id", "grid_cell", "product_datetime", "thumbnail", "vv", "vh")
_IDS = ("product_id", "grid_cell")


def read_geotiff_bytes(data: bytes, where: str) -> np.ndarray:
    """The single band of an in-memory GeoTIFF as float32, its nodata value as NaN."""
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) == 0:
        raise InputError(where, "holds no GeoTIFF bytes")
    try:
        with MemoryFile(bytes(data)) as mem, mem.open() as src:
            if src.count != 1:
                raise InputError(where, f"GeoTIFF has {src.count} bands, expected 1")
            plane = src.read(1).astype(np.float32, copy=False)
            nodata = src.nodata
    except rasterio.errors.RasterioError as err:
        raise InputError(where, f"is not a readable GeoTIFF ({err})") from err
    if nodata is not None and not np.isnan(nodata):
        plane[plane == np.float32(nodata)] = np.nan
    return plane


class MajorTOMS1Stream(ShardStream):
    """Core-S1RTC patches read row group by row group; see the module doc.

    ``root`` is the dataset folder (``images/`` is searched recursively, and
    ``metadata.parquet`` skipped) or one shard. ``units`` defaults to "dB"
    (converted from the native linear power). ``read_rows`` rows are decoded per
    parquet read (1 matches the published one-row row groups). Other keywords are
    those of :class:`~sarlab.io.streaming.ShardStream`.
    """

    name = "Major TOM Core-S1RTC"
    native_bands = ("VV", "VH")
    quantity = "gamma0"
    native_units = "linear"

    def __init__(
        self, root: PathLike, *, units: str = "dB", read_rows: int = 1, **kwargs: Any
    ) -> None:
        root = Path(root).expanduser()
        if read_rows < 1:
            raise ValueError(f"read_rows must be >= 1, got {read_rows}")
        self.read_rows = int(read_rows)
        shards = find_shards(root, ["*.parquet"], exclude=["metadata.parquet"])
        super().__init__(shards, root=root, units=units, **kwargs)

    def _open(self, shard: Path) -> pq.ParquetFile:
        try:
            pf = pq.ParquetFile(shard)
        except (pa.ArrowException, OSError) as err:
            raise InputError(shard, f"is not a readable parquet file ({err})") from err
        names = pf.schema_arrow.names
        missing = [c for c in ("vv", "vh") if c not in names]
        if missing:
            raise InputError(shard, f"has no column(s) {missing} (columns: {names})")
        return pf

    def _count(self, shard: Path) -> int | None:
        return self._open(shard).metadata.num_rows

    def _items(self, shard: Path, shard_number: int) -> Iterator[tuple[int, str, np.ndarray]]:
        pf = self._open(shard)
        ids = [c for c in _IDS if c in pf.schema_arrow.names]
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=self.read_rows, columns=["vv", "vh", *ids]):
                columns = {name: batch.column(name) for name in batch.schema.names}
                for j in range(batch.num_rows):
                    where = f"{shard} row {row}"
                    vv = read_geotiff_bytes(columns["vv"][j].as_py(), f"{where} vv")
                    vh = read_geotiff_bytes(columns["vh"][j].as_py(), f"{where} vh")
                    if vv.shape != vh.shape:
                        raise InputError(where, f"vv is {vv.shape} but vh {vh.shape}")
                    parts = [str(columns[c][j].as_py()) for c in ids]
                    chip_id = "/".join(parts) if parts else f"{shard.stem}:{row}"
                    yield row, chip_id, np.stack([vv, vh])
                    row += 1
        except (pa.ArrowException, OSError) as err:
            raise InputError(shard, f"cannot be read at row {row} ({err})") from err
