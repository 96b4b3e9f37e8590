"""Where a simulated EW scene lies and how the instrument sees it: grid, incidence, NESZ.

Grid: an EPSG:3413 (NSIDC sea-ice polar stereographic north) raster of square pixels,
rows along track (y down the image), columns across track with the radar looking
towards +x (far range on the right), centred in one of a few named Arctic seas. Latitude
and longitude come from pyproj.

Incidence: Sentinel-1 flies at about 693 km; on a spherical Earth (6371 km) the
incidence angle grows with ground range, a little faster in near range. A scene spans
``incidence_range`` (default 19-47 deg, the EW swath) across its width, so even a small
scene shows all five sub-swaths: its incidence gradient is steeper than a real one
(the EW swath is about 400 km wide), which makes incidence effects easy to see.

Thermal noise (noise-equivalent sigma0, NESZ), per sub-swath EW1..EW5:

    NESZ_dB = noise_floor_db + offset_k + rise * u**2 + scallop_k(y)

``u`` runs from -1 to 1 across the sub-swath (the elevation antenna pattern: quietest
at beam centre, ``rise`` = 2 dB noisier at the beam edges, so the noise steps at the
sub-swath boundaries), ``offset_k`` makes EW1 the noisiest, and ``scallop_k`` is the
TOPS azimuth scalloping: within each burst (about 20 km along track) the noise rises
towards the burst ends, peak-to-peak 0.5-1 dB, with a burst phase of its own per
sub-swath. Sentinel-1's NESZ is specified at -22 dB or better (ESA Sentinel-1 SAR
technical guide, "Performance"); EW cross-pol noise and its scalloping and inter-swath
steps are described by Park et al. (IEEE TGRS 56(3), 2018) and Park et al. (IEEE TGRS
60, 2022). The sub-swath limits (EW1 ~19-27 deg ... EW5 ~41-47 deg), offsets, rise and
scalloping amplitudes here are approximations of that shape, not calibrated values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyproj import Transformer

__all__ = [
    "BURST_LENGTH_M",
    "EW_SUBSWATH_EDGES_DEG",
    "REGIONS",
    "Grid",
    "Region",
    "incidence_profile",
    "make_grid",
    "nesz_db",
    "subswath_of",
]

EARTH_RADIUS_M = 6_371_000.0
ORBIT_HEIGHT_M = 693_000.0  # Sentinel-1 reference orbit altitude
EW_SUBSWATH_EDGES_DEG = (18.9, 26.7, 31.9, 36.5, 40.6, 47.1)  # EW1 | EW2 | ... | EW5
_SUBSWATH_OFFSET_DB = (1.5, 0.5, 0.0, 0.3, 0.8)
_SCALLOP_DB = (1.0, 0.6, 0.5, 0.5, 0.6)  # peak-to-peak along a burst
_EDGE_RISE_DB = 2.0
BURST_LENGTH_M = 20_000.0
_TO_LONLAT = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True)
_FROM_LONLAT = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)


@dataclass(frozen=True)
class Region:
    """A sea where AI4Arctic scenes come from, and what its ice is like."""

    name: str
    lat: float
    lon: float
    land_edge: str  # the image edge the coast is attached to: left|right|top|bottom
    ice_service: str  # the AutoICE chart provider: dmi (Greenland) or cis (Canada)
    # weights of the stages of development new, young, thin FYI, thick FYI, old ice
    stage_weights: tuple[float, float, float, float, float]


REGIONS = {
    r.name: r
    for r in (
        Region("fram_strait", 79.5, -8.0, "left", "dmi", (0.08, 0.10, 0.17, 0.30, 0.35)),
        Region("east_greenland", 70.5, -19.5, "left", "dmi", (0.12, 0.13, 0.20, 0.35, 0.20)),
        Region("svalbard", 77.0, 26.0, "top", "dmi", (0.15, 0.15, 0.30, 0.30, 0.10)),
        Region("baffin_bay", 73.0, -66.0, "right", "cis", (0.15, 0.15, 0.30, 0.35, 0.05)),
        Region("davis_strait", 66.5, -58.5, "left", "cis", (0.20, 0.20, 0.30, 0.30, 0.0)),
    )
}


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates (EPSG:3413 metres) and per-pixel geolocation."""

    x: np.ndarray  # (nx,) increasing
    y: np.ndarray  # (ny,) decreasing (row 0 at the top)
    pixel_m: float
    latitude: np.ndarray  # (ny, nx) float64
    longitude: np.ndarray
    incidence: np.ndarray  # (nx,) degrees, float64

    @property
    def shape(self) -> tuple[int, int]:
        return self.y.size, self.x.size

    @property
    def centre(self) -> tuple[float, float]:
        return float(self.x.mean()), float(self.y.mean())

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """2-D x and y of every pixel centre."""
        return np.meshgrid(self.x, self.y)


def incidence_profile(nx: int, incidence_range: tuple[float, float]) -> np.ndarray:
    """Incidence per column: columns equally spaced in ground range on a spherical Earth."""
    near, far = (float(v) for v in incidence_range)
    if not 0.0 < near < far < 90.0:
        raise ValueError(f"incidence_range must be 0 < near < far < 90 deg, got {incidence_range}")
    gamma = np.linspace(0.0, 0.2, 4001)  # Earth-centre angle from nadir (rad)
    r, h = EARTH_RADIUS_M, EARTH_RADIUS_M + ORBIT_HEIGHT_M
    slant = np.sqrt(r * r + h * h - 2.0 * r * h * np.cos(gamma))
    theta = np.degrees(np.arcsin(np.clip(h * np.sin(gamma) / slant, 0.0, 1.0)))
    keep = np.concatenate([[True], np.diff(theta) > 0])  # monotonic part only
    g_near, g_far = np.interp([near, far], theta[keep], gamma[keep])
    columns = np.interp(np.linspace(g_near, g_far, nx), gamma[keep], theta[keep])
    return np.clip(columns, near, far)


def make_grid(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_m: float,
    region: Region,
    incidence_range: tuple[float, float],
) -> Grid:
    """A grid centred near the region's centre (within 60 km), snapped to whole pixels.

    Snapping keeps every pixel centre an exact multiple of half a pixel, so a drift of
    whole pixels moves the surface fields bit for bit.
    """
    ny, nx = shape
    cx, cy = _FROM_LONLAT.transform(region.lon, region.lat)
    cx += rng.uniform(-60e3, 60e3)
    cy += rng.uniform(-60e3, 60e3)
    x0 = np.round(cx / pixel_m - nx / 2) * pixel_m
    y0 = np.round(cy / pixel_m + ny / 2) * pixel_m
    x = x0 + (np.arange(nx) + 0.5) * pixel_m
    y = y0 - (np.arange(ny) + 0.5) * pixel_m
    lon, lat = _TO_LONLAT.transform(*np.meshgrid(x, y))
    return Grid(x, y, float(pixel_m), lat, lon, incidence_profile(nx, incidence_range))


def subswath_of(incidence: np.ndarray) -> np.ndarray:
    """EW sub-swath index 0..4 (EW1..EW5) of each incidence angle."""
    return np.searchsorted(np.asarray(EW_SUBSWATH_EDGES_DEG[1:-1]), incidence).astype(np.int64)


def nesz_db(
    incidence: np.ndarray, y_m: np.ndarray, noise_floor_db: float, phases: np.ndarray
) -> np.ndarray:
    """NESZ (dB) for columns at ``incidence`` (nx,) and rows at along-track ``y_m`` (ny,).

    ``phases`` (5,) in [0, 1) place each sub-swath's bursts along track.
    """
    incidence = np.asarray(incidence, np.float64)
    k = subswath_of(incidence)
    lower = np.asarray(EW_SUBSWATH_EDGES_DEG[:-1])[k]
    upper = np.asarray(EW_SUBSWATH_EDGES_DEG[1:])[k]
    u = (2.0 * incidence - lower - upper) / (upper - lower)
    profile = noise_floor_db + np.asarray(_SUBSWATH_OFFSET_DB)[k] + _EDGE_RISE_DB * u * u
    burst = np.mod(np.asarray(y_m, np.float64)[None, :] / BURST_LENGTH_M + phases[:, None], 1.0)
    scallop = np.asarray(_SCALLOP_DB)[:, None] * ((2.0 * burst - 1.0) ** 2 - 1.0 / 3.0)
    return (profile[None, :] + scallop[k].T).astype(np.float32)
