"""Simulated BigEarthNet-S1 patches: flood-simulator landscapes with CORINE-style multi-labels.

BigEarthNet-S1 (Sumbul et al. 2021) patches are 120 x 120 px of IW VV/VH sigma0 in dB
at 10 m in UTM, labelled with every CORINE class present in the 1.2 km footprint. The
flood simulator's dry landscape (fields, forest, towns, bare soil, rivers and lakes) has
the same radiometry, so a patch's land-cover map turns into its label list. Patches are
written in the released layout (``<name>/<name>_VV.tif``, ``_VH.tif``,
``_labels_metadata.json``), so :func:`sarlab.io.open_bigearthnet_s1` reads them as it
reads real ones. As in the archive, neighbouring patches are cut from one source
product: every ``patches_per_scene`` patches tile one simulated landscape, and a split
by scene keeps them together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from tqdm.auto import tqdm

from sarlab.simulate.flood import flood_chip
from sarlab.simulate.flood_radiometry import LAND_COVER

__all__ = ["LAND_COVER_TO_CORINE", "write_bigearthnet_patches"]

PATCH_PX = 120
PIXEL_M = 10.0
#: Simulated land cover -> the CORINE level-3 (43-class) label it is charted as.
LAND_COVER_TO_CORINE: dict[str, str] = {
    "permanent_water": "Water bodies",
    "flooded_water": "Water bodies",
    "flooded_vegetation": "Inland marshes",
    "crops_grassland": "Non-irrigated arable land",
    "forest": "Broad-leaved forest",
    "urban": "Discontinuous urban fabric",
    "bare_soil": "Sparsely vegetated areas",
}
_UTM_33N = 32633


def _labels(land_cover: np.ndarray, min_share: float) -> list[str]:
    """CORINE labels of the classes covering at least ``min_share`` of the patch."""
    labels: list[str] = []
    for name, cover in LAND_COVER.items():
        corine = LAND_COVER_TO_CORINE[name]
        if np.mean(land_cover == cover.code) >= min_share and corine not in labels:
            labels.append(corine)
    return labels


def _write_patch(root: Path, name: str, scene: str, vv: np.ndarray, vh: np.ndarray,
                 labels: list[str], ulx: float, uly: float, when: str) -> None:  # fmt: skip
    patch = root / name
    patch.mkdir(parents=True, exist_ok=True)
    crs = CRS.from_epsg(_UTM_33N)
    profile = {
        "driver": "GTiff", "dtype": "float32", "count": 1, "height": PATCH_PX,
        "width": PATCH_PX, "crs": crs, "transform": from_origin(ulx, uly, PIXEL_M, PIXEL_M),
    }  # fmt: skip
    for pol, band in (("VV", vv), ("VH", vh)):
        with rasterio.open(patch / f"{name}_{pol}.tif", "w", **profile) as dst:
            dst.write(band.astype(np.float32), 1)
    size = PATCH_PX * PIXEL_M
    meta = {
        "labels": labels,
        "coordinates": {"ulx": ulx, "uly": uly, "lrx": ulx + size, "lly": uly - size},
        "projection": crs.to_wkt(),
        "corresponding_s2_patch": "",
        "scene_source": scene,
        "acquisition_time": when,
    }
    (patch / f"{name}_labels_metadata.json").write_text(json.dumps(meta), encoding="utf-8")


def write_bigearthnet_patches(
    out_dir: str | os.PathLike[str],
    n_patches: int = 48,
    seed: int = 0,
    *,
    patches_per_scene: int = 16,
    min_share: float = 0.02,
    progress: bool = True,
) -> list[Path]:
    """Write ``n_patches`` simulated BigEarthNet-S1 patch folders into ``out_dir``.

    A class is labelled when it covers at least ``min_share`` of the patch (CORINE's
    minimum mapping unit is 25 ha, about 2 % of a patch). Returns the patch folders,
    sorted. Same seed, same bytes.
    """
    if n_patches < 1 or patches_per_scene < 1:
        raise ValueError("n_patches and patches_per_scene must be positive")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([int(seed), 0xBE])
    side = int(np.ceil(np.sqrt(patches_per_scene)))  # patches per row of a product's tile
    folders, chip = [], None
    for i in tqdm(range(n_patches), desc="BigEarthNet-S1 patches", disable=not progress):
        scene_no, k = divmod(i, patches_per_scene)
        row, col = divmod(k, side)
        if k == 0:  # a new source product: one dry landscape (no flood) cut into patches
            chip = flood_chip(int(rng.integers(2**31)), side * PATCH_PX, flood_fraction=0.0)
        stamp = f"201706{1 + scene_no % 28:02d}T0530{scene_no % 60:02d}"
        scene = (f"S1A_IW_GRDH_1SDV_{stamp}_{stamp[:-2]}59_0{17000 + scene_no}_01{scene_no:04X}_"
                 f"{0x5100 + scene_no:04X}")  # fmt: skip
        window = (slice(None), slice(row * PATCH_PX, (row + 1) * PATCH_PX),
                  slice(col * PATCH_PX, (col + 1) * PATCH_PX))  # fmt: skip
        backscatter = chip["backscatter"].values[window]
        labels = _labels(chip["land_cover"].values[window[1:]], min_share)
        ulx = 400_000.0 + 20_000.0 * scene_no + col * PATCH_PX * PIXEL_M
        uly = 5_300_000.0 - row * PATCH_PX * PIXEL_M
        name = f"S1A_IW_GRDH_1SDV_{stamp}_33UUP_{scene_no}_{k}"
        _write_patch(root, name, scene, backscatter[0], backscatter[1], labels, ulx, uly,
                     stamp)  # fmt: skip
        folders.append(root / name)
    return sorted(folders)
