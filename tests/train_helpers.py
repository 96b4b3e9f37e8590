"""Shared by the trainer tests and their subprocess worker: a tiny chip store and SSL method.

``TinyMasked`` follows the SSLMethod interface (forward -> (loss, logs),
config_dict, on_step_end, .encoder): it hides half the patches and predicts each
hidden patch from the cls token plus a learned position query. Its masks come
from the global torch RNG (what exact resume must restore) or, with
``seeded=True``, from the batch's ``sample_seed`` (what makes DDP match one
process).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import torch
import xarray as xr
from affine import Affine
from torch import Tensor, nn

from sarlab.chips import ChipStore, build_chip_store
from sarlab.conventions import sar_attrs
from sarlab.models import random_masking, vit_encoder
from sarlab.train_data import SAMPLE_SEED, sample_masking

CHIP = 16  # chip size (px)
PATCH = 4


def tiny_scene(scene_id: str, seed: int, size: int = 64) -> xr.Dataset:
    """A 2-band dB scene of 16 px blocks at random levels plus speckle-like noise.

    Chips have a level shared by their pixels, so a masked patch is predictable
    from the visible ones and a reconstruction loss can fall well below 1.
    """
    rng = np.random.default_rng(seed)
    blocks = rng.normal(-15.0, 4.0, (2, size // CHIP, size // CHIP))
    level = np.kron(blocks, np.ones((CHIP, CHIP)))
    ramp = np.linspace(-1.0, 1.0, size)[None, None, :]
    image = (level + ramp + rng.normal(0.0, 0.3, (2, size, size))).astype(np.float32)
    angle = np.tile(np.linspace(30, 45, size, dtype=np.float32), (size, 1))
    ds = xr.Dataset(
        {
            "backscatter": (("band", "y", "x"), image, sar_attrs("sigma0", "dB", ["VV", "VH"])),
            "incidence_angle": (("y", "x"), angle, {"units": "degrees"}),
        },
        coords={"band": ["VV", "VH"]},
        attrs={"scene_id": scene_id, "platform": "S1A", "mode": "IW", "product": "GRD"},
    )
    transform = Affine(10.0, 0.0, 500000.0 + 1000.0 * seed, 0.0, -10.0, 6000000.0)
    return ds.rio.write_crs("EPSG:32633").rio.write_transform(transform)


def build_tiny_store(path: Path, n_scenes: int = 2, **kwargs) -> ChipStore:
    """16 chips of 16 x 16 px per scene, all in the train split."""
    scenes = [tiny_scene(f"scene{i}", seed=i) for i in range(n_scenes)]
    return build_chip_store(
        scenes, path, size=CHIP, scheduler="sync", progress=False, min_valid=0.0, **kwargs
    )


def tiny_encoder(seed: int = 0):
    torch.manual_seed(seed)
    return vit_encoder(
        "tiny", in_chans=2, patch_size=PATCH, img_size=CHIP, embed_dim=32, depth=2, num_heads=2
    )


class TinyMasked(nn.Module):
    """A minimal masked-patch reconstruction method (see the module docstring)."""

    name = "tiny_masked"

    def __init__(self, encoder, mask_ratio: float = 0.5, seeded: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.mask_ratio, self.seeded = mask_ratio, seeded
        d, n = encoder.embed_dim, encoder.num_patches
        out = encoder.patch_size**2 * encoder.in_chans
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder_pos_embed = nn.Parameter(torch.randn(1, n, d) * 0.02)
        self.decoder = nn.Linear(d, out)
        self.register_buffer("last_step", torch.zeros((), dtype=torch.int64))
        self.step_calls: list[tuple[int, int]] = []

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        x = batch["image"]
        n = x.shape[-1] // self.encoder.patch_size * (x.shape[-2] // self.encoder.patch_size)
        if self.seeded:
            keep, masked = sample_masking(batch[SAMPLE_SEED], n, self.mask_ratio, x.device)
        else:
            keep, masked = random_masking(x.shape[0], n, self.mask_ratio, device=x.device)
        cls = self.encoder.forward_features(x, keep=keep)[:, :1]
        query = self.mask_token + self.decoder_pos_embed[0][masked]
        pred = self.decoder(cls + query)
        target = self.encoder.patchify(x)
        target = torch.gather(target, 1, masked.unsqueeze(-1).expand(-1, -1, target.shape[-1]))
        loss = ((pred.float() - target) ** 2).mean()
        return loss, {"masked": float(masked.shape[1]), "target_var": float(target.var())}

    def config_dict(self) -> dict:
        return {"mask_ratio": self.mask_ratio, "seeded": self.seeded}

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.last_step.fill_(step)
        self.step_calls.append((step, total_steps))
