"""Window statistics of the refined Lee filter (Lee 1981; Lee, Grunes & de Grandi 1999).

For each pixel, in its 7x7 window:

1. Means of the nine 3x3 sub-windows centred at offsets (-2, 0, 2)^2 form a 3x3
   array ``m`` (row-major ``m0..m8``, ``m4`` the centre).
2. Four 3x3 edge templates on ``m`` give gradients (absolute values):
   horizontal ``(m2+m5+m8)-(m0+m3+m6)``, vertical ``(m6+m7+m8)-(m0+m1+m2)``,
   45 degrees ``(m1+m2+m5)-(m3+m6+m7)``, 135 degrees ``(m0+m1+m3)-(m5+m7+m8)``.
   The largest wins (the first on ties).
3. Of the two sub-windows across that edge (m3/m5, m1/m7, m2/m6, m0/m8), the
   one whose mean is closer to ``m4`` names the side (the first on ties).
4. The mean and population variance over that side's half of the 7x7 window
   (28 pixels including the edge line through the centre) feed Lee's MMSE step.

Nodata: sub-windows without valid pixels count as ``m4`` in the gradients
(no evidence of an edge) and are never chosen as a side unless both are empty;
invalid pixels never enter a statistic. All sums use cumulative sums along rows,
so each window sum is a fixed number of differences.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MASKS", "refined_lee_kernel"]

PAD = 3
_A, _B = np.indices((7, 7)) - 3  # row and column offsets within the window

#: The 8 edge-aligned halves, in the order (direction, side) of steps 2-3.
MASKS: tuple[np.ndarray, ...] = (
    _B <= 0,  # vertical edge, left half
    _B >= 0,  # vertical edge, right half
    _A <= 0,  # horizontal edge, top half
    _A >= 0,  # horizontal edge, bottom half
    _B >= _A,  # edge along the main diagonal, upper-right half
    _B <= _A,  # edge along the main diagonal, lower-left half
    _A + _B <= 0,  # edge along the anti-diagonal, upper-left half
    _A + _B >= 0,  # edge along the anti-diagonal, lower-right half
)

# Sub-window indices of the two sides for each of the four directions.
_SIDES = ((3, 5), (1, 7), (2, 6), (0, 8))


def _segments(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """(row offset, first column offset, last column offset) of each row of a mask."""
    rows = []
    for r in range(mask.shape[0]):
        cols = np.flatnonzero(mask[r])
        if cols.size:
            assert np.all(np.diff(cols) == 1), "mask rows must be contiguous"
            half = mask.shape[1] // 2
            rows.append((r - mask.shape[0] // 2, int(cols[0]) - half, int(cols[-1]) - half))
    return rows


class _RowSums:
    """Cumulative sums along rows of a zero-padded array: any row-segment sum in O(1)."""

    def __init__(self, a: np.ndarray) -> None:
        self.h, self.w = a.shape[-2:]
        pad = [(0, 0)] * (a.ndim - 2) + [(PAD, PAD), (PAD, PAD)]
        padded = np.pad(a, pad)
        zeros = np.zeros((*padded.shape[:-1], 1))
        self.c = np.concatenate([zeros, np.cumsum(padded, axis=-1)], axis=-1)

    def mask_sum(self, segments: list[tuple[int, int, int]]) -> np.ndarray:
        total = np.zeros((*self.c.shape[:-2], self.h, self.w))
        for row, first, last in segments:
            rows = slice(PAD + row, PAD + row + self.h)
            hi = self.c[..., rows, PAD + last + 1 : PAD + last + 1 + self.w]
            lo = self.c[..., rows, PAD + first : PAD + first + self.w]
            total += hi - lo
        return total


def _sub_window(di: int, dj: int) -> list[tuple[int, int, int]]:
    return [(di + r, dj - 1, dj + 1) for r in (-1, 0, 1)]


def refined_lee_kernel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance over each pixel's edge-aligned 7x7 half-window."""
    x = np.asarray(x, dtype=np.float64)
    valid = np.isfinite(x)
    counts = valid.sum(axis=(-2, -1), keepdims=True)
    totals = np.where(valid, x, 0.0).sum(axis=(-2, -1), keepdims=True)
    shift = np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)
    n_sums, raw_sums = _RowSums(valid.astype(np.float64)), _RowSums(np.where(valid, x, 0.0))

    # Unshifted sub-window means: exact for exactly representable data, so edge
    # decisions are reproducible; the variances below use shifted values instead.
    with np.errstate(invalid="ignore", divide="ignore"):
        m = [
            raw_sums.mask_sum(_sub_window(di, dj)) / n_sums.mask_sum(_sub_window(di, dj))
            for di in (-2, 0, 2)
            for dj in (-2, 0, 2)
        ]
    g = [np.where(np.isnan(mk), m[4], mk) for mk in m]
    gradients = np.stack(
        [
            np.abs((g[2] + g[5] + g[8]) - (g[0] + g[3] + g[6])),
            np.abs((g[6] + g[7] + g[8]) - (g[0] + g[1] + g[2])),
            np.abs((g[1] + g[2] + g[5]) - (g[3] + g[6] + g[7])),
            np.abs((g[0] + g[1] + g[3]) - (g[5] + g[7] + g[8])),
        ]
    )
    direction = np.argmax(np.nan_to_num(gradients, nan=-1.0), axis=0)
    choice = np.zeros(direction.shape, dtype=np.int64)
    for d, (first, second) in enumerate(_SIDES):
        d_first = np.nan_to_num(np.abs(m[first] - m[4]), nan=np.inf)
        d_second = np.nan_to_num(np.abs(m[second] - m[4]), nan=np.inf)
        side = np.where(d_first <= d_second, 0, 1)
        choice = np.where(direction == d, 2 * d + side, choice)

    values = np.where(valid, x - shift, 0.0)
    s1_sums, sq_sums = _RowSums(values), _RowSums(values * values)
    mean = np.full(direction.shape, np.nan)
    var = np.full(direction.shape, np.nan)
    for k, mask in enumerate(MASKS):
        here = choice == k
        if not here.any():
            continue
        seg = _segments(mask)
        n = n_sums.mask_sum(seg)
        with np.errstate(invalid="ignore", divide="ignore"):
            m1 = s1_sums.mask_sum(seg) / n
            v = np.maximum(sq_sums.mask_sum(seg) / n - m1 * m1, 0.0)
        mean = np.where(here, m1 + shift, mean)
        var = np.where(here, v, var)
    return mean, var
