"""AdamW with weight-decay groups, and the warmup + cosine learning-rate schedule.

Weight decay pulls weights towards zero. That regularises matrices, but on a
LayerNorm gain, a bias, a position embedding or a learned token it only fights
the parameter's purpose (a position embedding decayed to zero forgets positions),
so those go in a group without decay, as in timm, MAE and DINO.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["build_optimizer", "lr_at", "no_decay", "param_groups", "set_lr"]

# Parameter-name endings that never get weight decay (besides every 0-D/1-D tensor).
_NO_DECAY_SUFFIXES = ("pos_embed", "cls_token", "mask_token", "_token", "register_tokens")


def lr_at(step: int, *, lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate of update ``step`` (0-based, ``0 <= step < total_steps``).

    Warmup: ``lr * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (the
    first update is not wasted at lr 0; the last warmup update is at ``lr``).
    Then cosine: ``min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2`` with
    ``t = (step - warmup_steps) / (total_steps - warmup_steps)``, so the decay
    starts at ``lr`` and ends one update short of ``min_lr``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def no_decay(name: str, param: torch.Tensor, extra: Iterable[str] = ()) -> bool:
    """True for norms, biases, position embeddings and tokens (see the module docstring).

    ``extra`` names (or name endings after a dot) are excluded too: a method's
    ``no_weight_decay()`` set, as in timm.
    """
    if param.ndim <= 1:
        return True
    last = name.rsplit(".", 1)[-1]
    if last.endswith(_NO_DECAY_SUFFIXES):
        return True
    return any(name == e or name.endswith("." + e) for e in extra)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: ``decay`` (weight_decay) and ``no_decay`` (0); frozen parameters left out.

    Each group carries its parameter ``names`` (in ``named_parameters`` order),
    which is what the tests and the optimizer state check against.
    """
    extra: set[str] = set()
    hook = getattr(model, "no_weight_decay", None)
    if callable(hook):
        extra = {str(n) for n in hook()}
    groups = {
        "decay": {"name": "decay", "params": [], "names": [], "weight_decay": weight_decay},
        "no_decay": {"name": "no_decay", "params": [], "names": [], "weight_decay": 0.0},
    }
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = groups["no_decay" if no_decay(name, param, extra) else "decay"]
        group["params"].append(param)
        group["names"].append(name)
    return [g for g in groups.values() if g["params"]]


def build_optimizer(
    model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; the schedule sets ``lr`` before every update."""
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every parameter group the learning rate ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
