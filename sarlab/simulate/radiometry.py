"""C-band HH/HV sigma0 of winter sea-ice surfaces, and how Sentinel-1 EW GRDM measures it.

Image model (the product model, Oliver & Quegan 1998), per band and pixel:

    I = (sigma0(theta) * T + NESZ) * v

``sigma0`` is the surface reflectivity: for ice and land a straight line in dB,
``sigma0_dB(theta) = sigma0_ref + slope * (theta - 35 deg)``, times a per-floe factor;
for open water the wind GMFs of :mod:`sarlab.simulate.gmf`. ``T`` is unit-mean Gamma
texture of the class's order (K-distributed intensity; order -> inf is a homogeneous
target), ``NESZ`` the thermal noise (:func:`sarlab.simulate.geometry.nesz_db`), added in
power because signal and noise are independent circular Gaussian fields, and ``v``
unit-mean Gamma(ENL) speckle, independent between HH and HV. Products are not thermal-noise
corrected unless asked (see :func:`sarlab.simulate.sea_ice.remove_noise`).

:data:`SURFACE_CLASSES` (winter, dry snow; sigma0 at 35 deg, dB; slope dB/deg):

=========================  ======  ======  ========  ========  =======
class                       HH dB   HV dB  HH slope  HV slope  texture
=========================  ======  ======  ========  ========  =======
open water                    GMF     GMF    (GMF)     (GMF)       15
new ice / nilas             -21.0   -31.0    -0.30     -0.20       30
young ice (grey/white)      -16.5   -26.5    -0.25     -0.16       12
thin first-year, level      -17.5   -27.0    -0.25     -0.16       15
thick first-year, level     -16.0   -25.5    -0.25     -0.16       12
old (multi-year) ice         -9.0   -17.5    -0.17     -0.10        6
deformed first-year ice     -11.0   -20.5    -0.24     -0.16        3
land (snow, rock, glacier)   -9.5   -16.0    -0.15     -0.10        2
=========================  ======  ======  ========  ========  =======

Sources and how the numbers were chosen:

* Slopes. Sentinel-1 EW winter, Kara Sea (Mäkynen & Karvonen, IEEE TGRS 55(11), 2017):
  deformed FYI -0.24 (HH) and -0.16 (HV) dB/deg, level FYI -0.25 (HH); HV of level FYI
  could not be fitted reliably (noise floor), so -0.16 is reused. C-band HH, FYI and MYI:
  -0.22 and -0.16 dB/deg (Mahmud et al., IEEE TGRS 56(11), 2018); RADARSAT Constellation
  winter FYI -0.235, MYI -0.167 dB/deg (IEEE TGRS 61, 2023, doi:10.1109/TGRS.2023.3315056).
  Old ice HV (-0.10), new/young ice and land slopes are approximations (MYI's volume
  scattering flattens the angular curve; smooth thin ice falls off steeply, like water).
* Levels are representative values inside the commonly reported winter C-band ranges
  (HH: smooth new ice / nilas about -25 to -18 dB, level FYI -20 to -14, deformed FYI
  -13 to -8, MYI -11 to -6; HV about 8-11 dB below HH), chosen, not fitted; treat them
  as approximations. Level FYI in HV sits at the EW noise floor, as observed (Aldenhoff
  et al., IEEE JSTARS 13, 2020). For scale: over the sea pixels of 16 simulated scenes
  the mean dB is HH -16.0 / HV -22.9 with the noise, HH -17.4 / HV -30.0 after
  :func:`~sarlab.simulate.sea_ice.remove_noise` (clipped at -40 dB); the AutoICE
  training set (NERSC noise-corrected) averages HH -14.5 / HV -24.7 dB
  (:data:`sarlab.io.ai4arctic.RTT_SCALER`): the simulation is a little darker in HH.
* Texture orders are illustrative K-distribution orders ordered by roughness (deformed
  ice and land heavy-tailed, smooth young ice nearly Gamma), not values from one study.
* ENL: 10.7 for EW GRD medium resolution (40 m pixels), the value ESA quotes for the
  product (the EW HR product is 2.7 looks, IW GRDH 4.4). The AI4Arctic ready-to-train
  files are 2x2-averaged to 80 m, which raises it (by less than 4: neighbouring 40 m
  pixels are correlated); pass ``enl`` to model that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sarlab.simulate import gmf
from sarlab.simulate.texture import gamma_texture, speckle

__all__ = [
    "BANDS",
    "SURFACE_CLASSES",
    "THETA_REF",
    "SurfaceClass",
    "class_sigma0_db",
    "reflectivity",
    "render_intensity",
    "texture_orders",
]

THETA_REF = 35.0
BANDS = ("HH", "HV")


@dataclass(frozen=True)
class SurfaceClass:
    """One surface type: its code in the ``surface`` map and its C-band signature."""

    code: int
    name: str
    sod: int | None  # AutoICE stage of development, None where it depends on the polygon
    hh_db: float  # sigma0 at THETA_REF; NaN for open water (wind GMF)
    hv_db: float
    hh_slope: float  # dB per degree of incidence
    hv_slope: float
    texture_order: float  # K-distribution order; inf = homogeneous


_NAN = float("nan")
SURFACE_CLASSES: tuple[SurfaceClass, ...] = (
    SurfaceClass(0, "open_water", 0, _NAN, _NAN, _NAN, _NAN, 15.0),
    SurfaceClass(1, "new_ice", 1, -21.0, -31.0, -0.30, -0.20, 30.0),
    SurfaceClass(2, "young_ice", 2, -16.5, -26.5, -0.25, -0.16, 12.0),
    SurfaceClass(3, "thin_first_year_ice", 3, -17.5, -27.0, -0.25, -0.16, 15.0),
    SurfaceClass(4, "thick_first_year_ice", 4, -16.0, -25.5, -0.25, -0.16, 12.0),
    SurfaceClass(5, "old_ice", 5, -9.0, -17.5, -0.167, -0.10, 6.0),
    SurfaceClass(6, "deformed_first_year_ice", None, -11.0, -20.5, -0.24, -0.16, 3.0),
    SurfaceClass(7, "land", None, -9.5, -16.0, -0.15, -0.10, 2.0),
)
_TABLE = np.array(
    [[c.hh_db, c.hv_db, c.hh_slope, c.hv_slope, c.texture_order] for c in SURFACE_CLASSES]
)


def class_sigma0_db(surface: np.ndarray, incidence: np.ndarray, band: str) -> np.ndarray:
    """sigma0 (dB) of each pixel's class at its incidence (NaN for open water)."""
    b = BANDS.index(band)
    surface = np.asarray(surface)
    return _TABLE[surface, b] + _TABLE[surface, 2 + b] * (np.asarray(incidence) - THETA_REF)


def texture_orders(surface: np.ndarray) -> np.ndarray:
    """K-distribution texture order of each pixel's class."""
    return _TABLE[np.asarray(surface), 4]


def reflectivity(
    surface: np.ndarray,
    incidence: np.ndarray,
    wind_speed: np.ndarray | float = 0.0,
    wind_phi: np.ndarray | float = 0.0,
    offset_db: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Noise-free mean sigma0, linear, (band, y, x) float32.

    Ice and land follow :data:`SURFACE_CLASSES` (plus ``offset_db``, the per-floe
    variation); open water (code 0) the wind GMFs with ``wind_speed`` (m/s) and
    ``wind_phi`` (deg from upwind).
    """
    surface = np.asarray(surface)
    incidence = np.broadcast_to(np.asarray(incidence, np.float64), surface.shape)
    out = np.empty((2, *surface.shape), np.float32)
    for b, band in enumerate(BANDS):
        db = class_sigma0_db(surface, incidence, band) + offset_db
        out[b] = 10.0 ** (db / 10.0)
    water = surface == 0
    if water.any():
        speed = np.broadcast_to(wind_speed, surface.shape)[water]
        phi = np.broadcast_to(wind_phi, surface.shape)[water]
        out[0][water] = gmf.hh_sigma0(speed, phi, incidence[water])
        out[1][water] = gmf.hv_sigma0(speed)
    return out


def render_intensity(
    reflectivity: np.ndarray,
    surface: np.ndarray,
    rng: np.random.Generator,
    *,
    enl: float,
    nesz: np.ndarray | None = None,
    texture: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Measured intensity (band, y, x) and the texture used: ``(R * T + NESZ) * v``.

    ``nesz`` (linear, broadcastable to ``reflectivity``) is None for a noise-free
    sensor; ``texture=False`` sets T = 1 (pure Gamma speckle, for ENL checks). Draws the
    texture first, then HH and HV speckle, from ``rng``.
    """
    orders = texture_orders(surface) if texture else np.full(np.shape(surface), np.inf)
    tex = gamma_texture(rng, orders)
    signal = reflectivity * tex
    if nesz is not None:
        signal = signal + nesz
    return (signal * speckle(rng, signal.shape, enl)).astype(np.float32), tex
