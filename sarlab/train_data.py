"""Data order and per-sample randomness that do not depend on how many processes train.

Exact resume and DDP equivalence both come down to one rule: what happens to a
sample is decided by ``(seed, epoch, sample position)`` alone, never by which
process holds it or what ran before.

* :class:`ShardedBatchSampler` shuffles with a generator seeded by ``(seed,
  epoch)`` and cuts the order into global batches; rank ``r`` of ``W`` gets the
  ``r``-th slice of each. Concatenating the ranks' batches gives the global batch
  a single process would see, and ``start_batch`` skips the batches a resumed
  run already trained on without reading them.
* :class:`SeededSamples` adds ``sample_seed`` (int64) to every sample, mixed
  from ``(seed, epoch, position)``. SSL methods that draw masks or augmentations
  from it (:func:`sample_rand`, :func:`sample_masking`) give each sample the same
  mask on one process or eight, so a DDP run reaches the weights of a
  single-process run with the same global batch (up to float summation order).
  Methods that draw from the global torch RNG still resume exactly (the trainer
  restores RNG states) but differ between world sizes.
* :class:`SeededStream` does the same for streaming (``IterableDataset``) corpora,
  which shard themselves over ranks and workers: ``sample_seed`` comes from
  ``(seed, epoch, sample["index"])``, so a sample's mask does not depend on which
  process read it (which samples meet in a batch still does).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, Sampler

__all__ = [
    "SAMPLE_SEED",
    "SeededSamples",
    "SeededStream",
    "ShardedBatchSampler",
    "mix_seed",
    "sample_masking",
    "sample_rand",
    "to_device",
]

SAMPLE_SEED = "sample_seed"
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective 64-bit mix (wrapping uint64 arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def mix_seed(*parts: int | np.ndarray) -> np.ndarray:
    """Non-negative int64 seed(s) mixed from integer parts (arrays broadcast).

    Unlike ``seed + rank`` it gives unrelated streams for neighbouring inputs.
    """
    with np.errstate(over="ignore"):
        h = np.zeros((), dtype=np.uint64)
        for part in parts:
            p = np.asarray(part).astype(np.int64).astype(np.uint64)
            h = _splitmix(h * _GOLDEN + p + _GOLDEN)
    return (h >> np.uint64(1)).astype(np.int64)


class ShardedBatchSampler(Sampler[list[tuple[int, int]]]):
    """One epoch of per-rank batches of ``(position, sample_seed)``, seeded by ``(seed, epoch)``.

    The tail of the shuffled order that does not fill a global batch is dropped,
    so every rank gets the same number of full batches (no padding duplicates).
    """

    def __init__(
        self,
        n: int,
        global_batch: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by {world_size} ranks")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} out of range for world size {world_size}")
        self.n, self.global_batch = int(n), int(global_batch)
        self.seed, self.epoch = int(seed), int(epoch)
        self.rank, self.world_size = int(rank), int(world_size)
        self.per_rank = self.global_batch // self.world_size
        self.num_batches = self.n // self.global_batch
        if not 0 <= start_batch <= self.num_batches:
            raise ValueError(f"start_batch {start_batch} out of range [0, {self.num_batches}]")
        self.start_batch = int(start_batch)

    def order(self) -> np.ndarray:
        """The epoch's permutation of positions (the same on every rank)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        return rng.permutation(self.n)

    def __len__(self) -> int:
        return self.num_batches - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order()
        seeds = mix_seed(self.seed, self.epoch, order)
        for b in range(self.start_batch, self.num_batches):
            lo = b * self.global_batch + self.rank * self.per_rank
            yield [(int(order[i]), int(seeds[i])) for i in range(lo, lo + self.per_rank)]


class SeededSamples(Dataset):
    """A dataset of dict samples indexed by ``(position, seed)``; adds ``sample_seed``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        position, seed = key
        sample = self.dataset[position]
        if not isinstance(sample, Mapping):
            raise TypeError(
                f"{type(self.dataset).__name__}[{position}] is a {type(sample).__name__}; "
                "the trainer needs dict samples (image, incidence, ...)"
            )
        return {**sample, SAMPLE_SEED: torch.tensor(seed, dtype=torch.int64)}


class SeededStream(IterableDataset):
    """A stream of dict samples with a stable ``index``; adds ``sample_seed`` for ``epoch``."""

    def __init__(self, dataset: IterableDataset, seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, int(seed), int(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for sample in self.dataset:
            if not isinstance(sample, Mapping) or "index" not in sample:
                raise TypeError(
                    f"{type(self.dataset).__name__} yielded a {type(sample).__name__} without "
                    "'index'; the trainer needs dict samples with a stable integer index"
                )
            seed = int(mix_seed(self.seed, self.epoch, int(sample["index"])))
            yield {**sample, SAMPLE_SEED: torch.tensor(seed, dtype=torch.int64)}


def sample_rand(seeds: Tensor, *shape: int, device: torch.device | str | None = None) -> Tensor:
    """Uniform noise ``(B, *shape)`` whose row ``i`` depends on ``seeds[i]`` only.

    Drawn on the CPU (one small generator per sample) so that the numbers are the
    same on every device and in every process; then moved to ``device``.
    """
    rows = []
    for s in seeds.detach().cpu().tolist():
        gen = torch.Generator().manual_seed(int(s))
        rows.append(torch.rand(shape, generator=gen))
    if not rows:
        return torch.empty((0, *shape), device=device)
    return torch.stack(rows).to(device)


def sample_masking(
    seeds: Tensor, num_patches: int, mask_ratio: float, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor]:
    """Per-sample ``(keep, masked)`` patch indices from :func:`sample_rand`, sorted ascending.

    The same contract as :func:`sarlab.models.vit.random_masking`: K =
    round(N * (1 - mask_ratio)) >= 1 patches kept per sample.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    n_keep = max(1, round(num_patches * (1.0 - mask_ratio)))
    order = sample_rand(seeds, num_patches, device=device).argsort(dim=1)
    return order[:, :n_keep].sort(dim=1).values, order[:, n_keep:].sort(dim=1).values


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Move the tensors of a collated batch (strings and other values stay as they are)."""
    non_blocking = device.type == "cuda"
    return {
        k: v.to(device, non_blocking=non_blocking) if isinstance(v, Tensor) else v
        for k, v in batch.items()
    }
