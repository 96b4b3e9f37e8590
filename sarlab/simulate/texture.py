"""Random fields for the sea-ice simulator: procedural surfaces, K-texture and speckle.

The surface fields (smooth Gaussian fields, floe and chart-polygon cells) are pure
functions of position in metres and an integer key, not of the grid they are evaluated
on: a shifted or rotated grid sees the same values at the same places. That is what lets
:func:`sarlab.simulate.sea_ice.repeat_pass` move the ice by any drift and rotation
without resampling or running off the edge of a precomputed array. They are built from
a counter-based hash (SplitMix64 finaliser) of integer lattice coordinates:

* :class:`SmoothField`: hashed standard-normal lattice values, Gaussian-smoothed on the
  lattice window the points need (plus the filter's reach, so every window agrees) and
  interpolated bilinearly; marginals are standard normal.
* :func:`cells`: jittered-grid Voronoi (Worley) cells: the nearest cell's lattice index
  and the gap to the second-nearest cell centre, which gives floes with straight edges
  and leads between them.

The radar side is random per acquisition (``numpy.random.Generator``): a unit-mean Gamma
texture of order ``nu`` (spatially correlated over about a pixel through a Gaussian
copula) times unit-mean Gamma speckle of shape ENL, i.e. K-distributed intensity
(Jakeman & Pusey, IEEE Trans. Antennas Propag. 24(6), 1976; Oliver & Quegan,
*Understanding Synthetic Aperture Radar Images*, 1998).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import ndimage, special

__all__ = [
    "SmoothField",
    "cell_centres",
    "cell_uniform",
    "cells",
    "gamma_texture",
    "gap_quantile",
    "key_of",
    "speckle",
]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_Z_GRID = np.linspace(-6.0, 6.0, 1201)


def key_of(*parts: object) -> int:
    """A stable 63-bit key from names and numbers (not Python's salted ``hash``)."""
    plain = tuple(p.item() if isinstance(p, np.generic) else p for p in parts)
    digest = hashlib.blake2b(repr(plain).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _mix(h: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective avalanche of 64-bit words (wrapping arithmetic)."""
    h = h ^ (h >> np.uint64(30))
    h = h * _M1
    h = h ^ (h >> np.uint64(27))
    h = h * _M2
    return h ^ (h >> np.uint64(31))


def cell_uniform(i: np.ndarray, j: np.ndarray, key: int) -> np.ndarray:
    """Uniform [0, 1) per integer lattice point (i, j), fixed by ``key``."""
    iu = np.ascontiguousarray(i, dtype=np.int64).view(np.uint64)
    ju = np.ascontiguousarray(j, dtype=np.int64).view(np.uint64)
    h = _mix(_mix(iu ^ np.uint64(key)) + ju * _GOLDEN)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclass(frozen=True)
class SmoothField:
    """Stationary Gaussian random field with unit variance and feature size ``scale``.

    ``scale`` is in the units of the coordinates it is called with (metres, or
    stretched coordinates for anisotropic fields). Lattice spacing is ``scale / 3`` and
    the smoothing 1.5 lattice cells, so the correlation length is about ``scale / 2``.
    """

    key: int
    scale: float
    sigma_cells: float = 1.5

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        spacing = self.scale / 3.0
        gx, gy = x / spacing, y / spacing
        reach = int(4.0 * self.sigma_cells + 0.5) + 2
        i0, j0 = int(np.floor(gx.min())) - reach, int(np.floor(gy.min())) - reach
        i1, j1 = int(np.ceil(gx.max())) + reach, int(np.ceil(gy.max())) + reach
        jj, ii = np.mgrid[j0 : j1 + 1, i0 : i1 + 1]
        white = special.ndtri(np.clip(cell_uniform(ii, jj, self.key), 1e-12, 1 - 1e-12))
        smooth = ndimage.gaussian_filter(white, self.sigma_cells, mode="constant")
        smooth /= _kernel_norm(self.sigma_cells)
        out = ndimage.map_coordinates(smooth, [gy - j0, gx - i0], order=1, mode="nearest")
        return out.astype(np.float32)


@cache
def _kernel_norm(sigma: float) -> float:
    """Standard deviation of unit white noise after ``gaussian_filter(sigma)`` in 2-D."""
    impulse = np.zeros((81, 81))
    impulse[40, 40] = 1.0
    return float(np.sqrt((ndimage.gaussian_filter(impulse, sigma) ** 2).sum()))


def cells(
    x: np.ndarray, y: np.ndarray, scale: float, key: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jittered-grid Voronoi cells of mean size ``scale``: (cell i, cell j, edge gap).

    The gap is ``(d2 - d1) / scale`` with d1, d2 the distances to the nearest and the
    second-nearest cell centres: 0 on a cell boundary, growing towards the centre.
    """
    gx, gy = np.asarray(x, np.float64) / scale, np.asarray(y, np.float64) / scale
    fx, fy = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    i0, j0 = int(fx.min()) - 1, int(fy.min()) - 1
    width = int(fx.max()) + 2 - i0
    jj, ii = np.mgrid[j0 : int(fy.max()) + 2, i0 : i0 + width]
    # absolute float64 centres and differences: the same bits whatever the window
    cx, cy = (c.ravel() for c in cell_centres(ii, jj, 1.0, key))
    base = (fy - j0) * width + (fx - i0)
    d1 = np.full(gx.shape, np.inf)
    d2 = np.full(gx.shape, np.inf)
    best = np.zeros(gx.shape, np.int64)
    dx, dy, idx = np.empty_like(gx), np.empty_like(gx), np.empty_like(base)
    for dj in (-1, 0, 1):
        for di in (-1, 0, 1):
            np.add(base, dj * width + di, out=idx)
            np.subtract(gx, cx.take(idx), out=dx)
            np.subtract(gy, cy.take(idx), out=dy)
            np.multiply(dx, dx, out=dx)
            np.multiply(dy, dy, out=dy)
            np.add(dx, dy, out=dx)  # squared distance
            nearer = dx < d1
            np.minimum(d2, np.where(nearer, d1, dx), out=d2)
            np.copyto(d1, dx, where=nearer)
            np.copyto(best, idx, where=nearer)
    gap = (np.sqrt(d2) - np.sqrt(d1)).astype(np.float32)
    return best % width + i0, best // width + j0, gap


def cell_centres(
    i: np.ndarray, j: np.ndarray, scale: float, key: int
) -> tuple[np.ndarray, np.ndarray]:
    """Centres (in coordinate units) of the cells of :func:`cells` with lattice index i, j."""
    cx = i + 0.05 + 0.9 * cell_uniform(i, j, key)
    cy = j + 0.05 + 0.9 * cell_uniform(i, j, key ^ 0x5BD1E995)
    return cx * scale, cy * scale


@cache
def gap_quantile(fraction: float) -> float:
    """The cell gap below which ``fraction`` of the area lies (scale-free, hash-fixed)."""
    if fraction <= 0:
        return 0.0
    side = np.linspace(0.0, 64.0, 512, endpoint=False)
    y, x = np.meshgrid(side, side, indexing="ij")
    return float(np.quantile(cells(x, y, 1.0, key_of("gap-reference"))[2], fraction))


def _gamma_table(order: float) -> np.ndarray:
    """Unit-mean Gamma(order) quantiles at the standard-normal quantiles of ``_Z_GRID``."""
    return special.gammaincinv(order, special.ndtr(_Z_GRID)) / order


def gamma_texture(
    rng: np.random.Generator, orders: np.ndarray, correlation_px: float = 0.8
) -> np.ndarray:
    """Unit-mean Gamma texture with a per-pixel order (``inf`` = none), float32.

    A Gaussian field correlated over ``correlation_px`` pixels is mapped through the
    Gamma quantile function of each pixel's order (a Gaussian copula), so each pixel's
    marginal is exactly Gamma(order, 1/order) while neighbours are correlated.
    """
    orders = np.asarray(orders)
    z = rng.standard_normal(orders.shape, dtype=np.float32)
    if correlation_px > 0:
        z = ndimage.gaussian_filter(z, correlation_px, mode="reflect")
        z /= np.float32(_kernel_norm(correlation_px))
    out = np.ones(orders.shape, np.float32)
    for order in np.unique(orders[np.isfinite(orders)]):
        here = orders == order
        out[here] = np.interp(z[here], _Z_GRID, _gamma_table(float(order)))
    return out


def speckle(rng: np.random.Generator, shape: tuple[int, ...], enl: float) -> np.ndarray:
    """Unit-mean Gamma(ENL, 1/ENL) multiplicative speckle of multilooked intensity, float32."""
    if not np.isfinite(enl) or enl <= 0:
        raise ValueError(f"ENL must be a positive number, got {enl!r}")
    return rng.standard_gamma(enl, size=shape, dtype=np.float32) / np.float32(enl)
