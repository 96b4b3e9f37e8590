"""Process-group setup for DistributedDataParallel under ``torchrun``, and the few collectives used.

``torchrun --nproc_per_node N`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
the rendezvous variables; with ``WORLD_SIZE > 1`` the trainer joins the group
(NCCL on GPUs, gloo on CPUs). Without those variables everything degrades to one
process and no collective is ever called.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DistInfo", "all_mean", "barrier", "gather_objects", "setup_distributed"]


@dataclass
class DistInfo:
    """This process's place in the run; ``created`` says whether fit must tear the group down."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    created: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def close(self) -> None:
        """Destroy the process group if :func:`setup_distributed` created it."""
        if self.created and dist.is_initialized():
            dist.destroy_process_group()


def _pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by the environment (or use one already initialised)."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        chosen = _pick_device(device, local)
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        return DistInfo(rank, world, local, chosen, created=False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = _pick_device(device, local)
    if world <= 1:
        return DistInfo(0, 1, 0, chosen, created=False)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    backend = "nccl" if chosen.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, chosen, created=True)


def all_mean(values: Tensor, info: DistInfo) -> Tensor:
    """Mean of a tensor over the ranks (the tensor itself with one process)."""
    if not info.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / info.world_size


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj`` (picklable, trusted: our own RNG states), in rank order."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
