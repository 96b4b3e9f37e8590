"""Multi-scale ratio-of-averages (ROA) gradient targets: SAR-JEPA's idea as an MAE target.

Difference-based edge detectors (Sobel, HOG's ``[-1, 0, 1]``) respond to
speckle, whose standard deviation grows with the backscatter itself. The
ratio-of-averages detector (Touzi, Lopes & Bousquet 1988) compares the *mean
linear intensity* on the two sides of a pixel; under multiplicative speckle the
ratio's distribution does not depend on the brightness, so the edge strength is
comparable in dark water and bright urban areas (constant false-alarm rate).
SAR-JEPA (Li et al. 2024) predicts such multi-scale gradients instead of pixels.

For a window of odd ``size = 2r + 1`` centred on pixel ``(i, j)``:

* horizontal: ``g_x = log(mean(I[i-r..i+r, j+1..j+r]) / mean(I[i-r..i+r, j-r..j-1]))``
  (right half over left half; the centre column belongs to neither),
* vertical: ``g_y`` likewise, lower half (rows ``i+1..i+r``) over upper half,
* magnitude ``sqrt(g_x^2 + g_y^2)``, one map per scale (default 3, 5, 7).

The image is reflect-padded by ``r`` (mirror without repeating the edge, as
``numpy.pad(mode="reflect")``), so every window is full and an edge pixel's
outer half mirrors its inner half (zero gradient across the image border).
Half-window means are box averages (``avg_pool2d``), O(1) per pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sarlab.preprocess.normalize import BandStats
from sarlab.ssl.base import normalized_to_linear
from sarlab.ssl.mae import MAE, Target

__all__ = ["GradientMAE", "GradientTarget", "multiscale_roa", "roa_gradient"]


def _check_size(size: int, h: int, w: int) -> int:
    if int(size) != size or size < 3 or size % 2 == 0:
        raise ValueError(f"ROA window size must be an odd integer >= 3, got {size!r}")
    r = int(size) // 2
    if r >= h or r >= w:
        raise ValueError(f"ROA window {size} is too large for an image of {(h, w)} px")
    return r


def roa_gradient(intensity: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """``(g_x, g_y)`` log ratios of half-window means of linear ``(B, C, H, W)`` intensity."""
    if intensity.ndim != 4:
        raise ValueError(f"expected (B, C, H, W), got shape {tuple(intensity.shape)}")
    h, w = intensity.shape[-2:]
    r = _check_size(size, h, w)
    padded = F.pad(intensity, (r, r, r, r), mode="reflect")
    # Output (a, b) of a (2r+1) x r pool averages padded rows a..a+2r, columns b..b+r-1,
    # i.e. original rows a-r..a+r, columns b-r..b-1: the left half of pixel (a, b); the
    # right half (columns b+1..b+r) is the output r+1 columns further on.
    across = F.avg_pool2d(padded, kernel_size=(2 * r + 1, r), stride=1)
    left, right = across[..., :, :w], across[..., :, r + 1 : r + 1 + w]
    down = F.avg_pool2d(padded, kernel_size=(r, 2 * r + 1), stride=1)
    up, below = down[..., :h, :], down[..., r + 1 : r + 1 + h, :]
    return torch.log(right / left), torch.log(below / up)


def multiscale_roa(intensity: Tensor, scales: Sequence[int] = (3, 5, 7)) -> Tensor:
    """ROA gradient magnitude ``(B, C * S, H, W)``; channel ``c * S + s`` is band c, scale s."""
    maps = []
    for size in scales:
        gx, gy = roa_gradient(intensity, size)
        maps.append(torch.sqrt(gx * gx + gy * gy))
    b, c, h, w = intensity.shape
    return torch.stack(maps, dim=2).reshape(b, c * len(scales), h, w)


class GradientTarget(Target):
    """Multi-scale ROA gradient magnitude of the linear intensity, at pixel resolution."""

    name = "gradient"
    needs_band_stats = True

    def __init__(self, scales: Sequence[int] = (3, 5, 7)) -> None:
        scales = [int(s) for s in scales]
        if not scales or any(s < 3 or s % 2 == 0 for s in scales):
            raise ValueError(f"scales must be odd window sizes >= 3, got {scales}")
        self.scales = scales

    def channels(self, in_chans: int) -> int:
        return in_chans * len(self.scales)

    def config(self) -> dict[str, Any]:
        return {"scales": list(self.scales)}

    def __call__(self, image: Tensor, stats: BandStats | None) -> Tensor:
        if stats is None:
            raise ValueError("gradient targets need band_stats to recover linear intensity")
        return multiscale_roa(normalized_to_linear(image, stats), self.scales)


class GradientMAE(MAE):
    """MAE predicting :class:`GradientTarget` maps of the masked patches (``target="gradient"``)."""

    name = "gradient"
    default_target = "gradient"
