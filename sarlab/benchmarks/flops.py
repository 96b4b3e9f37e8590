"""FLOPs of a ViT step, counted and by formula, and the matmul FLOP/s a machine reaches.

Convention (the usual one for model FLOP utilisation, as in PaLM's MFU): only
matrix products count (``mm``, ``addmm``, ``bmm``, convolutions, the two
products inside attention), at 2 FLOPs per multiply-add; LayerNorm, GELU,
softmax, residual adds and the optimiser are not model FLOPs. A training step
is 3x the forward FLOPs (the backward computes two products per forward one).

:func:`count_flops` runs ``torch.utils.flop_counter.FlopCounterMode``. In torch
2.13 it has no formula for the CPU kernel of ``F.scaled_dot_product_attention``
(``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward), so
attention would silently count zero on CPU; the same formulas torch uses for
the CUDA kernels are added here. :func:`encoder_flops` and
:func:`decoder_flops` are the closed forms the tests hold the counter to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import (
    FlopCounterMode,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from sarlab.models.vit import ViTConfig

__all__ = [
    "FlopCount",
    "count_flops",
    "decoder_flops",
    "encoder_flops",
    "matmul_flops_per_s",
    "transformer_block_flops",
]

_aten = torch.ops.aten


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args: Any, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args: Any, **kwargs: Any
) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _cpu_attention_formulas() -> dict[Any, Callable[..., int]]:
    """Formulas for the CPU SDPA kernels the installed torch does not count itself."""
    from torch.utils.flop_counter import flop_registry

    pairs = (
        ("_scaled_dot_product_flash_attention_for_cpu", _sdpa_cpu_flop),
        ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_cpu_backward_flop),
    )
    out = {}
    for name, formula in pairs:
        op = getattr(_aten, name, None)
        if op is not None and op not in flop_registry:
            out[op] = formula
    return out


@dataclass
class FlopCount:
    """Total FLOPs of a call and their split by aten operator."""

    total: int
    by_op: dict[str, int]


def count_flops(fn: Callable[[], Any]) -> tuple[FlopCount, Any]:
    """Run ``fn()`` under a FLOP counter (CPU attention included); returns (count, its result)."""
    with FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas()) as counter:
        result = fn()
    by_op = {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}
    return FlopCount(int(counter.get_total_flops()), by_op), result


def transformer_block_flops(batch: int, tokens: int, dim: int, hidden: int) -> int:
    """Forward FLOPs of one pre-norm block: qkv, q @ k^T, attn @ v, proj, fc1, fc2.

    The attention products over all heads together are ``tokens^2 * dim``
    multiply-adds each, whatever the head count.
    """
    linear = batch * tokens * dim * (3 * dim + dim + 2 * hidden)
    attention = 2 * batch * tokens * tokens * dim
    return 2 * (linear + attention)


def encoder_flops(
    config: ViTConfig, batch: int, img_size: tuple[int, int], keep: int | None = None
) -> int:
    """Forward FLOPs of :class:`~sarlab.models.ViTEncoder` on ``batch`` images.

    The patch embedding (and the incidence embedding) run on every patch; the
    blocks see ``1 + keep`` tokens (all patches when ``keep`` is None).
    """
    p, d = config.patch_size, config.embed_dim
    patches = (img_size[0] // p) * (img_size[1] // p)
    tokens = 1 + (patches if keep is None else keep)
    flops = 2 * batch * patches * d * config.in_chans * p * p
    if config.incidence_conditioning:
        flops += 2 * batch * patches * (1 + 2 * config.incidence_frequencies) * d
    hidden = int(d * config.mlp_ratio)
    return flops + config.depth * transformer_block_flops(batch, tokens, d, hidden)


def decoder_flops(decoder: nn.Module, batch: int, encoder_tokens: int, patches: int) -> int:
    """Forward FLOPs of :class:`~sarlab.ssl.decoder.MaskedDecoder` (sizes read off its layers).

    Its blocks and prediction run on ``1 + patches`` tokens (mask tokens filled in).
    """
    embed, pred = decoder.embed, decoder.pred
    tokens = 1 + patches
    flops = 2 * batch * encoder_tokens * embed.in_features * embed.out_features
    for block in decoder.blocks:
        hidden = block.mlp.fc1.out_features
        flops += transformer_block_flops(batch, tokens, decoder.dim, hidden)
    return flops + 2 * batch * tokens * pred.in_features * pred.out_features


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops_per_s(
    m: int,
    k: int,
    n: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    repeats: int = 5,
    min_repeat_s: float = 0.05,
) -> dict[str, Any]:
    """FLOP/s of ``torch.mm`` of an (m, k) by a (k, n) matrix: best of ``repeats`` timed loops.

    Best, not median: it is the denominator of a utilisation, and the most this
    machine showed it can do is the honest one. Each loop runs at least
    ``min_repeat_s`` after a warmup that also sizes it.
    """
    device = torch.device(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(k, n, generator=gen).to(device=device, dtype=dtype)
    out = torch.empty(m, n, device=device, dtype=dtype)
    iters = 1
    while True:  # warmup, doubling the loop until it takes min_repeat_s
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            torch.mm(a, b, out=out)
        _sync(device)
        if time.perf_counter() - start >= min_repeat_s or iters >= 2**20:
            break
        iters *= 2
    best = 0.0
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            torch.mm(a, b, out=out)
        _sync(device)
        best = max(best, 2.0 * m * k * n * iters / (time.perf_counter() - start))
    return {"m": m, "k": k, "n": n, "dtype": str(dtype).removeprefix("torch."), "flops_per_s": best}
