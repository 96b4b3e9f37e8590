"""Light segmentation heads over ViT patch features, and a small supervised U-Net baseline.

Every model here maps ``(B, C, H, W)`` to a dict ``{task: logits (B, K, H, W)}``
so multi-task sea ice (SIC, SOD, FLOE) and single-task water share one training loop.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LinearHead", "ProgressiveDecoder", "TaskHeads", "UNet"]


class TaskHeads(nn.Module):
    """One 1x1 convolution per task: ``{task: n_classes}`` -> logits."""

    def __init__(self, channels: int, tasks: Mapping[str, int]) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("at least one task is needed")
        self.heads = nn.ModuleDict({t: nn.Conv2d(channels, int(k), 1) for t, k in tasks.items()})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {t: head(x) for t, head in self.heads.items()}


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class LinearHead(nn.Module):
    """Linear probe for segmentation: a 1x1 layer per patch token, upsampled bilinearly."""

    def __init__(self, in_dim: int, tasks: Mapping[str, int], n_levels: int = 1) -> None:
        super().__init__()
        self.heads = TaskHeads(in_dim * n_levels, tasks)

    def forward(self, features: list[Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
        out = self.heads(torch.cat(features, dim=1))
        return {
            t: F.interpolate(v, size=size, mode="bilinear", align_corners=False)
            for t, v in out.items()
        }


class ProgressiveDecoder(nn.Module):
    """Progressive upsampling (SETR-PUP-like) over one or more ViT levels.

    The levels (block outputs at patch resolution) are concatenated and fused by a
    1x1 convolution, then doubled in resolution ``log2(patch)`` times by bilinear
    upsampling + 3x3 conv/BN/ReLU, halving the width each time (never below 16),
    so a 16 px patch grid becomes full resolution in four cheap steps.
    """

    def __init__(
        self,
        in_dim: int,
        tasks: Mapping[str, int],
        patch_size: int,
        n_levels: int = 1,
        channels: int = 128,
    ) -> None:
        super().__init__()
        if patch_size & (patch_size - 1):
            raise ValueError(f"patch_size {patch_size} must be a power of two")
        self.fuse = nn.Sequential(
            nn.Conv2d(in_dim * n_levels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        stages, c = [], channels
        for _ in range(patch_size.bit_length() - 1):
            stages.append(_conv_block(c, max(16, c // 2)))
            c = max(16, c // 2)
        self.stages = nn.ModuleList(stages)
        self.heads = TaskHeads(c, tasks)

    def forward(self, features: list[Tensor], size: tuple[int, int]) -> dict[str, Tensor]:
        x = self.fuse(torch.cat(features, dim=1))
        for stage in self.stages:
            x = stage(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.heads(x)


class UNet(nn.Module):
    """A small supervised U-Net (the AutoICE starter kit's baseline family), random init.

    ``widths`` are the channels of each level; inputs whose sides divide by
    ``2 ** (len(widths) - 1)`` keep their size.
    """

    def __init__(
        self, in_chans: int, tasks: Mapping[str, int], widths: tuple[int, ...] = (16, 32, 64)
    ) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        c = in_chans
        for w in widths:
            self.down.append(nn.Sequential(_conv_block(c, w), _conv_block(w, w)))
            c = w
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.Sequential(_conv_block(c + w, w), _conv_block(w, w)))
            c = w
        self.heads = TaskHeads(c, tasks)
        self.in_chans = in_chans

    def forward(self, x: Tensor, incidence: Tensor | None = None) -> dict[str, Tensor]:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.heads(x)
