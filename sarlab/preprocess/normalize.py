"""Per-band normalisation statistics, computed once and stored with data and models.

Models see ``(clip(x, p01, p99) - mean) / std`` per band. For SAR the values
are dB (near-Gaussian per surface type, where linear power is heavy-tailed).
Clipping to the 1st/99th percentiles first keeps bright point targets (ships,
corner reflectors, masts) and noise-floor pixels from producing values tens of
standard deviations out; mean and std are those of the unclipped data, so
clipping changes only the tails. The statistics travel as JSON in data
manifests and model cards (:meth:`BandStats.to_dict`).

:func:`compute_band_stats` streams: mean and std are exact (running counts,
means and squared deviations merged with Chan et al.'s update), percentiles come
from a fixed-size uniform reservoir sample with a fixed seed (exact while the
data fit in the reservoir). NaN and +-inf are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from sarlab.conventions import UNITS
from sarlab.errors import UnitsError
from sarlab.preprocess._checks import image_of

__all__ = ["BandStats", "compute_band_stats"]

_FLOAT_FIELDS = ("mean", "std", "median", "p01", "p99")


def _is_torch(x: object) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


@dataclass
class BandStats:
    """Per-band statistics in a fixed band order; lists are indexed like ``bands``."""

    bands: list[str]
    units: str
    mean: list[float]
    std: list[float]
    median: list[float]
    p01: list[float]
    p99: list[float]
    count: list[int]

    def __post_init__(self) -> None:
        self.bands = [str(b) for b in self.bands]
        if self.units not in UNITS:
            raise UnitsError(f"unknown units {self.units!r}; expected one of {UNITS}")
        for name in (*_FLOAT_FIELDS, "count"):
            values = list(getattr(self, name))
            if len(values) != len(self.bands):
                raise ValueError(f"{name} has {len(values)} values for {len(self.bands)} bands")
            setattr(
                self,
                name,
                [int(v) for v in values] if name == "count" else [float(v) for v in values],
            )
        if not all(np.isfinite(getattr(self, n)).all() for n in _FLOAT_FIELDS):
            raise ValueError("band statistics must be finite")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe dict (str, float, int, lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BandStats:
        """Inverse of :meth:`to_dict`; unknown or missing keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown, missing = set(data) - names, names - set(data)
        if unknown or missing:
            raise ValueError(
                f"bad BandStats dict: unknown {sorted(unknown)}, missing {sorted(missing)}"
            )
        return cls(**{k: list(v) if k not in ("units",) else v for k, v in data.items()})

    def subset(self, bands: Sequence[str]) -> BandStats:
        """Statistics for ``bands`` in that order (a model's band order, say)."""
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise ValueError(f"no statistics for bands {missing}; have {self.bands}")
        idx = [self.bands.index(b) for b in bands]
        pick = {n: [getattr(self, n)[i] for i in idx] for n in (*_FLOAT_FIELDS, "count")}
        return BandStats(bands=list(bands), units=self.units, **pick)

    def _vectors(self, x: Any, band_axis: int, names: Sequence[str]) -> tuple[Any, ...]:
        """Stats as arrays/tensors shaped to broadcast along ``band_axis`` of ``x``."""
        ndim = x.ndim
        axis = band_axis % ndim if ndim else 0
        if ndim == 0 or x.shape[axis] != len(self.bands):
            raise ValueError(
                f"axis {band_axis} of shape {tuple(x.shape)} should hold {len(self.bands)} bands"
            )
        shape = [1] * ndim
        shape[axis] = len(self.bands)
        if _is_torch(x):
            import torch

            return tuple(
                torch.tensor(getattr(self, n), dtype=x.dtype, device=x.device).reshape(shape)
                for n in names
            )
        return tuple(np.asarray(getattr(self, n), dtype=x.dtype).reshape(shape) for n in names)

    @staticmethod
    def _floating(x: Any) -> Any:
        if _is_torch(x):
            return x if x.is_floating_point() else x.float()
        x = np.asarray(x)
        return x.astype(np.result_type(x.dtype, np.float32), copy=False)

    def normalize(self, x: Any, band_axis: int = 0, *, clip: bool = True) -> Any:
        """``(clip(x, p01, p99) - mean) / std`` per band; numpy arrays or torch tensors."""
        x = self._floating(x)
        mean, std, lo, hi = self._vectors(x, band_axis, ("mean", "std", "p01", "p99"))
        if clip:
            if _is_torch(x):
                import torch

                x = torch.minimum(torch.maximum(x, lo), hi)
            else:
                x = np.clip(x, lo, hi)
        return (x - mean) / std

    def denormalize(self, x: Any, band_axis: int = 0) -> Any:
        """``x * std + mean``: back to data units (values clipped by normalize stay clipped)."""
        x = self._floating(x)
        mean, std = self._vectors(x, band_axis, ("mean", "std"))
        return x * std + mean


class _Reservoir:
    """Uniform sample of at most ``size`` values from a stream (Vitter's Algorithm R)."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size, self.rng = size, rng
        self.values = np.empty(0)
        self.seen = 0

    def add(self, v: np.ndarray) -> None:
        room = self.size - self.values.size
        if room > 0:
            self.values = np.concatenate([self.values, v[:room]])
            self.seen += min(room, v.size)
            v = v[room:]
        if v.size == 0:
            return
        t = self.seen + np.arange(v.size)
        slot = np.floor(self.rng.random(v.size) * (t + 1)).astype(np.int64)
        keep = np.flatnonzero(slot < self.size)
        # Where two new values land in one slot the later one wins, as in the serial algorithm.
        slots, first_from_end = np.unique(slot[keep][::-1], return_index=True)
        self.values[slots] = v[keep][::-1][first_from_end]
        self.seen += v.size


def _as_array(chunk: Any, units: str) -> np.ndarray:
    if isinstance(chunk, (xr.Dataset, xr.DataArray)):
        da = image_of(chunk)
        got = da.attrs.get("units")
        if got is not None and got != units:
            raise UnitsError(f"samples are in {got!r} but statistics were requested in {units!r}")
        return np.asarray(da.values)
    if _is_torch(chunk):
        return chunk.detach().cpu().numpy()
    return np.asarray(chunk)


def compute_band_stats(
    samples: Any | Iterable[Any],
    bands: Sequence[str],
    units: str,
    *,
    band_axis: int = 0,
    max_samples: int = 500_000,
    seed: int = 0,
    progress: bool = True,
) -> BandStats:
    """Per-band statistics of an array ``(C, ...)`` or a stream of such arrays.

    ``std`` is the population standard deviation (ddof=0, as numpy's default).
    Percentiles use numpy's linear interpolation on the reservoir sample of at
    most ``max_samples`` values per band.
    """
    bands = [str(b) for b in bands]
    if units not in UNITS:
        raise UnitsError(f"unknown units {units!r}; expected one of {UNITS}")
    if max_samples < 1:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    single = isinstance(samples, (np.ndarray, xr.DataArray, xr.Dataset)) or _is_torch(samples)
    chunks = [samples] if single else samples
    if not single and progress:
        chunks = tqdm(chunks, desc="band statistics", unit="chunk", leave=False)
    rng = np.random.default_rng(seed)
    count = np.zeros(len(bands), dtype=np.int64)
    mean = np.zeros(len(bands))
    m2 = np.zeros(len(bands))
    reservoirs = [_Reservoir(max_samples, rng) for _ in bands]
    for chunk in chunks:
        x = np.moveaxis(_as_array(chunk, units), band_axis, 0)
        if x.shape[0] != len(bands):
            raise ValueError(
                f"chunk of shape {x.shape} has {x.shape[0]} bands, expected {len(bands)}"
            )
        for b, row in enumerate(x.reshape(len(bands), -1)):
            v = row[np.isfinite(row)].astype(np.float64)
            if v.size == 0:
                continue
            n_new, mean_new = v.size, v.mean()
            m2_new = float(np.sum((v - mean_new) ** 2))
            total = count[b] + n_new
            delta = mean_new - mean[b]
            mean[b] += delta * n_new / total
            m2[b] += m2_new + delta * delta * count[b] * n_new / total
            count[b] = total
            reservoirs[b].add(v)
    empty = [bands[b] for b in range(len(bands)) if count[b] == 0]
    if empty:
        raise ValueError(f"no valid (finite) values for bands {empty}")
    quantiles = np.array([np.percentile(r.values, [1, 50, 99]) for r in reservoirs])
    p01, median, p99 = quantiles.T.tolist()
    return BandStats(
        bands=bands,
        units=units,
        mean=mean.tolist(),
        std=np.sqrt(m2 / count).tolist(),
        median=list(median),
        p01=list(p01),
        p99=list(p99),
        count=count.tolist(),
    )
