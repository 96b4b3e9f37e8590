"""A plain-PyTorch Vision Transformer encoder for SAR chips.

Why not timm: it does not import in every environment sarlab runs in, and the SSL
methods need a few hooks (keep-index masking, any channel count, incidence-angle
conditioning) that are easier to own than to patch. Parameter names follow timm's
``VisionTransformer`` exactly (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.norm1``, ``blocks.N.attn.qkv``, ``blocks.N.attn.proj``, ``blocks.N.norm2``,
``blocks.N.mlp.fc1``, ``blocks.N.mlp.fc2``, ``norm``) and the qkv layout is the same,
so published ViT weights load (see :func:`sarlab.models.checkpoint.load_encoder`).
sarlab-only parameters live under ``incidence_embed.``.

Token pipeline (:meth:`ViTEncoder.embed_tokens`): patch embedding -> + incidence
embedding (optional) -> + position embedding (bicubically resampled to the input
grid) -> keep the ``keep`` patches (MAE-style masking) -> prepend the cls token
(+ its own position embedding) -> blocks -> final LayerNorm.

Initialisation follows timm/MAE: Linear and the patch projection (viewed as a
Linear) trunc-normal std 0.02 with zero bias, LayerNorm (1, 0), learned position
embedding trunc-normal 0.02 (no fixed sin-cos table: the grid is resampled anyway),
cls token normal std 1e-6, and the incidence embedding's output layer zero, so a
conditioned model starts as the unconditioned one (and a pretrained unconditioned
encoder keeps its function when conditioning is switched on).

Patch layout of :meth:`ViTEncoder.patchify`: patches in row-major order over the
patch grid (n = i * grid_w + j); inside a patch, pixels in row-major order and
channels last: feature ``(r * p + c) * C + ch`` holds ``x[ch, i*p + r, j*p + c]``
(MAE's layout, for any C).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PRESETS",
    "ViTConfig",
    "ViTEncoder",
    "random_masking",
    "resample_pos_embed",
    "vit_encoder",
]

PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
}


@dataclass
class ViTConfig:
    """Everything needed to rebuild an encoder; stored as ``architecture`` in model cards.

    ``img_size`` is the grid the position embedding is stored at; any input whose
    sides divide by ``patch_size`` is accepted. ``incidence_frequencies`` is the
    number of Fourier frequencies of the incidence-angle embedding.
    """

    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    patch_size: int = 16
    img_size: int = 224
    in_chans: int = 2
    qkv_bias: bool = True
    drop_path_rate: float = 0.0
    incidence_conditioning: bool = False
    incidence_frequencies: int = 8
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("embed_dim", "depth", "num_heads", "patch_size", "img_size", "in_chans"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by {self.num_heads}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of {self.patch_size}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (ints, floats, bools)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViTConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ViTConfig keys {unknown}; known: {sorted(names)}")
        return cls(**data)

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2


def vit_encoder(
    preset: str = "tiny",
    in_chans: int = 2,
    patch_size: int = 16,
    img_size: int = 224,
    incidence_conditioning: bool = False,
    **overrides: Any,
) -> ViTEncoder:
    """Build a preset encoder (tiny/small/base); ``overrides`` replace any ViTConfig field."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    config = ViTConfig(
        **{
            **PRESETS[preset],
            "in_chans": in_chans,
            "patch_size": patch_size,
            "img_size": img_size,
            "incidence_conditioning": incidence_conditioning,
            **overrides,
        }
    )
    return ViTEncoder(config)


def random_masking(
    batch: int,
    num_patches: int,
    mask_ratio: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Random ``(keep, masked)`` patch indices per sample, each sorted ascending.

    ``keep`` (B, K) goes to :meth:`ViTEncoder.forward_features`; ``masked`` (B, N-K)
    says which patches a method must reconstruct. K = round(N * (1 - mask_ratio)), >= 1.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    n_keep = max(1, round(num_patches * (1.0 - mask_ratio)))
    noise = torch.rand(batch, num_patches, generator=generator, device=device)
    order = noise.argsort(dim=1)
    keep = order[:, :n_keep].sort(dim=1).values
    masked = order[:, n_keep:].sort(dim=1).values
    return keep, masked


def resample_pos_embed(pos_embed: Tensor, grid: tuple[int, int]) -> Tensor:
    """Resample a ``(1, 1 + S*S, D)`` position embedding to ``(1, 1 + gh*gw, D)``.

    The cls entry is kept; the square S x S grid is resampled bicubically with
    antialiasing in float32, as timm's ``resample_abs_pos_embed`` does, so weights
    tuned at 224 px keep their meaning at 64 or 512 px.
    """
    n = pos_embed.shape[1] - 1
    side = math.isqrt(n)
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1 or side * side != n or n == 0:
        raise ValueError(
            f"pos_embed of shape {tuple(pos_embed.shape)} is not (1, 1 + S*S, D) "
            "(one cls entry, then a square grid)"
        )
    grid = (int(grid[0]), int(grid[1]))
    if grid == (side, side):
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    d = patch_pos.shape[-1]
    patch_pos = patch_pos.float().reshape(1, side, side, d).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(
        patch_pos, size=grid, mode="bicubic", align_corners=False, antialias=True
    )
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], d)
    return torch.cat([cls_pos, patch_pos.to(cls_pos.dtype)], dim=1)


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> tokens via one strided convolution."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with timm's fused qkv layout, computed by SDPA."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch with probability ``p``."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Block(nn.Module):
    """Pre-norm transformer block (timm names: norm1, attn, norm2, mlp)."""

    def __init__(self, config: ViTConfig, drop_path: float) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=config.norm_eps)
        self.attn = Attention(dim, config.num_heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=config.norm_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class IncidenceEmbed(nn.Module):
    """Fourier features of a patch's mean incidence angle -> a token offset.

    The angle in degrees is scaled to u = angle / 90 and expanded to
    [u, sin(pi k u), cos(pi k u)] for k = 1..F, then mapped linearly to the token
    width. Patches with no finite angle get a zero offset.
    """

    def __init__(self, embed_dim: int, frequencies: int) -> None:
        super().__init__()
        self.register_buffer(
            "freqs",
            math.pi * torch.arange(1, frequencies + 1, dtype=torch.float32),
            persistent=False,
        )
        self.proj = nn.Linear(1 + 2 * frequencies, embed_dim)

    def forward(self, angle: Tensor) -> Tensor:
        """``angle`` (B, N) degrees, NaN where unknown -> (B, N, D)."""
        valid = torch.isfinite(angle)
        u = torch.where(valid, angle, torch.zeros_like(angle)).float().unsqueeze(-1) / 90.0
        phase = u * self.freqs
        out = self.proj(torch.cat([u, phase.sin(), phase.cos()], dim=-1))
        return out * valid.unsqueeze(-1).to(out.dtype)


class ViTEncoder(nn.Module):
    """ViT encoder returning normalised tokens ``(B, 1 + N, D)`` (cls first).

    The interface SSL methods and heads rely on: :meth:`forward`,
    :meth:`forward_features` (with ``keep`` indices), :meth:`embed_tokens`,
    :meth:`patchify`/:meth:`unpatchify`, :meth:`grid_size`, :meth:`pos_embed_for`,
    :meth:`pool`, :meth:`dense_features`, and the attributes ``config``,
    ``embed_dim``, ``patch_size``, ``in_chans``, ``num_patches``,
    ``num_prefix_tokens``.
    """

    num_prefix_tokens = 1

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        d = config.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.num_patches, d))
        self.patch_embed = PatchEmbed(config.in_chans, d, config.patch_size)
        # Stochastic depth grows linearly with depth (timm); floats so meta-device builds work.
        rates = [config.drop_path_rate * i / max(config.depth - 1, 1) for i in range(config.depth)]
        self.blocks = nn.ModuleList(Block(config, rate) for rate in rates)
        self.norm = nn.LayerNorm(d, eps=config.norm_eps)
        self.incidence_embed = (
            IncidenceEmbed(d, config.incidence_frequencies)
            if config.incidence_conditioning
            else None
        )
        # Set by sarlab.models.load_encoder: the checkpoint's model card and what loading did.
        self.model_card: dict[str, Any] | None = None
        self.load_report: dict[str, list[str]] | None = None
        self.reset_parameters()

    # ---- attributes -------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def in_chans(self) -> int:
        return self.config.in_chans

    @property
    def num_patches(self) -> int:
        """Patches at the stored ``img_size`` (inputs of other sizes have their own count)."""
        return self.config.num_patches

    def reset_parameters(self) -> None:
        """timm/MAE initialisation (see the module docstring)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        w = self.patch_embed.proj.weight
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=0.02)
        nn.init.zeros_(self.patch_embed.proj.bias)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.incidence_embed is not None:
            nn.init.zeros_(self.incidence_embed.proj.weight)
            nn.init.zeros_(self.incidence_embed.proj.bias)

    # ---- geometry ---------------------------------------------------------------------
    def grid_size(self, img_size: int | tuple[int, int]) -> tuple[int, int]:
        """Patch grid ``(rows, cols)`` of an image; sides must divide by the patch size."""
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        p = self.patch_size
        if h % p or w % p or h < p or w < p:
            raise ValueError(f"image size {(h, w)} is not a positive multiple of patch {p}")
        return h // p, w // p

    def pos_embed_for(self, grid: tuple[int, int]) -> Tensor:
        """Position embedding ``(1, 1 + gh*gw, D)`` for a grid (:func:`resample_pos_embed`)."""
        return resample_pos_embed(self.pos_embed, grid)

    def patch_incidence(self, incidence: Tensor, grid: tuple[int, int]) -> Tensor:
        """Mean finite incidence angle of each patch ``(B, N)``; NaN where a patch has none."""
        if incidence.ndim == 4 and incidence.shape[1] == 1:
            incidence = incidence[:, 0]
        if incidence.ndim != 3:
            raise ValueError(f"incidence must be (B, H, W), got shape {tuple(incidence.shape)}")
        inc = incidence.float().unsqueeze(1)
        valid = torch.isfinite(inc)
        p = self.patch_size
        total = F.avg_pool2d(torch.where(valid, inc, torch.zeros_like(inc)), p)
        count = F.avg_pool2d(valid.float(), p)
        mean = total / count.clamp_min(1e-12)
        mean = torch.where(count > 0, mean, torch.full_like(mean, float("nan")))
        return mean.reshape(mean.shape[0], grid[0] * grid[1])

    # ---- patches ------------------------------------------------------------------------
    def patchify(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, N, p*p*C)`` in the layout of the module docstring."""
        b, c, _, _ = x.shape
        gh, gw = self.grid_size(tuple(x.shape[-2:]))
        p = self.patch_size
        x = x.reshape(b, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, gh * gw, p * p * c)

    def unpatchify(self, patches: Tensor, img_size: int | tuple[int, int] | None = None) -> Tensor:
        """Inverse of :meth:`patchify`; channels come from the feature width.

        ``img_size`` defaults to a square image.
        """
        b, n, f = patches.shape
        p = self.patch_size
        if f % (p * p):
            raise ValueError(f"patch width {f} is not a multiple of {p}x{p}")
        c = f // (p * p)
        if img_size is None:
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(f"{n} patches do not form a square; pass img_size")
            gh = gw = side
        else:
            gh, gw = self.grid_size(img_size)
            if gh * gw != n:
                raise ValueError(f"{n} patches do not fill a {gh}x{gw} grid")
        x = patches.reshape(b, gh, gw, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, gh * p, gw * p)

    # ---- forward ------------------------------------------------------------------------
    def embed_tokens(
        self, x: Tensor, incidence: Tensor | None = None, keep: Tensor | None = None
    ) -> Tensor:
        """First-layer input ``(B, 1 + K, D)``: embedded patches, masked by ``keep``, plus cls."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected (B, {self.in_chans}, H, W) input, got shape {tuple(x.shape)}"
            )
        grid = self.grid_size(tuple(x.shape[-2:]))
        tokens = self.patch_embed(x)
        if self.incidence_embed is not None:
            if incidence is None:
                raise ValueError("this encoder is incidence-conditioned: pass incidence=(B, H, W)")
            if tuple(incidence.shape[-2:]) != tuple(x.shape[-2:]):
                raise ValueError(
                    f"incidence shape {tuple(incidence.shape)} does not match image "
                    f"{tuple(x.shape)}"
                )
            angle = self.patch_incidence(incidence, grid)
            tokens = tokens + self.incidence_embed(angle).to(tokens.dtype)
        pos = self.pos_embed_for(grid)
        tokens = tokens + pos[:, 1:]
        if keep is not None:
            if keep.ndim != 2 or keep.shape[0] != tokens.shape[0]:
                raise ValueError(f"keep must be (B, K) indices, got shape {tuple(keep.shape)}")
            index = keep.long().unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
            tokens = torch.gather(tokens, 1, index)
        cls = (self.cls_token + pos[:, :1]).expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1)

    def forward_features(
        self, x: Tensor, incidence: Tensor | None = None, keep: Tensor | None = None
    ) -> Tensor:
        """Normalised tokens ``(B, 1 + K, D)``; ``keep`` (B, K) selects visible patches."""
        tokens = self.embed_tokens(x, incidence, keep)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, x: Tensor, incidence: Tensor | None = None) -> Tensor:
        """All tokens ``(B, 1 + N, D)`` after the final LayerNorm (cls first)."""
        return self.forward_features(x, incidence)

    @staticmethod
    def pool(tokens: Tensor, mode: str = "cls") -> Tensor:
        """One vector per image ``(B, D)``: the cls token, or the mean of the patch tokens."""
        if mode == "cls":
            return tokens[:, 0]
        if mode == "mean":
            return tokens[:, 1:].mean(dim=1)
        raise ValueError(f"unknown pool mode {mode!r}; expected 'cls' or 'mean'")

    def dense_features(
        self,
        x: Tensor,
        incidence: Tensor | None = None,
        *,
        layers: list[int] | tuple[int, ...] | None = None,
    ) -> Tensor | list[Tensor]:
        """Patch tokens as a feature map ``(B, D, H/p, W/p)`` for segmentation decoders.

        With ``layers`` (block indices, negatives from the end), returns one map per
        listed block output, each passed through the final LayerNorm (as timm's
        ``get_intermediate_layers``), for multi-level decoders.
        """
        gh, gw = self.grid_size(tuple(x.shape[-2:]))

        def as_map(tokens: Tensor) -> Tensor:
            return tokens[:, 1:].transpose(1, 2).reshape(tokens.shape[0], -1, gh, gw)

        if layers is None:
            return as_map(self.forward_features(x, incidence))
        depth = len(self.blocks)
        wanted = [i % depth if -depth <= i < depth else None for i in layers]
        if None in wanted:
            raise ValueError(f"layers {list(layers)} out of range for depth {depth}")
        outputs: dict[int, Tensor] = {}
        tokens = self.embed_tokens(x, incidence)
        for i, block in enumerate(self.blocks[: max(wanted) + 1]):
            tokens = block(tokens)
            if i in wanted:
                outputs[i] = as_map(self.norm(tokens))
        return [outputs[i] for i in wanted]
