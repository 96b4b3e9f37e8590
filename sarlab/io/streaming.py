"""Streaming pretraining corpora shard by shard, for data sets far larger than memory.

SSL4EO-S12 (about 1 M Sentinel-1 images) and Major TOM Core-S1RTC (1.47 M patches
of 1068 px, about 15 TB) are published as thousands of shard files. A map-style
dataset would need an index over every sample before the first step; a stream
reads the shards in order and only ever holds one read unit (a zarr chunk, a
parquet row group, a tar member) plus the shuffle buffer.

:class:`ShardStream` is the format-agnostic part, shared by
:class:`~sarlab.io.ssl4eo.SSL4EOS1Stream` and
:class:`~sarlab.io.majortom.MajorTOMS1Stream`:

* Disjoint, complete sharding: every epoch the sorted shard list is permuted
  with ``(seed, epoch)``; rank ``r`` of ``W`` reads every ``W``-th shard of that
  order from the ``r``-th (the same shards whatever its number of DataLoader
  workers), and its workers split those the same way. Rank and world size come
  from :meth:`ShardStream.set_distributed` (what :func:`sarlab.train.fit`
  calls), else from an initialised
  ``torch.distributed``, else from the ``RANK``/``WORLD_SIZE`` that ``torchrun``
  exports, else ``(0, 1)``.
* Deterministic randomness: the shuffle buffer is seeded by ``(seed, epoch,
  slot)``, crops by ``(seed, epoch, index)``; :meth:`set_epoch` changes both.
* Samples are those of :class:`sarlab.chips.ChipDataset`: ``image`` (C, H, W)
  float32 in the stream's ``units``, normalised by a
  :class:`~sarlab.preprocess.normalize.BandStats` when given, NaN (nodata) set to
  ``nan_fill``; ``index`` a stable global id (``shard * 2**32 + item``, see
  :func:`split_index`); ``chip_id`` a readable id (product/sample and timestamp).

``len()`` is the number of samples one epoch yields over all ranks when the
format gives it cheaply (from shard metadata); otherwise it raises TypeError,
and :func:`~sarlab.train.fit` then needs ``steps``.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from sarlab.conventions import QUANTITIES, UNITS
from sarlab.errors import InputError, UnitsError
from sarlab.preprocess.normalize import BandStats, compute_band_stats
from sarlab.preprocess.radiometry import db_to_linear, linear_to_db

__all__ = ["CROPS", "INDEX_STRIDE", "ShardStream", "find_shards", "open_stream", "split_index"]

PathLike = str | os.PathLike[str]
CROPS = ("random", "center", "resize", "none")
#: ``index = shard_number * INDEX_STRIDE + item``: stable over epochs, ranks and workers.
INDEX_STRIDE = 2**32


def split_index(index: int) -> tuple[int, int]:
    """``(shard number, item number within the shard)`` of a stream sample's ``index``."""
    return divmod(int(index), INDEX_STRIDE)


def find_shards(
    root: PathLike, patterns: Sequence[str], *, exclude: Sequence[str] = ()
) -> list[Path]:
    """Files under ``root`` (or ``root`` itself) matching any glob pattern, sorted by path."""
    root = Path(root).expanduser()
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(root, "does not exist (expected a shard file or a folder of shards)")
    found = {p for pattern in patterns for p in root.glob(f"**/{pattern}") if p.is_file()}
    return sorted(p for p in found if p.name not in exclude)


def _dist_from_env() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is not None and world is not None:
        return int(rank), int(world)
    return 0, 1


class ShardStream(IterableDataset):
    """Base of the streaming readers; subclasses say how one shard yields items.

    A subclass sets ``name``, ``native_bands``, ``quantity`` and ``native_units``
    and implements :meth:`_items` (and :meth:`_count` when a shard's length is
    in its metadata). ``bands`` picks and orders channels; ``units`` converts
    explicitly (dB <-> linear) from the native units. ``size`` with ``crop``
    ("random", "center", "resize" or "none") makes every image ``size x size``;
    ``crops_per_item`` > 1 takes several random crops of each decoded item
    (worth it for large patches: one decode, several samples). Items whose
    nodata fraction (after cropping) exceeds ``max_nodata`` are skipped (``len``
    then counts them still: it is an upper bound). ``shuffle`` permutes the shard
    order and passes samples through a buffer of ``shuffle_buffer`` samples (per
    DataLoader worker: 256 chips of 2 x 256 x 256 float32 hold 128 MB).
    """

    name = "stream"
    native_bands: tuple[str, ...] = ()
    quantity = "sigma0"
    native_units = "dB"

    def __init__(
        self,
        shards: Sequence[PathLike],
        *,
        root: PathLike | None = None,
        bands: Sequence[str] | None = None,
        units: str | None = None,
        size: int | None = None,
        crop: str = "random",
        crops_per_item: int = 1,
        stats: BandStats | Mapping[str, Any] | None = None,
        nan_fill: float | None = 0.0,
        max_nodata: float = 1.0,
        shuffle: bool = True,
        shuffle_buffer: int = 256,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.shards = [Path(s) for s in shards]
        self.root = Path(root) if root is not None else None
        if not self.shards:
            raise InputError(self.root, f"no {self.name} shards found")
        self.bands = [str(b).upper() for b in (bands or self.native_bands)]
        unknown = [b for b in self.bands if b not in self.native_bands]
        if unknown:
            raise ValueError(f"{self.name} has bands {list(self.native_bands)}, not {unknown}")
        self.units = units or self.native_units
        if self.units not in UNITS:
            raise UnitsError(f"unknown units {self.units!r}; expected one of {UNITS}")
        if self.quantity not in QUANTITIES:
            raise UnitsError(f"unknown quantity {self.quantity!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if size is not None and int(size) < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if crops_per_item < 1 or (crops_per_item > 1 and crop != "random"):
            raise ValueError("crops_per_item > 1 needs crop='random'")
        if not 0.0 <= max_nodata <= 1.0:
            raise ValueError(f"max_nodata must be in [0, 1], got {max_nodata}")
        self.size, self.crop, self.crops_per_item = size, crop, int(crops_per_item)
        self.stats = None
        if stats is not None:
            given = BandStats.from_dict(dict(stats)) if isinstance(stats, Mapping) else stats
            if given.units != self.units:
                raise UnitsError(f"statistics are in {given.units} but the stream in {self.units}")
            self.stats = given.subset(self.bands)
        self.nan_fill, self.max_nodata = nan_fill, float(max_nodata)
        self.shuffle, self.shuffle_buffer = bool(shuffle), max(0, int(shuffle_buffer))
        self.seed, self.epoch = int(seed), 0
        self.rank, self.world_size = rank, world_size
        self.transform = transform
        self._band_index = [self.native_bands.index(b) for b in self.bands]
        self._length: int | None = None

    # ----------------------------------------------------------------- subclass API
    def _items(self, shard: Path, shard_number: int) -> Iterator[tuple[int, str, np.ndarray]]:
        """Yield ``(item number, chip id, image)`` of one shard, image (native bands, H, W)
        float in native units with NaN nodata; item numbers are stable and < 2**32."""
        # the base class knows no format: each reader (SSL4EOS1Stream, MajorTOMS1Stream) says how
        raise TypeError(f"{type(self).__name__} does not say how to read a shard (define _items)")

    def _count(self, shard: Path) -> int | None:
        """Items of one shard per epoch, from metadata only; None when not known cheaply."""
        return None

    # ----------------------------------------------------------------- public API
    def set_epoch(self, epoch: int) -> None:
        """Reshuffle shards, buffer and crops for ``epoch`` (call before iterating)."""
        self.epoch = int(epoch)

    def set_distributed(self, rank: int, world_size: int) -> None:
        """Read only rank ``rank`` of ``world_size``'s share of the shards."""
        if not 0 <= int(rank) < int(world_size):
            raise ValueError(f"rank {rank} out of range for world size {world_size}")
        self.rank, self.world_size = int(rank), int(world_size)

    def __len__(self) -> int:
        if self._length is None:
            counts = [self._count(s) for s in self.shards]
            if any(c is None for c in counts):
                raise TypeError(f"{self.name}: the number of samples is not known without reading")
            self._length = sum(counts) * self.crops_per_item  # type: ignore[arg-type]
        return self._length

    def card_fields(self) -> dict[str, Any]:
        """Model-card fields (bands, units, quantity, normalization, data) for ``fit``."""
        return {
            "bands": list(self.bands),
            "units": self.units,
            "quantity": self.quantity,
            "normalization": None if self.stats is None else self.stats.to_dict(),
            "data": {"source": self.name, "root": str(self.root), "n_shards": len(self.shards)},
        }

    def band_stats(self, n_samples: int = 512, **kwargs: Any) -> BandStats:
        """Statistics of the first ``n_samples`` raw samples (this stream's units, crops,
        order; one process) for normalisation; ``kwargs`` go to compute_band_stats."""
        raw = copy.copy(self)
        raw.stats, raw.nan_fill, raw.transform, raw.max_nodata = None, None, None, 1.0
        raw.rank, raw.world_size = 0, 1
        images = (s["image"] for s in itertools.islice(iter(raw), n_samples))
        kwargs.setdefault("progress", False)
        return compute_band_stats(images, self.bands, self.units, **kwargs)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self.shards)} shards under {self.root}, bands "
            f"{self.bands}, {self.quantity} {self.units}, size {self.size} ({self.crop}))"
        )

    # ----------------------------------------------------------------- iteration
    def _dist(self) -> tuple[int, int]:
        if self.rank is not None and self.world_size is not None:
            return self.rank, self.world_size
        return _dist_from_env()

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        return (info.id, info.num_workers) if info is not None else (0, 1)

    def slot(self) -> tuple[int, int]:
        """``(slot, number of slots)`` of the calling process: rank x DataLoader worker."""
        (rank, world), (worker, workers) = self._dist(), self._worker()
        return rank * workers + worker, world * workers

    def shard_order(self) -> list[int]:
        """Shard numbers in this epoch's reading order (the same in every process)."""
        n = len(self.shards)
        if not self.shuffle:
            return list(range(n))
        return np.random.default_rng([self.seed, self.epoch, 0]).permutation(n).tolist()

    def my_shards(self) -> list[int]:
        """Shard numbers the calling process reads in this epoch: every ``world``-th shard of
        the epoch's order for its rank (whatever the number of workers), then every
        ``workers``-th of those for its DataLoader worker (none for spare workers)."""
        (rank, world), (worker, workers) = self._dist(), self._worker()
        if len(self.shards) < world:
            raise InputError(
                self.root,
                f"{len(self.shards)} shards cannot be split over {world} ranks; use fewer ranks "
                "or more shards",
            )
        return self.shard_order()[rank::world][worker::workers]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        slot, _ = self.slot()
        samples = self._samples(self.my_shards())
        if not (self.shuffle and self.shuffle_buffer > 1):
            yield from samples
            return
        rng = np.random.default_rng([self.seed, self.epoch, slot, 1])
        buffer: list[dict[str, Any]] = []
        for sample in samples:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(sample)
                continue
            j = int(rng.integers(len(buffer)))
            buffer[j], sample = sample, buffer[j]
            yield sample
        rng.shuffle(buffer)  # type: ignore[arg-type]
        yield from buffer

    def _samples(self, shard_numbers: Sequence[int]) -> Iterator[dict[str, Any]]:
        for k in shard_numbers:
            shard = self.shards[k]
            for item, chip_id, image in self._items(shard, k):
                image = self._check(image, shard, chip_id)
                for c in range(self.crops_per_item):
                    index = k * INDEX_STRIDE + item * self.crops_per_item + c
                    x = self._convert(self._crop(image, index, shard, chip_id))
                    if self.max_nodata < 1.0 and np.isnan(x).mean() > self.max_nodata:
                        continue
                    sample = {
                        "image": self._finish(x),
                        "index": index,
                        "chip_id": chip_id if self.crops_per_item == 1 else f"{chip_id}#{c}",
                    }
                    yield self.transform(sample) if self.transform is not None else sample

    def _check(self, image: np.ndarray, shard: Path, chip_id: str) -> np.ndarray:
        """The selected bands of a (C, H, W) image, or an InputError naming the shard."""
        if image.ndim != 3 or image.shape[0] != len(self.native_bands):
            raise InputError(
                shard,
                f"{chip_id}: image of shape {image.shape}, expected "
                f"({len(self.native_bands)}, H, W) for bands {list(self.native_bands)}",
            )
        return image if self._band_index == list(range(image.shape[0])) else image[self._band_index]

    def _convert(self, x: np.ndarray) -> np.ndarray:
        """float32, NaN for non-finite values, explicit unit conversion (after cropping: cheap)."""
        x = np.asarray(x, dtype=np.float32)
        x = np.where(np.isfinite(x), x, np.float32(np.nan))
        if self.units != self.native_units:
            x = linear_to_db(x) if self.units == "dB" else db_to_linear(x)
        return x

    def _crop(self, x: np.ndarray, index: int, shard: Path, chip_id: str) -> np.ndarray:
        size, (h, w) = self.size, x.shape[-2:]
        if size is None or self.crop == "resize" or (h, w) == (size, size):
            return x
        if self.crop == "none" or h < size or w < size:
            raise InputError(
                shard, f"{chip_id}: image of {h}x{w} px does not give a {size}x{size} crop"
            )
        if self.crop == "center":
            top, left = (h - size) // 2, (w - size) // 2
        else:
            rng = np.random.default_rng([self.seed, self.epoch, int(index), 2])
            top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        return x[:, top : top + size, left : left + size]

    def _finish(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        if self.crop == "resize" and self.size is not None and t.shape[-2:] != (self.size,) * 2:
            # resample values, then the nodata mask (nearest), so NaN does not smear
            valid = torch.isfinite(t)
            filled = torch.nan_to_num(t, nan=0.0)
            size = (self.size, self.size)
            t = torch.nn.functional.interpolate(
                filled[None], size=size, mode="bilinear", antialias=True, align_corners=False
            )[0]
            mask = torch.nn.functional.interpolate(valid[None].float(), size=size, mode="nearest")
            t = torch.where(mask[0] > 0.5, t, torch.tensor(float("nan")))
        if self.stats is not None:
            t = self.stats.normalize(t)
        if self.nan_fill is not None:
            t = torch.nan_to_num_(t, nan=self.nan_fill)
        return t


def open_stream(layout: str, path: PathLike, **kwargs: Any) -> ShardStream:
    """The stream for a data manifest's ``layout`` ("ssl4eo_s12" or "major_tom") at ``path``."""
    if layout == "ssl4eo_s12":
        from sarlab.io.ssl4eo import SSL4EOS1Stream

        return SSL4EOS1Stream(path, **kwargs)
    if layout == "major_tom":
        from sarlab.io.majortom import MajorTOMS1Stream

        return MajorTOMS1Stream(path, **kwargs)
    raise ValueError(f"no streaming reader for layout {layout!r} (have ssl4eo_s12, major_tom)")
