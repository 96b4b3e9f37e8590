"""Our ViT encoder rebuilt from ``torch.nn.TransformerEncoderLayer``: the speed reference.

What a user would write without sarlab's encoder: the stock PyTorch transformer
layer (``nn.MultiheadAttention`` with its fused ``in_proj``, batch_first,
norm_first), with the same patch embedding, tokens and weights, so a timing
difference between the two is the implementation, not the model.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sarlab.models.vit import ViTConfig, ViTEncoder

__all__ = ["ReferenceViT"]


class ReferenceViT(nn.Module):
    """Our ViT's architecture from ``nn.TransformerEncoderLayer`` (batch_first, norm_first).

    Same patch embedding, cls token, learned position embedding, pre-norm blocks
    (GELU, no dropout, same LayerNorm eps) and final LayerNorm. The fused
    ``in_proj`` of ``nn.MultiheadAttention`` stacks q, k, v as timm's ``qkv`` does,
    so :meth:`load_from` copies weights one to one.
    """

    def __init__(self, config: ViTConfig, dropout: float = 0.0) -> None:
        """``dropout=0.1`` is ``nn.TransformerEncoderLayer``'s own default (the stock layer)."""
        super().__init__()
        if not config.qkv_bias or config.incidence_conditioning or config.drop_path_rate:
            raise ValueError(
                "the reference covers qkv_bias=True, no incidence conditioning, no drop path"
            )
        self.config = config
        d = config.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.num_patches, d))
        self.patch_embed = nn.Conv2d(config.in_chans, d, config.patch_size, config.patch_size)
        layer = nn.TransformerEncoderLayer(
            d, config.num_heads, int(d * config.mlp_ratio), dropout=dropout, activation="gelu",
            layer_norm_eps=config.norm_eps, batch_first=True, norm_first=True,
        )  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, config.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d, eps=config.norm_eps)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` at the configured size -> ``(B, 1 + N, D)`` (cls first)."""
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        return self.norm(self.encoder(torch.cat([cls, tokens], dim=1)))

    @torch.no_grad()
    def load_from(self, encoder: ViTEncoder) -> ReferenceViT:
        """Copy a :class:`~sarlab.models.ViTEncoder`'s weights (same config) into this model."""
        src = encoder.state_dict()
        names = {
            "cls_token": "cls_token", "pos_embed": "pos_embed",
            "patch_embed.weight": "patch_embed.proj.weight",
            "patch_embed.bias": "patch_embed.proj.bias",
            "norm.weight": "norm.weight", "norm.bias": "norm.bias",
        }  # fmt: skip
        per_block = {
            "self_attn.in_proj_weight": "attn.qkv.weight",
            "self_attn.in_proj_bias": "attn.qkv.bias",
            "self_attn.out_proj.weight": "attn.proj.weight",
            "self_attn.out_proj.bias": "attn.proj.bias",
            "linear1.weight": "mlp.fc1.weight", "linear1.bias": "mlp.fc1.bias",
            "linear2.weight": "mlp.fc2.weight", "linear2.bias": "mlp.fc2.bias",
            "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
            "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
        }  # fmt: skip
        for i in range(self.config.depth):
            for ours, theirs in per_block.items():
                names[f"encoder.layers.{i}.{ours}"] = f"blocks.{i}.{theirs}"
        missing = set(self.state_dict()) ^ set(names)
        if missing:
            raise KeyError(f"reference and encoder parameters do not pair up: {sorted(missing)}")
        self.load_state_dict({k: src[v] for k, v in names.items()})
        return self
