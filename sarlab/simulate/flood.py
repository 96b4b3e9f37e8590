"""Simulated Sentinel-1 IW flood chips that look like Sen1Floods11's S1Hand/LabelHand pairs.

A default dataset has to run anywhere without a download, and still behave like SAR:
speckle with the product's ENL, classes at their published C-band brightness, water
that is dark because it is specular, flooded vegetation and towns that are bright
because of double bounce, a noise floor under the darkest water. :func:`flood_chip`
draws one such chip from a seed: a floodplain (:mod:`~sarlab.simulate.flood_landscape`),
a flood rising from its river, and the radiometry of
:mod:`~sarlab.simulate.flood_radiometry` (table of values and sources there). The result
is the Dataset :func:`sarlab.io.sen1floods11.open_sen1floods11` returns, and
:func:`sarlab.io.sen1floods11.write_sen1floods11` writes it in the dataset's own layout.

The water label follows Sen1Floods11's hand labels (drawn on Sentinel-2): open water
(permanent or flood) is 1; flooded vegetation is 0, as water under a canopy is not
visible to the labeller; the ``land_cover`` variable keeps it apart for those who want it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from rasterio.transform import from_origin
from rioxarray.rioxarray import affine_to_coords

from sarlab.conventions import IGNORE_INDEX, IMAGE_VAR, INCIDENCE_VAR, sar_attrs
from sarlab.io.sen1floods11 import SEN1FLOODS11_FLAGS
from sarlab.simulate import flood_landscape as fl
from sarlab.simulate.flood_radiometry import (
    LAND_COVER,
    REFERENCE_INCIDENCE_DEG,
    WATER_CODES,
    LandCover,
    measure,
    reflectivity,
)

__all__ = [
    "LAND_COVER",
    "REFERENCE_INCIDENCE_DEG",
    "REGIONS",
    "LandCover",
    "flood_chip",
    "flood_pair",
]

_BANDS = ["VV", "VH"]
_DEG_PER_M = 1.0 / 111319.49079327357  # Earth Engine's 10 m = 8.983e-05 deg
_IW_DEG_PER_KM = (46.0 - 29.1) / 250.0  # IW incidence range over its 250 km swath
_NODATA_CHANCE = 0.3

# (event name as in Sen1Floods11 chip names, description, lon range, lat range)
REGIONS = (
    ("Bangladesh", "Jamuna (Brahmaputra) floodplain", (89.55, 89.85), (24.0, 25.2)),
    ("Mekong", "Mekong floodplain, Cambodia", (104.8, 105.6), (10.8, 12.0)),
    ("Italy", "Po valley", (10.8, 12.2), (44.95, 45.15)),
    ("Paraguay", "Paraguay river south of Asuncion", (-58.4, -57.6), (-27.0, -25.6)),
    ("Bolivia", "Beni plains, Mamore river", (-65.9, -64.6), (-15.0, -13.6)),
    ("India", "Brahmaputra valley, Assam", (91.0, 93.5), (26.0, 26.8)),
    ("Nigeria", "Niger-Benue confluence", (6.5, 7.0), (7.5, 8.2)),
)


@dataclass(frozen=True)
class _Scene:
    """Everything about one place and orbit that both acquisitions of a pair share."""

    seed: int
    landscape: fl.Landscape
    flooded: np.ndarray
    incidence: np.ndarray
    nodata: np.ndarray
    nesz_db: float
    attrs: dict
    transform: object


def _nodata_strip(rng: np.random.Generator, size: int) -> np.ndarray:
    """A slanted band along one side: the swath or scene edge that real chips often show."""
    side, hit = rng.integers(4), rng.random()
    w0, w1 = rng.uniform(0.01, 0.16, 2) * size
    t = np.linspace(0.0, 1.0, size)
    along = np.broadcast_to(np.arange(size)[:, None], (size, size))
    across = np.broadcast_to(np.arange(size)[None, :], (size, size))
    width = w0 + (w1 - w0) * t
    if side in (0, 1):  # columns from the left or right edge, varying down the chip
        depth = across if side == 0 else size - 1 - across
        mask = depth < width[:, None]
    else:
        depth = along if side == 2 else size - 1 - along
        mask = depth < width[None, :]
    return mask if hit < _NODATA_CHANCE else np.zeros((size, size), dtype=bool)


def _scene(
    seed: int,
    size: int,
    incidence_deg: float | None,
    flood_fraction: float | None,
    pixel_m: float,
) -> _Scene:
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if flood_fraction is not None and not 0.0 <= flood_fraction <= 0.8:
        raise ValueError(f"flood_fraction must be in [0, 0.8], got {flood_fraction}")
    if incidence_deg is not None and not 20.0 <= incidence_deg <= 50.0:
        raise ValueError(f"incidence_deg {incidence_deg} is outside IW's range (about 29-46)")
    if not pixel_m > 0:
        raise ValueError(f"pixel_m must be positive, got {pixel_m}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0])))
    # every scene-level draw happens whatever the arguments, so they do not shift each other
    region = REGIONS[rng.integers(len(REGIONS))]
    lon = rng.uniform(*region[2])
    lat = rng.uniform(*region[3])
    ascending = bool(rng.random() < 0.5)
    platform = "Sentinel-1A" if rng.random() < 0.6 else "Sentinel-1B"
    ramp = size * pixel_m / 1000.0 * _IW_DEG_PER_KM
    theta0 = rng.uniform(30.0, 46.0 - ramp)
    nesz_db = round(float(rng.uniform(-25.0, -22.0)), 3)
    fraction = rng.uniform(0.1, 0.45)
    fraction = fraction if flood_fraction is None else flood_fraction
    nodata = _nodata_strip(rng, size)
    landscape = fl.make_landscape(rng, size)
    flooded, achieved = fl.flood(landscape, fraction)

    if incidence_deg is None:  # right-looking: incidence grows eastward when ascending
        x = np.arange(size) / max(size - 1, 1)
        row = theta0 + ramp * (x if ascending else 1.0 - x)
        incidence = np.broadcast_to(row, (size, size)).astype(np.float64)
    else:
        incidence = np.full((size, size), float(incidence_deg))
    pixel_deg = pixel_m * _DEG_PER_M
    attrs = {
        "platform": platform,
        "mode": "IW",
        "product": "GRD",
        "scene_id": f"{region[0]}_{int(seed)}",
        "event": region[0],
        "region": region[1],
        "orbit_pass": "ASCENDING" if ascending else "DESCENDING",
        "simulated": 1,
        "seed": int(seed),
        "nesz_db": nesz_db,
        "flood_fraction": round(achieved, 4),
        "source": f"sarlab.simulate.flood_chip(seed={int(seed)})",
        "dataset": "sarlab.simulate.flood (Sen1Floods11 layout)",
    }
    transform = from_origin(lon, lat, pixel_deg, pixel_deg)
    return _Scene(seed, landscape, flooded, incidence, nodata, nesz_db, attrs, transform)


def _acquire(scene: _Scene, land: np.ndarray, stream: int, enl: float, keep: bool, tex: bool):
    """One acquisition of ``scene`` with ``land`` cover: its own speckle, as an xr.Dataset."""
    if not enl > 0:
        raise ValueError(f"enl must be positive, got {enl}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(scene.seed), stream])))
    lsc = scene.landscape
    refl = reflectivity(land, scene.incidence, lsc.parcel_gain, lsc.texture_z if tex else None)
    image = measure(rng, refl, enl, scene.nesz_db)
    nodata = scene.nodata
    image[:, nodata] = np.nan
    size = land.shape[0]
    t = scene.transform
    coords = {"band": _BANDS, **affine_to_coords(t, size, size)}  # as rioxarray reads them
    water = np.isin(land, WATER_CODES).astype(np.uint8)
    water[nodata] = IGNORE_INDEX
    cover = np.where(nodata, IGNORE_INDEX, land).astype(np.uint8)
    incidence = np.where(nodata, np.nan, scene.incidence).astype(np.float32)
    names = sorted(LAND_COVER, key=lambda n: LAND_COVER[n].code)
    yx = ("y", "x")
    data = {
        IMAGE_VAR: (("band", "y", "x"), image, sar_attrs("sigma0", "dB", _BANDS)),
        INCIDENCE_VAR: (yx, incidence, {"units": "degrees", "long_name": "incidence angle"}),
        "water": (
            yx,
            water,
            {
                "flag_values": list(SEN1FLOODS11_FLAGS.values()),
                "flag_meanings": " ".join(SEN1FLOODS11_FLAGS),
                "ignore_index": IGNORE_INDEX,
            },
        ),
        "land_cover": (
            yx,
            cover,
            {
                "flag_values": [LAND_COVER[n].code for n in names],
                "flag_meanings": " ".join(names),
                "ignore_index": IGNORE_INDEX,
            },
        ),
    }
    if keep:
        refl = refl.astype(np.float32)
        refl[:, nodata] = np.nan
        attrs = {**sar_attrs("sigma0", "linear", _BANDS), "long_name": "speckle-free sigma0"}
        data["reflectivity"] = (("band", "y", "x"), refl, attrs)
    ds = xr.Dataset(data, coords=coords, attrs=dict(scene.attrs))
    return ds.rio.write_crs("EPSG:4326").rio.write_transform(t)


def flood_chip(
    seed: int,
    size: int = 512,
    *,
    enl: float = 4.4,
    incidence_deg: float | None = None,
    flood_fraction: float | None = None,
    pixel_m: float = 10.0,
    keep_reflectivity: bool = False,
    texture: bool = True,
) -> xr.Dataset:
    """One simulated IW VV/VH sigma0 (dB) chip during a flood, with its labels.

    ``incidence_deg=None`` places the chip somewhere in the IW swath (30-46 deg) with
    the small across-chip ramp of a 5 km footprint; a number makes it constant.
    ``flood_fraction`` is the inundated share of the chip (open flood water plus
    flooded vegetation; drawn in 0.1-0.45 when None; the achieved value is in attrs).
    ``keep_reflectivity`` adds the speckle-free linear sigma0 (``reflectivity``);
    ``texture=False`` makes every class homogeneous (speckle only). ``pixel_m`` sets
    the geo-transform and the incidence ramp; the landscape is drawn in pixels (fields
    of 20-80 px, rivers 6-28 px wide), so it is a 10 m landscape at any ``pixel_m``.
    Same seed and arguments give the same values, bit for bit.
    """
    scene = _scene(seed, size, incidence_deg, flood_fraction, pixel_m)
    ds = _acquire(scene, scene.flooded, 1, enl, keep_reflectivity, texture)
    ds.attrs["acquisition"] = "during-flood"
    return ds


def flood_pair(
    seed: int,
    size: int = 512,
    *,
    enl: float = 4.4,
    incidence_deg: float | None = None,
    flood_fraction: float | None = None,
    pixel_m: float = 10.0,
    keep_reflectivity: bool = False,
    texture: bool = True,
) -> tuple[xr.Dataset, xr.Dataset]:
    """(pre-flood, during-flood) chips of one place from the same orbit, for change detection.

    Same land, terrain, texture, geometry and nodata; the flood only in the second;
    independent speckle in each. The second equals :func:`flood_chip` with the same
    arguments. Both carry the same ``scene_id`` (attr ``acquisition`` tells them apart),
    so write them to different folders.
    """
    scene = _scene(seed, size, incidence_deg, flood_fraction, pixel_m)
    pre = _acquire(scene, scene.landscape.land_cover, 2, enl, keep_reflectivity, texture)
    pre.attrs.update(acquisition="pre-flood", flood_fraction=0.0)
    post = _acquire(scene, scene.flooded, 1, enl, keep_reflectivity, texture)
    post.attrs["acquisition"] = "during-flood"
    return pre, post
