"""Sentinel-1 look-up tables (calibration, thermal noise, geolocation grid) evaluated per pixel.

The SAFE annotates sparse vectors, not images: calibration and noise-range
vectors every few hundred lines with a value every few dozen pixels, noise
azimuth vectors per sub-swath block, geolocation tie points on a coarse grid.
Each is evaluated here for any block of pixels on demand (inside a dask task),
so a 25,000 x 17,000 scene never holds a full-size LUT in memory. xarray-
sentinel's own ``calibrate_intensity`` interpolates the whole LUT eagerly and
its noise parsers need one pixel list shared by all vectors, which GRD noise
vectors (IPF >= 2.9) do not have; hence this module.

Interpolation is bilinear: linear along each vector's own pixel list, then
linear between the two vectors that bracket the row. Outside the annotated
span values are held constant (no extrapolation), the convention of ESA's
SNAP and the product specification.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from xml.etree import ElementTree

import dask.array
import numpy as np

from sarlab.errors import InputError
from sarlab.io.safe_files import SafeFiles

__all__ = [
    "LUT_NAMES",
    "AzimuthNoise",
    "VectorLut",
    "calibration_lut",
    "lazy_field",
    "noise_luts",
    "parse_azimuth_noise",
    "parse_vectors",
    "radiometry_block",
]

# quantity -> calibration vector in calibration-*.xml (None: no calibration)
LUT_NAMES = {"sigma0": "sigmaNought", "beta0": "betaNought", "gamma0": "gamma", "intensity": None}
Evaluate = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _floats(text: str | None) -> np.ndarray:
    return np.array((text or "").split(), dtype=np.float64)


@dataclass(frozen=True)
class VectorLut:
    """Vectors at increasing row positions, each with its own (pixel, value) samples."""

    rows: np.ndarray  # (n,) row position of each vector (line, or a time axis)
    pixels: tuple[np.ndarray, ...]  # n arrays, increasing pixel positions
    values: tuple[np.ndarray, ...]  # n arrays, same lengths as pixels

    @classmethod
    def from_vectors(
        cls, rows: list[float], pixels: list[np.ndarray], values: list[np.ndarray]
    ) -> VectorLut:
        order = np.argsort(np.asarray(rows, dtype=np.float64), kind="stable")
        return cls(
            rows=np.asarray(rows, dtype=np.float64)[order],
            pixels=tuple(pixels[i] for i in order),
            values=tuple(values[i] for i in order),
        )

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Values at every (row, col) of the grid ``rows x cols`` (float64)."""
        lo, hi, weight = _bracket(self.rows, np.asarray(rows, dtype=np.float64))
        cols = np.asarray(cols, dtype=np.float64)
        needed = np.unique(np.concatenate([lo, hi]))
        table = np.stack([np.interp(cols, self.pixels[k], self.values[k]) for k in needed])
        pos = np.searchsorted(needed, lo), np.searchsorted(needed, hi)
        w = weight[:, None]
        return (1.0 - w) * table[pos[0]] + w * table[pos[1]]

    def at(self, index: int) -> tuple[float, np.ndarray, np.ndarray]:
        """(row, pixels, values) of one vector, for checks against the XML."""
        return float(self.rows[index]), self.pixels[index], self.values[index]


def _bracket(grid: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the two grid points around each x and the weight of the upper one."""
    n = grid.size
    if n == 1:
        zeros = np.zeros(x.shape, dtype=np.intp)
        return zeros, zeros, np.zeros(x.shape)
    xc = np.clip(x, grid[0], grid[-1])
    lo = np.clip(np.searchsorted(grid, xc, side="right") - 1, 0, n - 2)
    hi = lo + 1
    span = grid[hi] - grid[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(span > 0, (xc - grid[lo]) / span, 0.0)
    return lo, hi, weight


def parse_vectors(root: ElementTree.Element, vector_tag: str, value_tag: str) -> VectorLut | None:
    """Read ``<vector_tag>`` elements (line, pixel, value_tag) from calibration/noise XML.

    Returns None when the file has no such vectors (old noise files name them
    differently; the caller tries each name).
    """
    rows: list[float] = []
    pixels: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for vector in root.iter(vector_tag):
        pix = _floats(vector.findtext("pixel"))
        val = _floats(vector.findtext(value_tag))
        line = vector.findtext("line")
        if line is None or pix.size == 0 or pix.size != val.size:
            continue
        rows.append(float(line))
        pixels.append(pix)
        values.append(val)
    if not rows:
        return None
    return VectorLut.from_vectors(rows, pixels, values)


@dataclass(frozen=True)
class AzimuthNoise:
    """Noise azimuth vectors (IPF >= 2.9): one per block of lines x samples (a sub-swath)."""

    blocks: tuple[tuple[int, int, int, int, np.ndarray, np.ndarray], ...]

    def __call__(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Azimuth noise factor per pixel; 1 where no block covers the pixel."""
        rows = np.asarray(rows)
        cols = np.asarray(cols)
        out = np.ones((rows.size, cols.size), dtype=np.float64)
        for first_line, last_line, first_sample, last_sample, lines, lut in self.blocks:
            rmask = (rows >= first_line) & (rows <= last_line)
            cmask = (cols >= first_sample) & (cols <= last_sample)
            if rmask.any() and cmask.any():
                factor = np.interp(rows[rmask], lines, lut)
                out[np.ix_(rmask, cmask)] = factor[:, None]
        return out


def parse_azimuth_noise(root: ElementTree.Element) -> AzimuthNoise | None:
    """Read the noise azimuth vectors; None for products older than IPF 2.9 (range only)."""
    blocks = []
    for vector in root.iter("noiseAzimuthVector"):
        lines = _floats(vector.findtext("line"))
        lut = _floats(vector.findtext("noiseAzimuthLut"))
        if lines.size == 0 or lines.size != lut.size:
            continue
        order = np.argsort(lines, kind="stable")
        bounds = [
            int(vector.findtext(tag) or default)
            for tag, default in (
                ("firstAzimuthLine", lines.min()),
                ("lastAzimuthLine", lines.max()),
                ("firstRangeSample", 0),
                ("lastRangeSample", np.iinfo(np.int32).max),
            )
        ]
        blocks.append((*bounds, lines[order], lut[order]))
    if not blocks:
        return None
    return AzimuthNoise(tuple(blocks))


def lazy_field(
    evaluate: Evaluate,
    row_values: np.ndarray,
    col_values: np.ndarray,
    chunks: tuple[tuple[int, ...], tuple[int, ...]],
    dtype: np.dtype | type = np.float32,
) -> dask.array.Array:
    """A (rows, cols) dask array whose blocks are ``evaluate(row_values[..], col_values[..])``."""

    def block(block_info: dict | None = None) -> np.ndarray:
        (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return evaluate(row_values[r0:r1], col_values[c0:c1]).astype(dtype, copy=False)

    return dask.array.map_blocks(
        block, chunks=chunks, dtype=dtype, meta=np.empty((0, 0), dtype=dtype)
    )


def calibration_lut(
    product: SafeFiles, swath: str, pol: str, quantity: str
) -> tuple[VectorLut | None, dict]:
    """The calibration vectors for ``quantity`` (None for uncalibrated intensity) and attrs."""
    name = LUT_NAMES[quantity]
    if name is None:
        return None, {}
    hint = "; pass quantity='intensity' for uncalibrated |DN|^2"
    rel = product.require("calibration", swath, pol, hint)
    root = product.xml(rel)
    lut = parse_vectors(root, "calibrationVector", name)
    if lut is None:
        raise InputError(product.display(rel), f"holds no calibrationVector with {name}")
    constant = root.findtext(".//absoluteCalibrationConstant")
    attrs = {"calibration_lut": name}
    if constant is not None:
        attrs["absolute_calibration_constant"] = float(constant)
    return lut, attrs


def noise_luts(
    product: SafeFiles, swath: str, pol: str, remove_noise: bool
) -> tuple[VectorLut | None, AzimuthNoise | None, str]:
    """Noise range and azimuth LUTs (DN^2 units) and how the noise was removed, for the attrs."""
    if not remove_noise:
        return None, None, "not removed"
    hint = "; pass remove_noise=False to keep the thermal noise"
    rel = product.require("noise", swath, pol, hint)
    root = product.xml(rel)
    rng = parse_vectors(root, "noiseRangeVector", "noiseRangeLut")
    if rng is None:  # IPF < 2.9: one noise vector family, range only
        rng = parse_vectors(root, "noiseVector", "noiseLut")
    if rng is None:
        raise InputError(product.display(rel), f"holds no noise vectors{hint}")
    azimuth = parse_azimuth_noise(root)
    how = "removed (range and azimuth vectors)" if azimuth else "removed (range vectors)"
    return rng, azimuth, how


def radiometry_block(
    dn: np.ndarray,
    lut: VectorLut | None,
    noise_range: VectorLut | None,
    noise_azimuth: AzimuthNoise | None,
    block_info: dict | None = None,
) -> np.ndarray:
    """|DN|^2, minus noise, over A^2, for one chunk (rows/cols from its place in the image)."""
    (r0, r1), (c0, c1) = block_info[0]["array-location"]
    rows = np.arange(r0, r1, dtype=np.float64)
    cols = np.arange(c0, c1, dtype=np.float64)
    if np.iscomplexobj(dn):
        power = dn.real.astype(np.float64) ** 2 + dn.imag.astype(np.float64) ** 2
    else:
        power = dn.astype(np.float64) ** 2
    nodata = power == 0
    if noise_range is not None:
        eta = noise_range(rows, cols)
        if noise_azimuth is not None:
            eta *= noise_azimuth(rows, cols)
        power = np.maximum(power - eta, 0.0)
    if lut is not None:
        power /= lut(rows, cols) ** 2
    power[nodata] = np.nan
    return power.astype(np.float32)
