"""Generate one BigEarthNet-S1 patch in the released layout (seeded).

Mirrors the real v1.0 patches: ``<name>/<name>_VV.tif`` and ``_VH.tif`` (120x120
float32 dB, UTM 29N, 10 m, no nodata tag, GDAL's WKT) and ``<name>_labels_metadata.json``
with the released keys, including its ``lly`` spelling of the lower-right y.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

SEED = 43
NAME = "S1B_IW_GRDH_1SDV_20180504T181516_29UPU_12_34"
SCENE = "S1B_IW_GRDH_1SDV_20180504T181516_20180504T181541_010790_013B2A_ABCD"
ULX, ULY = 604800, 5834040
LABELS = ["Pastures", "Water bodies", "Port areas"]


def make(out_dir: Path) -> Path:
    """Write the patch folder into ``out_dir`` and return ``out_dir``."""
    patch = Path(out_dir) / NAME
    patch.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    crs = CRS.from_epsg(32629)
    bands = {
        "VV": (-12.0 + rng.normal(0.0, 3.0, (120, 120))).astype(np.float32),
        "VH": (-19.0 + rng.normal(0.0, 3.0, (120, 120))).astype(np.float32),
    }
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "height": 120,
        "width": 120,
        "crs": crs,
        "transform": from_origin(ULX, ULY, 10.0, 10.0),
    }
    for pol, band in bands.items():
        with rasterio.open(patch / f"{NAME}_{pol}.tif", "w", **profile) as dst:
            dst.write(band, 1)
    meta = {
        "labels": LABELS,
        "coordinates": {"ulx": ULX, "uly": ULY, "lrx": ULX + 1200, "lly": ULY - 1200},
        "projection": crs.to_wkt(),
        "corresponding_s2_patch": "S2B_MSIL2A_20180504T113309_12_34",
        "scene_source": SCENE,
        "acquisition_time": "2018-05-04T18:15:16",
    }
    (patch / f"{NAME}_labels_metadata.json").write_text(json.dumps(meta))
    return Path(out_dir)


if __name__ == "__main__":
    import sys

    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "generated")))
