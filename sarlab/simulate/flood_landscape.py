"""The ground truth under a simulated flood chip: land cover, terrain, and the flood itself.

A floodplain chip is built the way a floodplain is: a meandering river (sometimes a
tributary) cut into gently rising terrain, fields as Voronoi parcels of crops and bare
soil, forest in patches that favour the river banks, a town or villages on the higher
ground, and ponds. The flood then rises from the river: a pixel floods when it is lower
than the water level *and* connected to the river through pixels that are lower too, so
flood water is never an isolated puddle. Where the water is shallow, vegetation still
stands above it (flooded vegetation); elsewhere it is open flood water.

Units: elevation and depth in metres (a relief of a few metres over a 5 km chip, as on
the Jamuna, Mekong or Po floodplains); sizes in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Land-cover codes (see sarlab.simulate.flood.LAND_COVER for their radiometry).
PERMANENT_WATER, FLOODED_WATER, FLOODED_VEGETATION = 0, 1, 2
CROPS, FOREST, URBAN, BARE_SOIL = 3, 4, 5, 6

_CROP_EMERGES_M = 0.3  # rice/jute/grass canopy above the water where the flood is shallower
_FOREST_EMERGES_M = 6.0  # trunks and crowns stand above any floodplain flood
_PARCEL_DB_STD = 1.0  # field-to-field spread of crop and soil backscatter (crop stage, moisture)


@dataclass(frozen=True)
class Landscape:
    """One place before the flood; every field is (size, size)."""

    land_cover: np.ndarray  # uint8 codes, dry conditions
    elevation: np.ndarray  # float64, metres above the river
    river: np.ndarray  # bool, channels the flood rises from
    parcel_gain: np.ndarray  # float32, linear per-field brightness factor (mean 1)
    texture_z: np.ndarray  # float32, standard normal field driving the texture


def smooth_field(rng: np.random.Generator, size: int, scale_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ``scale_px``."""
    noise = rng.standard_normal((size, size))
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    kernel = np.exp(-2.0 * (np.pi * scale_px) ** 2 * (fx * fx + fy * fy))
    field = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=(size, size))
    return (field - field.mean()) / field.std()


def _draw_channel(size: int, points: np.ndarray, width: float) -> np.ndarray:
    """Pixels within ``width / 2`` of a dense polyline (given as (n, 2) y, x points)."""
    line = np.zeros((size, size), dtype=bool)
    iy, ix = np.round(points).astype(int).T
    keep = (iy >= 0) & (iy < size) & (ix >= 0) & (ix < size)
    line[iy[keep], ix[keep]] = True
    if not line.any():
        return line
    return ndimage.distance_transform_edt(~line) <= width / 2


def _river(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(channel mask, centre-line mask): a meandering main river and maybe a tributary."""
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.sin(angle), np.cos(angle)])
    normal = np.array([direction[1], -direction[0]])
    centre = size / 2 + rng.uniform(-0.25, 0.25, 2) * size
    s = np.linspace(-size, size, 8 * size)
    wavelength = rng.uniform(0.6, 1.5) * size
    drift = np.cumsum(rng.standard_normal(s.size)) * 0.15
    offset = rng.uniform(0.04, 0.12) * size * np.sin(2 * np.pi * s / wavelength + rng.uniform(0, 6))
    main = centre + s[:, None] * direction + (offset + drift - drift.mean())[:, None] * normal
    channel = _draw_channel(size, main, rng.uniform(6, 28))
    centreline = _draw_channel(size, main, 1.0)
    if rng.random() < 0.6:  # a tributary from one edge to a point on the main river
        inside = main[(main >= 0).all(1) & (main < size).all(1)]
        join = inside[rng.integers(len(inside))]
        start = rng.uniform(0, size, 2)
        start[rng.integers(2)] = rng.choice([0.0, size - 1.0])
        bend = (start + join) / 2 + rng.normal(0, 0.15 * size, 2)
        t = np.linspace(0, 1, 4 * size)[:, None]
        trib = (1 - t) ** 2 * start + 2 * t * (1 - t) * bend + t**2 * join
        channel |= _draw_channel(size, trib, rng.uniform(3, 8))
        centreline |= _draw_channel(size, trib, 1.0)
    return channel, centreline


def _blobs(size: int, centres: np.ndarray, radii: np.ndarray, roughness: np.ndarray) -> np.ndarray:
    """Irregular disks: distance to a centre, perturbed by a noise field, below a radius."""
    yy, xx = np.mgrid[0:size, 0:size]
    mask = np.zeros((size, size), dtype=bool)
    for (cy, cx), r in zip(centres, radii, strict=True):
        dist = np.hypot(yy - cy, xx - cx)
        mask |= dist + roughness * r * 0.35 < r
    return mask


def make_landscape(rng: np.random.Generator, size: int) -> Landscape:
    """Draw one dry-season floodplain (see the module docstring)."""
    channel, centreline = _river(rng, size)
    dist = ndimage.distance_transform_edt(~centreline)
    relief = rng.uniform(2.0, 5.0)  # metres from the river to the chip's far side
    elevation = (
        relief * np.sqrt(dist / size)
        + rng.uniform(0.3, 0.8) * smooth_field(rng, size, size / 12)
        + rng.uniform(0.3, 1.0) * smooth_field(rng, size, size / 4)
        + rng.uniform(0.05, 0.2) * smooth_field(rng, size, size / 60)
    )
    elevation -= elevation[channel].max()

    # fields: Voronoi parcels of crops or bare soil, each with its own brightness
    n_parcels = int(rng.integers(40, 220) * (size / 512) ** 2) + 2
    seeds = np.zeros((size, size), dtype=bool)
    seeds[rng.integers(0, size, n_parcels), rng.integers(0, size, n_parcels)] = True
    _, (iy, ix) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    parcel = iy * size + ix
    bare_share = rng.uniform(0.05, 0.25)
    is_bare = rng.random(size * size) < bare_share
    land = np.where(is_bare[parcel], BARE_SOIL, CROPS).astype(np.uint8)
    sigma = _PARCEL_DB_STD * np.log(10) / 10
    gains = np.exp(rng.normal(0.0, sigma, size * size) - sigma**2 / 2)
    parcel_gain = gains[parcel].astype(np.float32)

    # forest: patches of a mid-scale field, favoured along the banks
    riparian = np.exp(-dist / (0.06 * size))
    forest_field = smooth_field(rng, size, size / 20) + rng.uniform(0.5, 2.0) * riparian
    forest_share = rng.uniform(0.04, 0.25)
    land[forest_field > np.quantile(forest_field, 1 - forest_share)] = FOREST

    # settlements on high ground: a town (usually) and a few villages
    high = np.flatnonzero(elevation > np.quantile(elevation, 0.7))
    n_towns = int(rng.random() < 0.8)
    n_villages = int(rng.integers(0, 5))
    picks = rng.choice(high, n_towns + n_villages)
    radii = np.concatenate([rng.uniform(0.04, 0.1, n_towns), rng.uniform(0.008, 0.02, n_villages)])
    roughness = smooth_field(rng, size, size / 60)
    urban = _blobs(size, np.column_stack(np.divmod(picks, size)), radii * size, roughness)
    land[urban] = URBAN

    # permanent water: the channels and a few ponds in low ground
    low = np.flatnonzero(elevation < np.quantile(elevation, 0.4))
    n_ponds = int(rng.integers(0, 7))
    ponds = rng.choice(low, n_ponds)
    pond_mask = _blobs(
        size,
        np.column_stack(np.divmod(ponds, size)),
        rng.uniform(0.006, 0.025, n_ponds) * size,
        roughness,
    )
    land[channel | pond_mask] = PERMANENT_WATER

    texture_z = smooth_field(rng, size, 1.2).astype(np.float32)
    return Landscape(land, elevation, channel, parcel_gain, texture_z)


def _connected_flood(landscape: Landscape, level: float, floodable: np.ndarray) -> np.ndarray:
    """Pixels below ``level`` connected to the river through pixels below it."""
    wet = ((landscape.elevation < level) & floodable) | landscape.river
    labels, _ = ndimage.label(wet)
    reached = np.unique(labels[landscape.river])
    return np.isin(labels, reached[reached > 0]) & floodable


def flood(landscape: Landscape, fraction: float) -> tuple[np.ndarray, float]:
    """Land cover during a flood covering about ``fraction`` of the chip, and that fraction.

    The water level is found by bisection so that the connected inundated area
    (open flood water + flooded vegetation) matches ``fraction`` to within ~1 %
    of the chip; towns stay dry (they are built above flood level).
    """
    land = landscape.land_cover
    floodable = (land != PERMANENT_WATER) & (land != URBAN)
    if fraction <= 0:
        return land.copy(), 0.0
    heights = np.sort(landscape.elevation[floodable])
    lo, hi = 0.0, 1.0
    for _ in range(14):
        q = (lo + hi) / 2
        level = heights[min(int(q * heights.size), heights.size - 1)]
        achieved = _connected_flood(landscape, level, floodable).mean()
        lo, hi = (q, hi) if achieved < fraction else (lo, q)
    level = heights[min(int(hi * heights.size), heights.size - 1)]
    inundated = _connected_flood(landscape, level, floodable)
    depth = level - landscape.elevation
    emerges = ((land == CROPS) & (depth < _CROP_EMERGES_M)) | (
        (land == FOREST) & (depth < _FOREST_EMERGES_M)
    )
    out = land.copy()
    out[inundated] = np.where(emerges[inundated], FLOODED_VEGETATION, FLOODED_WATER)
    return out, float(inundated.mean())
