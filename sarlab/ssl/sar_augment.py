"""Augmentations that respect SAR physics, in torch, for joint-embedding views.

Colour jitter, intensity inversion, blur or contrast changes have no SAR
meaning (they change the radiometry the model should learn to read), so views
differ only in what really varies between two acquisitions of one scene:

* **speckle**: a despeckled reflectivity estimate (boxcar or Lee, on linear
  intensity) multiplied by fresh unit-mean Gamma(ENL, 1/ENL) noise (the
  fully developed speckle model of an ENL-look intensity image);
* **geometry**: flips, 90-degree rotations (square chips only) and crops
  resized back to the chip size, applied identically to every band and to the
  incidence angle, and to the reflectivity *before* re-speckling so the new
  speckle has the nominal one-pixel correlation at the output size;
* **polarisation dropout**: one band replaced by its mean (0 in normalised
  units), as when a product lacks a polarisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "apply_geometry",
    "box_filter",
    "despeckle",
    "gamma_speckle",
    "geometry_theta",
    "lee_filter",
    "polarisation_dropout",
]

GEOMETRY_DRAWS = 6  # uniforms per sample used by geometry_theta


def box_filter(x: Tensor, size: int) -> Tensor:
    """Mean over a ``size`` x ``size`` window (reflect-padded) of ``(B, C, H, W)``."""
    if int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"window size must be a positive odd integer, got {size!r}")
    r = int(size) // 2
    if r == 0:
        return x
    if r >= min(x.shape[-2:]):
        raise ValueError(f"window {size} is too large for an image of {tuple(x.shape[-2:])} px")
    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="reflect"), int(size), stride=1)


def lee_filter(intensity: Tensor, size: int, looks: float) -> Tensor:
    """Lee's local-statistics MMSE filter (as :func:`sarlab.preprocess.lee`), in torch."""
    if not looks > 0:
        raise ValueError(f"looks (ENL) must be positive, got {looks!r}")
    mean = box_filter(intensity, size)
    var = (box_filter(intensity * intensity, size) - mean * mean).clamp_min(0.0)
    cu2 = 1.0 / looks
    var_x = ((var - mean * mean * cu2) / (1.0 + cu2)).clamp_min(0.0)
    gain = torch.where(var > 0, var_x / var.clamp_min(1e-30), torch.zeros_like(var))
    return mean + gain * (intensity - mean)


def despeckle(intensity: Tensor, method: str, size: int, looks: float) -> Tensor:
    """Reflectivity estimate: ``"boxcar"``, ``"lee"`` or ``"none"`` (the intensity itself)."""
    if method == "boxcar":
        return box_filter(intensity, size)
    if method == "lee":
        return lee_filter(intensity, size, looks)
    if method == "none":
        return intensity
    raise ValueError(f"unknown despeckle method {method!r}; expected boxcar, lee or none")


def gamma_speckle(
    shape: tuple[int, ...],
    enl: float,
    *,
    seeds: Tensor | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Unit-mean Gamma(ENL, 1/ENL) noise ``shape`` (variance 1/ENL).

    With ``seeds`` (one per sample along the first axis) each sample's noise
    comes from its own generator on ``device``, so it does not depend on the
    other samples of the batch (or on how many processes share it).
    """
    if not (math.isfinite(enl) and enl > 0):
        raise ValueError(f"ENL must be a positive number, got {enl!r}")
    if seeds is None:
        alpha = torch.full(shape, float(enl), device=device)
        return torch._standard_gamma(alpha) / enl
    rows = []
    alpha = torch.full(shape[1:], float(enl), device=device)
    for s in seeds.tolist():
        gen = torch.Generator(device=alpha.device).manual_seed(int(s))
        rows.append(torch._standard_gamma(alpha, generator=gen))
    if len(rows) != shape[0]:
        raise ValueError(f"{len(rows)} seeds for a batch of {shape[0]}")
    return torch.stack(rows) / enl


def geometry_theta(
    u: Tensor,
    *,
    flips: bool = True,
    rotations: bool = True,
    crop_scale: tuple[float, float] = (1.0, 1.0),
) -> Tensor:
    """``(B, 2, 3)`` affine maps (output -> input, normalised coordinates) from uniforms.

    ``u`` is ``(B, GEOMETRY_DRAWS)`` in [0, 1): horizontal flip, vertical flip,
    quarter turns, crop area fraction in ``crop_scale``, crop centre x, y. With
    no crop the maps send pixel centres onto pixel centres, so sampling is exact.
    """
    lo, hi = float(crop_scale[0]), float(crop_scale[1])
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
    b = u.shape[0]
    one = torch.ones(b, device=u.device)
    fx = torch.where(u[:, 0] < 0.5, -one, one) if flips else one
    fy = torch.where(u[:, 1] < 0.5, -one, one) if flips else one
    quarter = torch.floor(u[:, 2] * 4).clamp(0, 3) if rotations else torch.zeros_like(one)
    angle = quarter * (math.pi / 2)
    cos, sin = torch.cos(angle).round(), torch.sin(angle).round()
    side = torch.sqrt(lo + (hi - lo) * u[:, 3])
    cx = (2 * u[:, 4] - 1) * (1 - side)
    cy = (2 * u[:, 5] - 1) * (1 - side)
    # A = side * R(angle) @ diag(fx, fy); t = crop centre.
    row0 = torch.stack([side * cos * fx, -side * sin * fy, cx], dim=1)
    row1 = torch.stack([side * sin * fx, side * cos * fy, cy], dim=1)
    return torch.stack([row0, row1], dim=1)


def apply_geometry(x: Tensor, theta: Tensor) -> Tensor:
    """Resample ``(B, C, H, W)`` through ``theta`` (bilinear; NaN spreads to its neighbours)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def polarisation_dropout(x: Tensor, u: Tensor, p: float) -> Tensor:
    """With probability ``p`` per sample, set one band (chosen by ``u[:, 1]``) to 0.

    ``u`` is ``(B, 2)`` uniforms. 0 is the band mean in normalised units.
    Single-band images are returned unchanged: dropping their only band leaves
    nothing to learn from.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"polarisation dropout probability must be in [0, 1], got {p}")
    c = x.shape[1]
    if c < 2 or p == 0.0:
        return x
    drop = u[:, 0] < p
    band = torch.floor(u[:, 1] * c).long().clamp(0, c - 1)
    hit = F.one_hot(band, c).bool() & drop.unsqueeze(1)
    return x.masked_fill(hit[:, :, None, None], 0.0)
