"""HOG targets for masked autoencoding (FG-MAE's idea for SAR), with HOG written in torch.

Predicting raw pixels spends a decoder's effort on speckle, which is
unpredictable by construction. Histograms of oriented gradients (Dalal & Triggs
2005) summarise edges and texture per cell; MaskFeat (Wei et al. 2022) and
FG-MAE (Wang et al. 2023, for SAR) use them as masked-prediction targets.

:func:`hog_cells` computes HOG per channel of ``(B, C, H, W)`` on the GPU:

1. gradients with fixed ``[-1, 0, 1]`` kernels along rows and columns, zero on
   the outermost row/column (skimage's convention);
2. magnitude and unsigned orientation ``atan2(g_row, g_col) mod 180`` degrees;
3. orientation binning: hard (bin ``i`` holds ``[i, i+1) * 180/n``, as skimage)
   or soft (``soft=True``: linear interpolation between the two nearest bin
   centres, circular over 180 degrees, so a small rotation changes the target
   smoothly instead of jumping a bin);
4. magnitudes summed over each ``cell_size`` square cell (no Gaussian weighting);
5. L2 normalisation ``h / sqrt(sum h^2 + eps^2)`` over non-overlapping blocks of
   ``block`` x ``block`` cells and all orientations (``block=0``: none).

Exact match with ``skimage.feature.hog`` on a single-channel float64 image with
``soft=False``, even ``cell_size``, image sides multiples of it,
``block_norm="L2"`` and ``transform_sqrt=False``: ``cells_per_block=(1, 1)``
equals ``block=1``, and ``cells_per_block=(b, b)`` sampled at every b-th block
(``out[::b, ::b]``) equals ``block=b``. skimage accumulates in float32, so the
agreement is to ~1e-6 relative (tests use 1e-5). skimage's multichannel mode
keeps only the strongest channel per pixel; here every channel (polarisation)
gets its own histograms, since HH and HV edges differ.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sarlab.preprocess.normalize import BandStats
from sarlab.ssl.mae import MAE, Target

__all__ = ["HOGMAE", "HOGTarget", "hog_cells", "image_gradients"]

_ROW_KERNEL = (-1.0, 0.0, 1.0)


def image_gradients(x: Tensor) -> tuple[Tensor, Tensor]:
    """Central differences ``(g_row, g_col)`` of ``(B, C, H, W)``, zero on the border."""
    b, c, h, w = x.shape
    k = torch.tensor(_ROW_KERNEL, dtype=x.dtype, device=x.device)
    flat = x.reshape(b * c, 1, h, w)
    g_row = F.conv2d(flat, k.reshape(1, 1, 3, 1), padding=(1, 0)).reshape(b, c, h, w)
    g_col = F.conv2d(flat, k.reshape(1, 1, 1, 3), padding=(0, 1)).reshape(b, c, h, w)
    g_row[..., 0, :] = 0.0
    g_row[..., -1, :] = 0.0
    g_col[..., :, 0] = 0.0
    g_col[..., :, -1] = 0.0
    return g_row, g_col


def hog_cells(
    x: Tensor,
    *,
    cell_size: int = 8,
    orientations: int = 9,
    soft: bool = True,
    block: int = 1,
    eps: float = 1e-5,
) -> Tensor:
    """Per-channel HOG ``(B, C, orientations, H/cell, W/cell)`` of ``(B, C, H, W)``.

    See the module docstring for the steps and the skimage-equivalent settings.
    """
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if cell_size < 1 or h % cell_size or w % cell_size:
        raise ValueError(f"image {(h, w)} does not split into {cell_size} px cells")
    if orientations < 1:
        raise ValueError(f"orientations must be positive, got {orientations}")
    gh, gw = h // cell_size, w // cell_size
    if block < 0 or (block and (gh % block or gw % block)):
        raise ValueError(f"{gh}x{gw} cells do not split into blocks of {block}x{block}")
    g_row, g_col = image_gradients(x)
    magnitude = torch.hypot(g_row, g_col)
    angle = torch.remainder(torch.rad2deg(torch.atan2(g_row, g_col)), 180.0)
    width = 180.0 / orientations
    if soft:
        pos = angle / width - 0.5
        lo = torch.floor(pos)
        frac = pos - lo
        lo = torch.remainder(lo, orientations).long()
        hi = torch.remainder(lo + 1, orientations)
    else:
        lo = torch.floor(angle / width).long().clamp_(0, orientations - 1)
    hist = []
    for k in range(orientations):
        weight = ((lo == k) * (1.0 - frac) + (hi == k) * frac) if soft else (lo == k)
        vote = magnitude * weight
        hist.append(vote.reshape(b, c, gh, cell_size, gw, cell_size).sum(dim=(3, 5)))
    cells = torch.stack(hist, dim=2)
    if block:
        blocks = cells.reshape(b, c, orientations, gh // block, block, gw // block, block)
        energy = blocks.pow(2).sum(dim=(2, 4, 6), keepdim=True)
        cells = (blocks / torch.sqrt(energy + eps * eps)).reshape(cells.shape)
    return cells


class HOGTarget(Target):
    """Per-channel HOG of the normalised dB image, one histogram per cell.

    ``norm``: ``"cell"`` (each cell's histogram L2-normalised), ``"patch"`` (all
    cells of a patch together, keeping their relative strength) or ``"none"``.
    ``cell_size`` defaults to 8 px when the patch splits into 8 px cells, else
    to the patch size.
    """

    name = "hog"

    def __init__(
        self,
        cell_size: int | None = None,
        orientations: int = 9,
        soft_binning: bool = True,
        hog_norm: str = "cell",
    ) -> None:
        if hog_norm not in ("cell", "patch", "none"):
            raise ValueError(f"hog_norm must be 'cell', 'patch' or 'none', got {hog_norm!r}")
        if orientations < 1:
            raise ValueError(f"orientations must be positive, got {orientations}")
        self.cell_size = cell_size
        self.orientations = int(orientations)
        self.soft = bool(soft_binning)
        self.norm = hog_norm
        self._patch: int | None = None

    def cells_per_patch(self, patch_size: int) -> int:
        cell = self.cell_size or (8 if patch_size % 8 == 0 else patch_size)
        if patch_size % cell:
            raise ValueError(f"patch {patch_size} px does not split into {cell} px HOG cells")
        self.cell_size, self._patch = int(cell), int(patch_size)
        return patch_size // cell

    def channels(self, in_chans: int) -> int:
        return in_chans * self.orientations

    def config(self) -> dict[str, Any]:
        return {
            "cell_size": self.cell_size,
            "orientations": self.orientations,
            "soft_binning": self.soft,
            "hog_norm": self.norm,
        }

    def __call__(self, image: Tensor, stats: BandStats | None) -> Tensor:
        if self._patch is None or self.cell_size is None:
            raise RuntimeError("HOGTarget.cells_per_patch() must run before the target is used")
        block = {"cell": 1, "patch": self._patch // self.cell_size, "none": 0}[self.norm]
        cells = hog_cells(
            image, cell_size=self.cell_size, orientations=self.orientations,
            soft=self.soft, block=block,
        )  # fmt: skip
        b, c, o, gh, gw = cells.shape
        return cells.reshape(b, c * o, gh, gw)


class HOGMAE(MAE):
    """MAE predicting :class:`HOGTarget` features of the masked patches (``target="hog"``)."""

    name = "hog"
    default_target = "hog"
