"""C-band backscatter of floodplain land cover, and how Sentinel-1 IW GRD measures it.

Each class has a mean sigma0 (VV, VH) at a reference incidence angle, a linear
dB-per-degree slope, and a texture order. The image model is the product model
(Oliver & Quegan, *Understanding Synthetic Aperture Radar Images*, 1998):

    I = (sigma0_class(theta) * gain * T + N) * v

with ``T`` a unit-mean Gamma texture of the class order (spatially correlated over a
pixel or two; order -> infinity is a homogeneous target), ``gain`` a per-field factor
for crops and bare soil (crop stage, soil moisture), ``N`` the noise floor and ``v``
unit-mean Gamma(ENL) speckle, independent per band.

Values (sigma0 dB at 37 deg; slope dB/deg; texture order). They are representative
C-band values chosen inside the ranges reported by the sources below, not a fit to one
dataset; treat them as approximations.

======================  =======  =======  ========  ========  =======
class                    VV dB    VH dB   VV slope  VH slope  texture
======================  =======  =======  ========  ========  =======
permanent water          -21.0    -27.5    -0.50     -0.30      40
flooded water            -20.0    -27.0    -0.50     -0.30      40
flooded vegetation        -6.0    -15.5    -0.15     -0.10       6
crops / grassland        -10.0    -16.5    -0.20     -0.15      12
forest                    -7.5    -13.0    -0.10     -0.05       8
urban                     -4.0    -11.5    -0.10     -0.10     1.5
bare soil                -11.5    -19.0    -0.25     -0.20      20
======================  =======  =======  ========  ========  =======

* Water: specular reflection away from the sensor, VV about -18 to -25 dB and VH
  about -25 to -30 dB across the IW swath, falling steeply with incidence (the
  strongest negative slope of all land covers); threshold methods such as Otsu rely
  on it, and it is what Sen1Floods11's S1Hand chips (Bonafilia et al., CVPRW 2020)
  show over water. Open flood water over fields is slightly rougher than a river
  (stubble, wind fetch).
* Flooded vegetation: the water surface and stems form a dihedral; co-pol backscatter
  rises by a few dB over the same vegetation when dry while cross-pol changes little
  (Martinis & Rieke, Remote Sens. 7(6), 2015, River Saale; Tsyganskaya et al., Int. J.
  Remote Sens. 39(8), 2018, review; Hess et al., Int. J. Remote Sens. 11(7), 1990,
  3-10 dB at L-band, less at C-band). Here +4 dB VV and +1 dB VH over crops.
* Forest: volume scattering, VV about -7 to -8 dB, VH about -12 to -14 dB, nearly
  flat with incidence. Urban: double bounce from walls and streets, the brightest VV
  and the heaviest texture (low K-distribution order). Crops/grassland and bare soil:
  surface plus some volume scattering, moderate slopes (TU Wien slope study, Remote
  Sens. 17(3):361, 2025: steep for water, moderate for bare soil, flat for forest).
  Bare soil is set for the wet soils of a flood season (dry smooth soil can be as dark
  as -22 dB in VH and is a known false alarm of water thresholds).
* Noise: Sentinel-1 IW NESZ is specified at -22 dB or better; each chip draws it in
  -25 to -22 dB. GRD chips (as in Earth Engine's COPERNICUS/S1_GRD) are thermal-noise
  corrected, so only a residual floor remains. It is modelled as NESZ - 7 dB added to
  the reflectivity before speckle (an approximation of the correction's residual).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import numpy as np
from scipy import special

REFERENCE_INCIDENCE_DEG = 37.0
NOISE_RESIDUAL_DB = -7.0  # what thermal-noise removal leaves of the NESZ
_Z_GRID = np.linspace(-6.0, 6.0, 1201)


@dataclass(frozen=True)
class LandCover:
    """Radiometry of one land-cover class (sigma0 in dB at the reference incidence)."""

    code: int
    vv_db: float
    vh_db: float
    vv_slope: float  # dB per degree of incidence
    vh_slope: float
    texture_order: float  # Gamma texture shape; large = homogeneous
    water: bool  # labelled water (1) in Sen1Floods11's hand-label convention


LAND_COVER = MappingProxyType(
    {
        "permanent_water": LandCover(0, -21.0, -27.5, -0.50, -0.30, 40.0, True),
        "flooded_water": LandCover(1, -20.0, -27.0, -0.50, -0.30, 40.0, True),
        "flooded_vegetation": LandCover(2, -6.0, -15.5, -0.15, -0.10, 6.0, False),
        "crops_grassland": LandCover(3, -10.0, -16.5, -0.20, -0.15, 12.0, False),
        "forest": LandCover(4, -7.5, -13.0, -0.10, -0.05, 8.0, False),
        "urban": LandCover(5, -4.0, -11.5, -0.10, -0.10, 1.5, False),
        "bare_soil": LandCover(6, -11.5, -19.0, -0.25, -0.20, 20.0, False),
    }
)
_CLASSES = sorted(LAND_COVER.values(), key=lambda c: c.code)
assert [c.code for c in _CLASSES] == list(range(len(_CLASSES)))
WATER_CODES = tuple(c.code for c in _CLASSES if c.water)
_GAIN_CODES = (LAND_COVER["crops_grassland"].code, LAND_COVER["bare_soil"].code)


def class_sigma0_db(land_cover: np.ndarray, incidence: np.ndarray) -> np.ndarray:
    """(2, y, x) sigma0 in dB (VV, VH) of each pixel's class at its incidence angle."""
    codes = np.minimum(land_cover, len(_CLASSES) - 1)
    delta = incidence - REFERENCE_INCIDENCE_DEG
    out = []
    for ref, slope in (("vv_db", "vv_slope"), ("vh_db", "vh_slope")):
        refs = np.array([getattr(c, ref) for c in _CLASSES])
        slopes = np.array([getattr(c, slope) for c in _CLASSES])
        out.append(refs[codes] + slopes[codes] * delta)
    return np.stack(out)


@lru_cache(maxsize=1)
def _texture_tables() -> np.ndarray:
    """Gamma(order) quantiles on a standard-normal grid, one row per class (a copula map)."""
    u = special.ndtr(_Z_GRID)
    rows = [special.gammaincinv(c.texture_order, u) / c.texture_order for c in _CLASSES]
    return np.stack(rows)


def texture(land_cover: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Unit-mean Gamma texture of each pixel's class order, driven by a normal field ``z``."""
    tables = _texture_tables()
    codes = np.minimum(land_cover, len(_CLASSES) - 1)
    pos = (np.clip(z, _Z_GRID[0], _Z_GRID[-1]) - _Z_GRID[0]) / (_Z_GRID[1] - _Z_GRID[0])
    i0 = np.minimum(pos.astype(np.intp), _Z_GRID.size - 2)
    frac = pos - i0
    return tables[codes, i0] * (1 - frac) + tables[codes, i0 + 1] * frac


def reflectivity(
    land_cover: np.ndarray,
    incidence: np.ndarray,
    parcel_gain: np.ndarray,
    texture_z: np.ndarray | None,
) -> np.ndarray:
    """(2, y, x) speckle-free linear sigma0: class mean x field gain x texture."""
    refl = 10.0 ** (class_sigma0_db(land_cover, incidence) / 10.0)
    refl *= np.where(np.isin(land_cover, _GAIN_CODES), parcel_gain, 1.0)
    if texture_z is not None:
        refl *= texture(land_cover, texture_z)
    return refl


def measure(rng: np.random.Generator, refl: np.ndarray, enl: float, nesz_db: float) -> np.ndarray:
    """What the GRD records, in dB: residual noise floor added, then Gamma(ENL) speckle."""
    floor = 10.0 ** ((nesz_db + NOISE_RESIDUAL_DB) / 10.0)
    speckle = rng.standard_gamma(enl, refl.shape) / enl
    return (10.0 * np.log10((refl + floor) * speckle)).astype(np.float32)
