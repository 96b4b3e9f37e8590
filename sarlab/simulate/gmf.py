"""C-band sigma0 of the wind-roughened sea: VV, HH and cross-pol geophysical model functions.

* VV: CMOD5.N (Hersbach, ECMWF Tech. Memo. 681, 2010; the CMOD5 form of Hersbach,
  Stoffelen & de Haan, J. Geophys. Res. 112, C03006, 2007, refitted for equivalent
  neutral winds). Coefficients as published and used in the NERSC/KNMI implementations.
* HH: VV divided by the polarisation ratio PR = VV/HH of Mouche et al. (IEEE TGRS 43(4),
  753-769, 2005), fitted to ENVISAT ASAR: it grows with incidence (about 0.3 dB at 20 deg,
  6 dB at 47 deg) and varies a little with wind direction. Coefficients as given in
  nansencenter/openwind issue #15.
* HV: linear in wind speed and independent of incidence and wind direction
  (Vachon & Wolfe, IEEE GRSL 8(3), 456-459, 2011); coefficients -35.60 dB + 0.59 dB per
  m/s as in van Zadelhoff et al. (Atmos. Meas. Tech. 7, 437-449, 2014). At 3-10 m/s this
  is -34 to -30 dB, below the EW noise floor: calm open water in HV shows the noise.

``phi`` is the wind direction relative to the radar look (0 = wind blowing towards the
radar, upwind), in degrees.

:func:`wind_field` makes the 10 m wind over a scene: a mean speed varying by about 15 %
over tens of km, wind streaks (boundary-layer rolls, ~1 km apart, elongated along the
wind; Alpers & Brümmer, J. Geophys. Res. 99(C6), 1994, describe them in SAR), sheltering
in the lee of the coast, and damping of the short (Bragg) waves among the ice: water
between floes looks calmer the higher the ice concentration (an approximation).
"""

from __future__ import annotations

import numpy as np

from sarlab.simulate.texture import SmoothField, key_of

__all__ = ["cmod5n_vv", "hh_sigma0", "hv_sigma0", "polarisation_ratio", "wind_field"]

RADAR_LOOK_DEG = 90.0  # the radar looks towards +x (map east in the simulated grid)

# CMOD5.N coefficients c1..c28 (index 0 unused)
_C = (
    0.0, -0.6878, -0.7957, 0.3380, -0.1728, 0.0000, 0.0040, 0.1103, 0.0159, 6.7329, 2.7713,
    -2.2885, 0.4971, -0.7250, 0.0450, 0.0066, 0.3222, 0.0120, 22.7000, 2.0813, 3.0000,
    8.3659, -3.3428, 1.3236, 6.2437, 2.3893, 0.3249, 4.1590, 1.6930,
)  # fmt: skip
_HV_DB = (-35.60, 0.59)  # intercept (dB), slope (dB per m/s)
# Mouche et al. 2005: PR(theta) = A exp(B theta) + C for upwind (0), crosswind, downwind (pi)
_PR = {"0": (0.00650704, 0.128983, 0.992839), "pi2": (0.00782194, 0.121405, 0.992839)}
_PR["pi"] = (0.00598416, 0.140952, 0.992885)


def cmod5n_vv(wind_speed: np.ndarray, phi: np.ndarray, incidence: np.ndarray) -> np.ndarray:
    """VV sigma0 (linear) from 10 m neutral wind speed (m/s), phi and incidence (deg)."""
    c = _C
    v = np.maximum(np.asarray(wind_speed, np.float64), 0.01)
    x = (np.asarray(incidence, np.float64) - 40.0) / 25.0
    cos_phi = np.cos(np.radians(phi))
    cos_2phi = 2.0 * cos_phi * cos_phi - 1.0
    a0 = c[1] + c[2] * x + c[3] * x * x + c[4] * x**3
    a1 = c[5] + c[6] * x
    a2 = c[7] + c[8] * x
    gamma = c[9] + c[10] * x + c[11] * x * x
    s0 = c[12] + c[13] * x
    s = a2 * v
    a3 = 1.0 / (1.0 + np.exp(-np.maximum(s, s0)))
    low = s < s0
    a3 = np.where(low, a3 * (np.where(low, s, s0) / s0) ** (s0 * (1.0 - a3)), a3)
    b0 = a3**gamma * 10.0 ** (a0 + a1 * v)
    b1 = c[15] * v * (0.5 + x - np.tanh(4.0 * (x + c[16] + c[17] * v)))
    b1 = (c[14] * (1.0 + x) - b1) / (np.exp(0.34 * (v - c[18])) + 1.0)
    v0 = c[21] + c[22] * x + c[23] * x * x
    d1 = c[24] + c[25] * x + c[26] * x * x
    d2 = c[27] + c[28] * x
    y0, pn = c[19], c[20]
    a, b = y0 - (y0 - 1.0) / pn, 1.0 / (pn * (y0 - 1.0) ** (pn - 1.0))
    v2 = v / v0 + 1.0
    v2 = np.where(v2 < y0, a + b * np.maximum(v2 - 1.0, 0.0) ** pn, v2)
    b2 = (-d1 + d2 * v2) * np.exp(-v2)
    return b0 * np.maximum(1.0 + b1 * cos_phi + b2 * cos_2phi, 1e-6) ** 1.6


def polarisation_ratio(incidence: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """VV/HH (linear) of the sea surface, Mouche et al. 2005."""
    theta = np.asarray(incidence, np.float64)
    p0, p90, p180 = (a * np.exp(b * theta) + c for a, b, c in _PR.values())
    c0 = (p0 + p180 + 2.0 * p90) / 4.0
    c1 = (p0 - p180) / 2.0
    c2 = (p0 + p180 - 2.0 * p90) / 4.0
    rad = np.radians(phi)
    return c0 + c1 * np.cos(rad) + c2 * np.cos(2.0 * rad)


def hh_sigma0(wind_speed: np.ndarray, phi: np.ndarray, incidence: np.ndarray) -> np.ndarray:
    """HH sigma0 (linear): CMOD5.N VV over the Mouche polarisation ratio."""
    return cmod5n_vv(wind_speed, phi, incidence) / polarisation_ratio(incidence, phi)


def hv_sigma0(wind_speed: np.ndarray) -> np.ndarray:
    """HV sigma0 (linear) of the sea, incidence independent (Vachon & Wolfe 2011 form)."""
    return 10.0 ** ((_HV_DB[0] + _HV_DB[1] * np.asarray(wind_speed, np.float64)) / 10.0)


def wind_field(
    x: np.ndarray,
    y: np.ndarray,
    mean_speed: float,
    direction_deg: float,
    key: int,
    distance_km: np.ndarray | None = None,
    sic: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """10 m wind speed (m/s, float32) at map points, and phi for the GMFs (deg).

    ``direction_deg`` is where the wind blows *to*, clockwise from map north (+y).
    ``distance_km`` (to land) shelters the coast; ``sic`` (AutoICE 0-10, 255 ignored)
    damps the water among the ice.
    """
    rad = np.radians(direction_deg)
    along = x * np.sin(rad) + y * np.cos(rad)
    across = x * np.cos(rad) - y * np.sin(rad)
    slow = SmoothField(key_of(key, "slow"), 30e3)(x, y)
    streaks = SmoothField(key_of(key, "streaks"), 900.0)(along / 6.0, across)
    speed = mean_speed * (1.0 + 0.15 * slow) * (1.0 + 0.08 * streaks)
    if distance_km is not None:
        speed = speed * (1.0 - 0.5 * np.exp(-np.asarray(distance_km) / 4.0))
    if sic is not None:
        concentration = np.where(np.asarray(sic) <= 10, sic, 0) / 10.0
        speed = speed * (1.0 - 0.75 * concentration)
    phi = np.mod(direction_deg - (RADAR_LOOK_DEG + 180.0), 360.0)
    return np.maximum(speed, 0.2).astype(np.float32), np.full(np.shape(x), phi, np.float32)
