"""Shared by the SSL method tests: a tiny encoder, band statistics and a fixed smooth batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sarlab.models import vit_encoder
from sarlab.models.vit import ViTEncoder
from sarlab.preprocess import BandStats
from sarlab.ssl import SSLMethod

IMG, PATCH = 32, 8


def band_stats(bands: tuple[str, ...] = ("VV", "VH")) -> BandStats:
    """dB statistics wide enough that normalising test images clips nothing."""
    n = len(bands)
    mean = [-12.0 - 7.0 * i for i in range(n)]
    return BandStats(
        bands=list(bands), units="dB", mean=mean, std=[5.0] * n, median=mean,
        p01=[m - 40.0 for m in mean], p99=[m + 40.0 for m in mean], count=[1000] * n,
    )  # fmt: skip


def tiny_encoder(chans: int = 2, incidence: bool = False, seed: int = 0) -> ViTEncoder:
    torch.manual_seed(seed)
    return vit_encoder(
        "tiny", in_chans=chans, patch_size=PATCH, img_size=IMG, depth=2,
        incidence_conditioning=incidence,
    )  # fmt: skip


def smooth_batch(b: int = 8, chans: int = 2, seed: int = 0, size: int = IMG) -> dict:
    """Normalised images of smooth structure (upsampled 2x2 levels) plus a little noise.

    Structure is predictable from context, so masked-prediction losses can fall;
    ``sample_seed`` fixes masks and augmentations, so every step sees the same task.
    """
    gen = torch.Generator().manual_seed(seed)
    levels = torch.randn(b, chans, 2, 2, generator=gen)
    image = F.interpolate(levels, size=(size, size), mode="bilinear", align_corners=False)
    image = image + 0.05 * torch.randn(b, chans, size, size, generator=gen)
    ramp = torch.linspace(30.0, 45.0, size).expand(b, size, size).clone()
    seeds = torch.arange(b, dtype=torch.int64) + 1000 * seed
    return {"image": image, "incidence": ramp, "sample_seed": seeds}


def train_losses(method: SSLMethod, batch: dict, steps: int = 25, lr: float = 1e-3) -> list[float]:
    """AdamW on one fixed batch; the loss after every step (and before the first)."""
    torch.manual_seed(1)
    params = [p for p in method.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    method.train()
    losses = []
    for step in range(steps):
        loss, _ = method(batch)
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.on_step_end(step + 1, steps)
    with torch.no_grad():
        losses.append(float(method(batch)[0]))
    return losses
