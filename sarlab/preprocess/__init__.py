"""Preprocessing of SAR backscatter: units, speckle, incidence angle, multilooking, statistics.

Every step checks the ``units``/``quantity`` attrs that sarlab readers set and
refuses input it would silently mangle (dB into a speckle filter, a second dB
conversion). Steps take a sarlab Dataset (acting on its ``backscatter``), a
DataArray, and where it makes sense a plain numpy array.
"""

from __future__ import annotations

from sarlab.preprocess.incidence import fit_incidence_slope, normalize_incidence
from sarlab.preprocess.multilook import multilook, multilook_array
from sarlab.preprocess.normalize import BandStats, compute_band_stats
from sarlab.preprocess.radiometry import (
    beta0_to_sigma0,
    db_to_linear,
    gamma0_to_sigma0,
    linear_to_db,
    sigma0_to_beta0,
    sigma0_to_gamma0,
    to_db,
    to_intensity,
    to_linear,
)
from sarlab.preprocess.speckle import (
    boxcar,
    enl_map,
    estimate_enl,
    estimate_enl_auto,
    gamma_map,
    lee,
    local_stats,
    refined_lee,
)

__all__ = [
    "BandStats",
    "beta0_to_sigma0",
    "boxcar",
    "compute_band_stats",
    "db_to_linear",
    "enl_map",
    "estimate_enl",
    "estimate_enl_auto",
    "fit_incidence_slope",
    "gamma0_to_sigma0",
    "gamma_map",
    "lee",
    "linear_to_db",
    "local_stats",
    "multilook",
    "multilook_array",
    "normalize_incidence",
    "refined_lee",
    "sigma0_to_beta0",
    "sigma0_to_gamma0",
    "to_db",
    "to_intensity",
    "to_linear",
]
