"""Chip footprints in EPSG:4326: where on Earth each chip lies, for maps and spatial joins.

Two geometries occur in SAR data. Gridded (GRD/RTC GeoTIFF) scenes have a CRS and
an affine transform: a chip's footprint is its window's outline in that CRS,
densified (points along each edge, so that projected edges stay faithful when
curved in lon/lat) and transformed with pyproj. Radar-geometry scenes (AI4Arctic
swaths, SLC) carry 2-D ``latitude``/``longitude`` coordinates per pixel: a chip's
footprint is then the ring through its border pixel centres (half a pixel inside
the outer edge, the best the coordinates can say).

Footprints crossing the antimeridian are kept whole by shifting negative
longitudes by +360 (so the polygon may reach past 180 degrees) rather than
returning a polygon that wraps the globe.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import Polygon
from shapely.geometry.polygon import orient

__all__ = [
    "crs_string",
    "latlon_centre",
    "latlon_footprint",
    "window_centre",
    "window_footprint",
    "window_transform",
]

DENSIFY = 8  # segments per chip edge


def crs_string(crs: object) -> str:
    """``"EPSG:<code>"`` where the CRS is exactly an EPSG one, else its WKT2."""
    crs = CRS.from_user_input(crs)
    code = crs.to_epsg(min_confidence=100)
    return f"EPSG:{code}" if code is not None else crs.to_wkt()


@lru_cache(maxsize=32)
def _to_lonlat(crs: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)


def window_transform(transform: Affine, row: int, col: int) -> Affine:
    """The affine of a chip: the scene's transform shifted to the window's top-left pixel."""
    return transform @ Affine.translation(col, row)


def _edge_points(height: float, width: float, densify: int) -> tuple[np.ndarray, np.ndarray]:
    """(col, row) offsets around a window's outline: top, right, bottom, left, no repeats."""
    t = np.linspace(0.0, 1.0, densify + 1)[:-1]
    cols = np.concatenate([t * width, np.full_like(t, width), (1 - t) * width, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * height, np.full_like(t, height), (1 - t) * height])
    return cols, rows


def _polygon(lon: np.ndarray, lat: np.ndarray) -> Polygon:
    lon = np.asarray(lon, dtype=np.float64)
    if lon.max() - lon.min() > 180.0:
        lon = np.where(lon < 0.0, lon + 360.0, lon)
    return orient(Polygon(np.column_stack([lon, lat])), sign=1.0)


def window_footprint(
    transform: Affine,
    crs: object,
    row: int,
    col: int,
    height: int,
    width: int,
    densify: int = DENSIFY,
) -> Polygon:
    """Outline of the pixel window in EPSG:4326 (lon, lat), counter-clockwise.

    The window's four outer corners are vertices of the polygon, exactly as
    ``transform * (col, row)`` etc. transformed by pyproj.
    """
    cols, rows = _edge_points(height, width, densify)
    xs, ys = window_transform(transform, row, col) @ (cols, rows)
    lon, lat = _to_lonlat(crs_string(crs)).transform(np.asarray(xs), np.asarray(ys))
    return _polygon(lon, lat)


def window_centre(transform: Affine, crs: object, row: int, col: int, height: int, width: int):
    """(lon, lat) of the window's centre."""
    x, y = transform @ (col + width / 2.0, row + height / 2.0)
    lon, lat = _to_lonlat(crs_string(crs)).transform(x, y)
    return float(lon), float(lat)


def _ring_indices(height: int, width: int, densify: int) -> tuple[np.ndarray, np.ndarray]:
    """Row/col indices of border pixels around a (height, width) block, clockwise on the grid."""

    def steps(n: int) -> np.ndarray:
        return np.unique(np.round(np.linspace(0, n - 1, densify + 1)).astype(int))[:-1]

    r, c = steps(height), steps(width)
    last_r, last_c = height - 1, width - 1
    rows = np.concatenate([np.zeros_like(c), r, np.full_like(c, last_r), last_r - r])
    cols = np.concatenate([c, np.full_like(r, last_c), last_c - c, np.zeros_like(r)])
    return rows, cols


def latlon_footprint(
    lat: np.ndarray,
    lon: np.ndarray,
    row: int,
    col: int,
    height: int,
    width: int,
    densify: int = DENSIFY,
) -> Polygon:
    """Ring through the border pixel centres of a window of 2-D lat/lon arrays, counter-clockwise.

    ``lat``/``lon`` are (y, x) arrays of which ``[row:row+height, col:col+width]`` is the chip.
    """
    if height < 2 or width < 2:
        raise ValueError(f"a footprint needs a window of at least 2x2 pixels, got {height}x{width}")
    rows, cols = _ring_indices(height, width, densify)
    rows, cols = rows + row, cols + col
    ring_lat = np.asarray(lat)[rows, cols]
    ring_lon = np.asarray(lon)[rows, cols]
    if not (np.isfinite(ring_lat).all() and np.isfinite(ring_lon).all()):
        raise ValueError("latitude/longitude are not finite on the chip's border")
    return _polygon(ring_lon, ring_lat)


def latlon_centre(lat: np.ndarray, lon: np.ndarray, row: int, col: int, height: int, width: int):
    """(lon, lat) at the window's centre: the mean on the sphere of its 1, 2 or 4 central pixels."""
    r0, r1 = row + (height - 1) // 2, row + height // 2 + 1
    c0, c1 = col + (width - 1) // 2, col + width // 2 + 1
    la = np.radians(np.asarray(lat)[r0:r1, c0:c1].astype(np.float64))
    lo = np.radians(np.asarray(lon)[r0:r1, c0:c1].astype(np.float64))
    x, y, z = (np.cos(la) * np.cos(lo)).mean(), (np.cos(la) * np.sin(lo)).mean(), np.sin(la).mean()
    return float(np.degrees(np.arctan2(y, x))), float(np.degrees(np.arctan2(z, np.hypot(x, y))))
