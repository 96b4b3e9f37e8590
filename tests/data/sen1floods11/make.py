"""Generate a Sen1Floods11-like hand-labelled chip in the dataset's real layout (seeded).

Real chips are 512x512 EPSG:4326 GeoTIFFs exported from Earth Engine: S1Hand has two
float32 bands (VV, VH, dB) with NaN and no band names or nodata tag; LabelHand is int16
with -1 = no data, 0 = not water, 1 = water. Here a river crosses a land chip; the
left 16 columns are outside the swath (NaN / -1) and a 20x20 block is unlabelled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

SEED = 11
SIZE = 512
SCENE = "Bolivia_103757"
PIXEL_DEG = 8.983152841195215e-05  # Earth Engine's 10 m in degrees
TRANSFORM = from_origin(-65.9, -14.3, PIXEL_DEG, PIXEL_DEG)
HAND = Path("v1.1/data/flood_events/HandLabeled")


def arrays() -> tuple[np.ndarray, np.ndarray]:
    """(image (2, 512, 512) float32 dB, label (512, 512) int16)."""
    rng = np.random.default_rng(SEED)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    water = np.abs(yy - (200 + 0.3 * xx)) < 40
    vv = np.where(water, -22.0, -9.0) + rng.normal(0.0, 1.5, (SIZE, SIZE))
    vh = np.where(water, -28.0, -16.0) + rng.normal(0.0, 1.5, (SIZE, SIZE))
    image = np.stack([vv, vh]).astype(np.float32)
    label = water.astype(np.int16)
    image[:, :, :16] = np.nan
    label[:, :16] = -1
    label[300:320, 300:320] = -1
    return image, label


def _write(path: Path, data: np.ndarray, dtype: str, nodata=None) -> None:
    data = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "dtype": dtype,
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "crs": "EPSG:4326",
        "transform": TRANSFORM,
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def make(out_dir: Path) -> Path:
    """Write the chip, its label and a label of the wrong shape; return ``out_dir``."""
    out_dir = Path(out_dir)
    image, label = arrays()
    _write(out_dir / HAND / "S1Hand" / f"{SCENE}_S1Hand.tif", image, "float32")
    _write(out_dir / HAND / "LabelHand" / f"{SCENE}_LabelHand.tif", label, "int16")
    _write(out_dir / "mismatched_LabelHand.tif", label[:256, :256], "int16")
    return out_dir


if __name__ == "__main__":
    import sys

    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "generated")))
