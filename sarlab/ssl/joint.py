"""Joint-embedding objectives: VICReg and BYOL, their projector, EMA and cross-rank gathering.

VICReg (Bardes, Ponce & LeCun 2022): invariance (MSE between the two views'
embeddings) + variance (hinge keeping each dimension's std above 1 over the
batch) + covariance (squared off-diagonal covariances, decorrelating the
dimensions), coefficients 25 / 25 / 1 as in the paper. Under DDP the
embeddings are gathered from all processes (with gradients) first, as the
official code does, so the statistics are those of the global batch.

BYOL (Grill et al. 2020): an online network with a predictor regresses the
normalised output of a target network, an exponential moving average (EMA) of
the online one, whose momentum rises from ``base`` to 1 on a cosine schedule.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["byol_loss", "ema_momentum", "ema_update", "gather_batch", "mlp", "vicreg_loss"]


def mlp(
    in_dim: int, hidden: int, out_dim: int, layers: int = 2, last_bn: bool = False
) -> nn.Sequential:
    """``layers`` Linear layers with BatchNorm + ReLU between them (VICReg/BYOL heads)."""
    if layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got {layers}")
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        dim = hidden
    mods.append(nn.Linear(dim, out_dim))
    if last_bn:
        mods.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*mods)


def gather_batch(z: Tensor) -> Tensor:
    """Concatenate ``z`` over all DDP processes, keeping gradients; ``z`` itself otherwise."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(z), dim=0)


def _off_diagonal(m: Tensor) -> Tensor:
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def vicreg_loss(
    z1: Tensor,
    z2: Tensor,
    *,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    eps: float = 1e-4,
) -> tuple[Tensor, dict[str, Tensor]]:
    """VICReg loss of two ``(B, D)`` embedding batches and its three terms (unweighted)."""
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(f"need two (B >= 2, D) batches, got {tuple(z1.shape)}, {tuple(z2.shape)}")
    z1, z2 = z1.float(), z2.float()
    invariance = F.mse_loss(z1, z2)
    n, d = z1.shape
    variance = z1.new_zeros(())
    covariance = z1.new_zeros(())
    for z in (z1, z2):
        z = z - z.mean(dim=0)
        std = torch.sqrt(z.var(dim=0) + eps)
        variance = variance + F.relu(1.0 - std).mean() / 2
        cov = (z.T @ z) / (n - 1)
        covariance = covariance + _off_diagonal(cov).pow(2).sum() / d
    loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
    return loss, {"invariance": invariance, "variance": variance, "covariance": covariance}


def byol_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """``2 - 2 cos(prediction, target)`` averaged over the batch (target carries no gradient)."""
    p = F.normalize(prediction.float(), dim=-1)
    t = F.normalize(target.detach().float(), dim=-1)
    return (2.0 - 2.0 * (p * t).sum(dim=-1)).mean()


def ema_momentum(step: int, total_steps: int, base: float) -> float:
    """BYOL's cosine schedule: ``base`` at step 0, 1 at the last step."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target = momentum * target + (1 - momentum) * online``; buffers are copied."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o.detach(), 1.0 - momentum)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)
