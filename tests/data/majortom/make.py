"""Generate small Major TOM Core-S1RTC parquet shards in the dataset's real layout (seeded).

Written with pyarrow/rasterio/PIL directly, not with sarlab, so the reader is tested
against the format (see sarlab/io/majortom.py for the sources):

* ``images/part_0000{1,2,3}.parquet``: columns ``product_id``, ``grid_cell``,
  ``product_datetime`` (strings), ``thumbnail`` (PNG bytes), ``vv``, ``vh`` (bytes of a
  single-band float32 GeoTIFF, linear power, UTM 10 m, nodata -32768); one row per
  row group, as published. 4, 3 and 5 patches of 48 x 48 px (real: ~500 of 1068 px).
* ``metadata.parquet``: one row per patch (grid_cell, grid_row_u, grid_col_r,
  product_id, timestamp, nodata, orbit_state, centre_lat, centre_lon, crs,
  parquet_url, parquet_row), which the reader must not take for a shard.

Values: VV = 0.1 x Exp(1) and VH = 0.02 x Exp(1) (speckled linear power); the first
patch of part 1 has its 6 leftmost columns at nodata (-32768), and one VV pixel
(row 20, column 20) of that patch is exactly 0 (no logarithm: NaN in dB).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.transform import from_origin

SEED = 23
PX = 48
ROWS = (4, 3, 5)
NODATA = -32768.0
NODATA_COLS = 6
ZERO_AT = (20, 20)
COLUMNS = ("product_id", "grid_cell", "product_datetime", "thumbnail", "vv", "vh")
URL = "https://huggingface.co/datasets/Major-TOM/Core-S1RTC/resolve/main/images/{}"


def patch(shard: int, row: int) -> np.ndarray:
    """(2, PX, PX) float32 linear power of VV and VH, nodata included."""
    rng = np.random.default_rng([SEED, shard, row])
    vv = 0.1 * rng.exponential(1.0, (PX, PX))
    vh = 0.02 * rng.exponential(1.0, (PX, PX))
    data = np.stack([vv, vh]).astype(np.float32)
    if (shard, row) == (0, 0):
        data[:, :, :NODATA_COLS] = NODATA
        data[0, ZERO_AT[0], ZERO_AT[1]] = 0.0
    return data


def geotiff_bytes(plane: np.ndarray, x0: float, y0: float) -> bytes:
    with MemoryFile() as mem:
        with mem.open(
            driver="GTiff", width=plane.shape[1], height=plane.shape[0], count=1,
            dtype="float32", crs="EPSG:32632", transform=from_origin(x0, y0, 10.0, 10.0),
            nodata=NODATA, compress="deflate",
        ) as dst:  # fmt: skip
            dst.write(plane, 1)
        return mem.read()


def thumbnail(data: np.ndarray) -> bytes:
    valid = data[0] != NODATA
    db = 10 * np.log10(np.clip(np.where(valid, data, 1.0), 1e-6, None))
    scaled = np.clip((db + 30.0) / 30.0 * 255, 0, 255).astype(np.uint8)
    rgb = np.stack([scaled[0], (scaled[0] // 2 + scaled[1] // 2), scaled[1]], axis=-1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def cell(shard: int, row: int) -> tuple[str, int, int]:
    r, c = 400 + 3 * shard, 100 + row
    return f"{r}U_{c}R", r, c


def product(shard: int, row: int) -> str:
    date = f"202003{10 + 3 * row:02d}"
    orbit = f"03{shard}2{row}3_03A{row}1C"
    return f"S1A_IW_GRDH_1SDV_{date}T171{shard}23_{date}T171{shard}48_{orbit}_RTC"


def make(out_dir: Path) -> Path:
    """Write images/part_*.parquet and metadata.parquet; return ``out_dir``."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    meta = []
    for shard, n in enumerate(ROWS):
        name = f"part_{shard + 1:05d}.parquet"
        rows = {
            c: [] for c in ("product_id", "grid_cell", "product_datetime", "thumbnail", "vv", "vh")
        }
        for row in range(n):
            data = patch(shard, row)
            grid, r, c = cell(shard, row)
            x0, y0 = 500_000.0 + 10_000 * row, 5_400_000.0 + 10_000 * shard
            rows["product_id"].append(product(shard, row))
            rows["grid_cell"].append(grid)
            rows["product_datetime"].append(f"2020-03-{10 + 3 * row:02d} 17:1{shard}:23")
            rows["thumbnail"].append(thumbnail(data))
            rows["vv"].append(geotiff_bytes(data[0], x0, y0))
            rows["vh"].append(geotiff_bytes(data[1], x0, y0))
            meta.append({
                "grid_cell": grid, "grid_row_u": r, "grid_col_r": c,
                "product_id": product(shard, row),
                "timestamp": f"2020-03-{10 + 3 * row:02d} 17:1{shard}:23",
                "nodata": float(np.mean(data[0] == NODATA)),
                "orbit_state": "ascending", "centre_lat": 48.0 + 0.1 * shard,
                "centre_lon": 9.0 + 0.1 * row, "crs": "EPSG:32632",
                "parquet_url": URL.format(name), "parquet_row": row,
            })  # fmt: skip
        schema = pa.schema(
            [("product_id", pa.string()), ("grid_cell", pa.string()),
             ("product_datetime", pa.string()), ("thumbnail", pa.binary()),
             ("vv", pa.binary()), ("vh", pa.binary())]
        )  # fmt: skip
        table = pa.table(rows, schema=schema)
        pq.write_table(table, out / "images" / name, row_group_size=1)
    pq.write_table(pa.Table.from_pylist(meta), out / "metadata.parquet")
    return out


if __name__ == "__main__":
    import sys

    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "majortom_fixture")))
