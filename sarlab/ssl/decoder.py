"""The light MAE-style decoder shared by the masked-prediction methods.

Encoded visible tokens are projected to the decoder width, mask tokens fill the
hidden positions, a fixed 2-D sin-cos position embedding (MAE's) is added for
the actual patch grid (so any input size works without resampling), a few
transformer blocks run, and a linear layer predicts each patch's target
features. It is thrown away after pretraining, so it is small by default
(2 blocks of width 128) to keep CPU runs fast.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sarlab.models.vit import Block, ViTConfig

__all__ = ["MaskedDecoder", "sincos_pos_embed_2d"]


def sincos_pos_embed_2d(grid: tuple[int, int], dim: int, device=None) -> Tensor:
    """``(1, gh*gw, dim)`` MAE sin-cos embedding: half the width for rows, half for columns."""
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    gh, gw = grid
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter)
    rows = torch.arange(gh, dtype=torch.float64, device=device).repeat_interleave(gw)
    cols = torch.arange(gw, dtype=torch.float64, device=device).repeat(gh)
    parts = []
    for pos in (rows, cols):
        phase = pos[:, None] * omega[None, :]
        parts += [phase.sin(), phase.cos()]
    return torch.cat(parts, dim=1).float().unsqueeze(0)


class MaskedDecoder(nn.Module):
    """``(tokens (B, 1+K, D), keep (B, K) | None, grid) -> (B, gh*gw, out_dim)``."""

    def __init__(
        self,
        encoder_dim: int,
        out_dim: int,
        *,
        dim: int = 128,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if depth < 0 or dim % 4 or dim % num_heads:
            raise ValueError(
                f"decoder depth must be >= 0 and width ({dim}) divisible by 4 and by "
                f"num_heads ({num_heads})"
            )
        self.dim = dim
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        config = ViTConfig(
            embed_dim=dim, depth=max(depth, 1), num_heads=num_heads, mlp_ratio=mlp_ratio,
            patch_size=1, img_size=1, in_chans=1,
        )  # fmt: skip
        self.blocks = nn.ModuleList(Block(config, 0.0) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pred = nn.Linear(dim, out_dim)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor, keep: Tensor | None, grid: tuple[int, int]) -> Tensor:
        x = self.embed(tokens)
        b, n = x.shape[0], grid[0] * grid[1]
        if keep is None:
            patches = x[:, 1:]
        else:
            patches = self.mask_token.to(x.dtype).expand(b, n, self.dim)
            index = keep.long().unsqueeze(-1).expand(-1, -1, self.dim)
            patches = patches.scatter(1, index, x[:, 1:])
        if patches.shape[1] != n:
            raise ValueError(f"{patches.shape[1]} patch tokens for a {grid} grid")
        pos = sincos_pos_embed_2d(grid, self.dim, device=x.device).to(x.dtype)
        x = torch.cat([x[:, :1], patches + pos], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.pred(self.norm(x))[:, 1:]
