"""Generate small Sentinel-1-like GeoTIFFs for the open_geotiff tests (seeded).

Written with rasterio directly, not with sarlab's writer, so the reader is tested
against files it did not produce. Values are chosen so tests can check them:
VV = -10 dB + noise, VH = VV - 7 dB, the incidence angle grows from 30 to 45
degrees across the swath, and the top-left 4x4 block is nodata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

SEED = 1
HEIGHT, WIDTH = 64, 96
CRS = "EPSG:32633"
TRANSFORM = from_origin(373200.0, 5353200.0, 10.0, 10.0)
NODATA = -9999.0


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    vv = (-10.0 + rng.normal(0.0, 2.0, (HEIGHT, WIDTH))).astype(np.float32)
    vh = (vv - 7.0).astype(np.float32)
    angle = np.broadcast_to(np.linspace(30.0, 45.0, WIDTH, dtype=np.float32), (HEIGHT, WIDTH))
    return {"VV": vv, "VH": vh, "angle": np.ascontiguousarray(angle)}


def _write(
    path: Path,
    bands: list[np.ndarray],
    *,
    descriptions=None,
    tags=None,
    band_tags=None,
    nodata=NODATA,
    transform=TRANSFORM,
    driver="GTiff",
) -> None:
    profile = {
        "driver": driver,
        "dtype": "float32",
        "count": len(bands),
        "height": bands[0].shape[0],
        "width": bands[0].shape[1],
        "crs": CRS,
        "transform": transform,
        "nodata": nodata,
    }
    with rasterio.open(path, "w", **profile) as dst:
        for i, band in enumerate(bands, start=1):
            dst.write(band, i)
            if descriptions:
                dst.set_band_description(i, descriptions[i - 1])
            if band_tags:
                dst.update_tags(i, **band_tags[i - 1])
        if tags:
            dst.update_tags(**tags)


def make(out_dir: Path) -> Path:
    """Write every fixture file into ``out_dir`` and return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    a = _arrays()
    vv, vh = a["VV"].copy(), a["VH"].copy()
    vv[:4, :4] = NODATA
    vh[:4, :4] = NODATA

    # One COG: VV, VH, incidence angle; dB stated in tags, nodata -9999.
    _write(
        out_dir / "multiband_db.tif",
        [vv, vh, a["angle"]],
        descriptions=["VV", "VH", "incidence_angle"],
        tags={"units": "dB", "quantity": "sigma0", "scene_id": "multiband_scene"},
        driver="COG",
    )
    # Same pixels, no descriptions, units or nodata tag: the caller has to say.
    _write(out_dir / "bare.tif", [vv, vh], nodata=None)
    # An unknown polarisation named in the band tags.
    _write(
        out_dir / "unknown_pol.tif",
        [vv, vh],
        descriptions=["VV", "VH"],
        band_tags=[{"POLARIZATION": "VV"}, {"POLARIZATION": "XX"}],
        tags={"units": "dB"},
    )
    # Units stated twice, inconsistently.
    _write(
        out_dir / "conflicting_units.tif",
        [vv, vh],
        descriptions=["VV", "VH"],
        tags={"UNITS": "dB"},
        band_tags=[{"units": "linear"}, {}],
    )

    # One file per polarisation, linear power, polarisation only in the file name.
    linear = {
        p: np.where(b == NODATA, NODATA, 10.0 ** (b / 10.0)).astype(np.float32)
        for p, b in (("VV", vv), ("VH", vh))
    }
    for pol, band in linear.items():
        _write(out_dir / f"scene_{pol}.tif", [band], tags={"UNITS": "linear"})
    _write(out_dir / "scene_incidence_angle.tif", [a["angle"]], nodata=None)
    shifted = from_origin(373210.0, 5353200.0, 10.0, 10.0)
    _write(out_dir / "shifted_VH.tif", [linear["VH"]], tags={"UNITS": "linear"}, transform=shifted)

    # Broken files.
    whole = (out_dir / "multiband_db.tif").read_bytes()
    (out_dir / "truncated.tif").write_bytes(whole[: len(whole) // 2])
    (out_dir / "not_a_tiff.tif").write_text("<html>404 Not Found</html>\n")
    return out_dir


if __name__ == "__main__":
    import sys

    print(make(Path(sys.argv[1] if len(sys.argv) > 1 else "generated")))
