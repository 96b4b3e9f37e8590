"""BigEarthNet-S1 patches (Sumbul et al. 2019; S1 part: Sumbul et al. 2021) and their labels.

A patch folder ``<name>/`` holds ``<name>_VV.tif`` and ``<name>_VH.tif`` (120x120
float32 sigma0 in dB, UTM, 10 m, no nodata tag) and ``<name>_labels_metadata.json``
(CORINE 2018 multi-labels, bounding box, projection WKT, source scene, acquisition
time). The JSON is checked against the rasters, so a patch whose files disagree is
caught here rather than as a silently mislabelled training sample.

Labels come in the 43 CORINE level-3 classes; most work uses the 19-class
nomenclature of Sumbul et al. 2020 ("BigEarthNet Deep Learning Models with a New
Class-Nomenclature", IEEE GRSM), which merges some classes and drops ten that cannot
be recognised in a 1.2 km patch (roads, ports, airports, mines, dumps, construction
sites, green urban areas, sport facilities, bare rock, burnt areas).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyproj
import xarray as xr

from sarlab.errors import InputError
from sarlab.io.geotiff import open_geotiff, parse_s1_name

__all__ = [
    "BIGEARTHNET_19",
    "BIGEARTHNET_43",
    "BIGEARTHNET_43_TO_19",
    "bigearthnet_multi_hot",
    "open_bigearthnet_s1",
]

PathLike = str | os.PathLike[str]

#: The 43 CORINE level-3 labels, in the order of BigEarthNet's label_indices.json.
BIGEARTHNET_43: tuple[str, ...] = (
    "Continuous urban fabric",
    "Discontinuous urban fabric",
    "Industrial or commercial units",
    "Road and rail networks and associated land",
    "Port areas",
    "Airports",
    "Mineral extraction sites",
    "Dump sites",
    "Construction sites",
    "Green urban areas",
    "Sport and leisure facilities",
    "Non-irrigated arable land",
    "Permanently irrigated land",
    "Rice fields",
    "Vineyards",
    "Fruit trees and berry plantations",
    "Olive groves",
    "Pastures",
    "Annual crops associated with permanent crops",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland",
    "Moors and heathland",
    "Sclerophyllous vegetation",
    "Transitional woodland/shrub",
    "Beaches, dunes, sands",
    "Bare rock",
    "Sparsely vegetated areas",
    "Burnt areas",
    "Inland marshes",
    "Peatbogs",
    "Salt marshes",
    "Salines",
    "Intertidal flats",
    "Water courses",
    "Water bodies",
    "Coastal lagoons",
    "Estuaries",
    "Sea and ocean",
)

#: The 19-class nomenclature (Sumbul et al. 2020), in its published order.
BIGEARTHNET_19: tuple[str, ...] = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)

# Indices into BIGEARTHNET_43 merged into each 19-class label (label_conversion).
_CONVERSION: tuple[tuple[int, ...], ...] = (
    (0, 1),
    (2,),
    (11, 12, 13),
    (14, 15, 16, 18),
    (17,),
    (19,),
    (20,),
    (21,),
    (22,),
    (23,),
    (24,),
    (25, 31),
    (26, 27),
    (28,),
    (29,),
    (33, 34),
    (35, 36, 37),
    (38, 39),
    (40, 41, 42),
)

#: 43-class name -> 19-class name; the ten dropped classes are absent.
BIGEARTHNET_43_TO_19: dict[str, str] = {
    BIGEARTHNET_43[old]: new
    for new, olds in zip(BIGEARTHNET_19, _CONVERSION, strict=True)
    for old in olds
}


def _check_labels(labels: Iterable[str], path: PathLike | None) -> list[str]:
    labels = [str(label) for label in labels]
    unknown = [
        label for label in labels if label not in BIGEARTHNET_43 and label not in BIGEARTHNET_19
    ]
    if unknown:
        raise InputError(path, f"unknown BigEarthNet label(s) {unknown}")
    return labels


def bigearthnet_multi_hot(labels: Iterable[str], scheme: str | int = "19") -> np.ndarray:
    """Multi-hot uint8 vector of ``labels`` in the 19- or 43-class nomenclature.

    43-class names are mapped to 19 classes (the ten dropped ones set nothing);
    19-class names are accepted for ``scheme="19"``. Unknown names are an error,
    because a typo would otherwise silently become an all-zero target.
    """
    scheme = str(scheme)
    if scheme not in ("19", "43"):
        raise ValueError(f"scheme must be '19' or '43', got {scheme!r}")
    labels = _check_labels(labels, None)
    names = BIGEARTHNET_19 if scheme == "19" else BIGEARTHNET_43
    hot = np.zeros(len(names), dtype=np.uint8)
    for label in labels:
        if scheme == "43":
            if label not in BIGEARTHNET_43:
                raise InputError(None, f"{label!r} is a 19-class name; it has no 43-class index")
            hot[BIGEARTHNET_43.index(label)] = 1
        elif label in BIGEARTHNET_19:
            hot[BIGEARTHNET_19.index(label)] = 1
        elif label in BIGEARTHNET_43_TO_19:
            hot[BIGEARTHNET_19.index(BIGEARTHNET_43_TO_19[label])] = 1
    return hot


def _patch_files(patch_dir: Path) -> tuple[Path, Path, Path]:
    if not patch_dir.is_dir():
        raise InputError(patch_dir, "not a BigEarthNet-S1 patch folder")
    name = patch_dir.name
    if not (patch_dir / f"{name}_VV.tif").is_file():
        found = sorted(patch_dir.glob("*_VV.tif"))
        if len(found) == 1:
            name = found[0].name[: -len("_VV.tif")]
    files = tuple(
        patch_dir / f"{name}{suffix}" for suffix in ("_VV.tif", "_VH.tif", "_labels_metadata.json")
    )
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise InputError(patch_dir, f"missing {', '.join(missing)}")
    return files


def _read_metadata(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})") from exc
    missing = [k for k in ("labels", "coordinates", "projection") if k not in meta]
    if missing:
        raise InputError(path, f"lacks {missing}")
    return meta


def _check_geometry(ds: xr.Dataset, meta: dict, path: Path) -> None:
    """The JSON's projection and bounding box must describe the rasters beside it."""
    try:
        json_epsg = pyproj.CRS.from_wkt(meta["projection"]).to_epsg()
    except pyproj.exceptions.CRSError as exc:
        raise InputError(path, f"projection is not valid WKT ({exc})") from exc
    tif_epsg = ds.rio.crs.to_epsg() if ds.rio.crs is not None else None
    if json_epsg != tif_epsg:
        raise InputError(
            path, f"projection EPSG:{json_epsg} differs from the rasters' EPSG:{tif_epsg}"
        )
    box = meta["coordinates"]
    # The released files call the lower-right y "lly"; accept the regular name too.
    lry = box.get("lry", box.get("lly"))
    left, bottom, right, top = ds.rio.bounds()
    res = abs(ds.rio.resolution()[0])
    want = (box["ulx"], lry, box["lrx"], box["uly"])
    if not np.allclose((left, bottom, right, top), want, atol=res / 2):
        raise InputError(
            path, f"bounding box {want} differs from the rasters' {(left, bottom, right, top)}"
        )


def open_bigearthnet_s1(patch_dir: PathLike, *, chunks: object = None) -> xr.Dataset:
    """Read one BigEarthNet-S1 patch (VV, VH sigma0 dB) with its labels and provenance."""
    patch_dir = Path(patch_dir)
    vv, vh, meta_path = _patch_files(patch_dir)
    meta = _read_metadata(meta_path)
    labels = _check_labels(meta["labels"], meta_path)
    ds = open_geotiff({"VV": vv, "VH": vh}, units="dB", quantity="sigma0", chunks=chunks)
    _check_geometry(ds, meta, meta_path)
    scene = str(meta.get("scene_source", ""))
    attrs = parse_s1_name(scene or patch_dir.name)
    attrs.pop("polarizations", None)
    start = attrs.pop("start_time", "")
    ds.attrs = {
        **attrs,
        "scene_id": vv.name[: -len("_VV.tif")],
        "source_scene_id": scene,
        "acquisition_time": str(meta.get("acquisition_time", start)),
        "labels": labels,
        "s2_patch": str(meta.get("corresponding_s2_patch", "")),
        "source": str(patch_dir),
        "dataset": "BigEarthNet-S1",
    }
    return ds
