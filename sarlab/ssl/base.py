"""What every SSL method shares: the trainer-facing interface, band bookkeeping, randomness.

The trainer (:mod:`sarlab.train`) sees a method only through this interface:

* ``method(batch) -> (loss, logs)``: ``batch["image"]`` is ``(B, C, H, W)``
  normalised dB (``BandStats.normalize``), optional ``batch["incidence"]``
  ``(B, H, W)`` degrees, optional ``batch["sample_seed"]`` ``(B,)`` int64;
  ``loss`` is a scalar tensor, ``logs`` plain floats.
* ``config_dict()``: JSON-safe settings for the model card; passing them back
  to :func:`sarlab.ssl.build_method` rebuilds the same method.
* ``visualize(batch)``: inputs, targets and reconstructions for notebooks.
* ``on_step_end(step, total_steps)``: after every optimiser update (BYOL's EMA).

Every method accepts ``bands`` (the channel order), ``band_stats`` (the
:class:`~sarlab.preprocess.BandStats` the images were normalised with, or its
dict) and ``incidence_conditioning``, so a trainer may always pass all three.
Methods that work on linear intensity (speckle is multiplicative there) refuse
to start without ``band_stats``: without them normalised values cannot be
turned back into physical units.

Randomness (masks, augmentations, speckle) comes from ``batch["sample_seed"]``
when the batch has it, so each sample gets the same draw on one process or
many (:mod:`sarlab.train_data`), and from the global torch RNG otherwise.
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from sarlab.models.vit import ViTEncoder, random_masking
from sarlab.preprocess.normalize import BandStats
from sarlab.train_data import SAMPLE_SEED, mix_seed, sample_rand

__all__ = [
    "SSLMethod",
    "full_precision",
    "linear_to_normalized",
    "normalized_to_linear",
    "patchify_map",
    "unpatchify_map",
]

_TINY = 1e-30  # linear intensity floor before a logarithm (-300 dB)


@contextlib.contextmanager
def full_precision(x: Tensor) -> Iterator[None]:
    """Switch autocast off: targets and speckle statistics need float32, not bf16."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        yield


def normalized_to_linear(x: Tensor, stats: BandStats, band_axis: int = 1) -> Tensor:
    """Normalised values -> linear intensity (via dB when the statistics are in dB)."""
    values = stats.denormalize(x.float(), band_axis=band_axis)
    if stats.units == "dB":
        return torch.pow(10.0, values / 10.0)
    return values.clamp_min(_TINY)


def linear_to_normalized(intensity: Tensor, stats: BandStats, band_axis: int = 1) -> Tensor:
    """Linear intensity -> the normalised values a dataset with ``stats`` would give."""
    if stats.units == "dB":
        intensity = 10.0 * torch.log10(intensity.clamp_min(_TINY))
    return stats.normalize(intensity, band_axis=band_axis)


def patchify_map(m: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(B, K, gh*q, gw*q)`` map -> ``(B, gh*gw, q*q*K)`` in ViTEncoder.patchify's layout.

    ``q`` (map pixels per patch side) follows from the map size: ``q = p`` for
    pixel-resolution targets, ``p / cell`` for cell-resolution ones (HOG).
    """
    b, k, h, w = m.shape
    gh, gw = grid
    if h % gh or w % gw or h // gh != w // gw:
        raise ValueError(f"map of shape {tuple(m.shape)} does not tile a {gh}x{gw} grid")
    q = h // gh
    m = m.reshape(b, k, gh, q, gw, q).permute(0, 2, 4, 3, 5, 1)
    return m.reshape(b, gh * gw, q * q * k)


def unpatchify_map(patches: Tensor, grid: tuple[int, int], channels: int) -> Tensor:
    """Inverse of :func:`patchify_map`: ``(B, N, q*q*K)`` -> ``(B, K, gh*q, gw*q)``."""
    b, n, f = patches.shape
    gh, gw = grid
    q2, rem = divmod(f, channels)
    q = round(q2**0.5)
    if rem or q * q != q2 or n != gh * gw:
        raise ValueError(
            f"patches of shape {tuple(patches.shape)} are not {gh}x{gw} square patches "
            f"of {channels} channels"
        )
    m = patches.reshape(b, gh, gw, q, q, channels).permute(0, 5, 1, 3, 2, 4)
    return m.reshape(b, channels, gh * q, gw * q)


def _json_safe(value: Any) -> Any:
    if isinstance(value, BandStats):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_json_safe(v) for v in value]
    return value


class SSLMethod(nn.Module, metaclass=abc.ABCMeta):
    """Base class: holds ``encoder``, ``bands``, ``band_stats``; see the module docstring.

    Subclasses set ``name``, call :meth:`_remember` with their own settings (what
    :meth:`config_dict` reports) and implement :meth:`forward` and
    :meth:`visualize`.
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        encoder: ViTEncoder,
        *,
        bands: Sequence[str] | None = None,
        band_stats: BandStats | Mapping[str, Any] | None = None,
        incidence_conditioning: bool | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, ViTEncoder):
            raise TypeError(f"encoder must be a sarlab ViTEncoder, got {type(encoder).__name__}")
        self.encoder = encoder
        stats = BandStats.from_dict(dict(band_stats)) if isinstance(band_stats, Mapping) else None
        stats = band_stats if isinstance(band_stats, BandStats) else stats
        if band_stats is not None and stats is None:
            raise TypeError(f"band_stats must be a BandStats or its dict, got {type(band_stats)}")
        if bands is None and stats is not None:
            bands = stats.bands
        self.bands: list[str] | None = None if bands is None else [str(b) for b in bands]
        if self.bands is not None:
            if len(set(self.bands)) != len(self.bands):
                raise ValueError(f"bands {self.bands} name a band twice")
            if stats is not None:
                stats = stats.subset(self.bands)
            expected = self._data_channels()
            if len(self.bands) != expected:
                raise ValueError(
                    f"{len(self.bands)} bands {self.bands} given for an encoder of "
                    f"{encoder.in_chans} input channels"
                )
        self.band_stats: BandStats | None = stats
        built = bool(encoder.config.incidence_conditioning)
        if incidence_conditioning is not None and bool(incidence_conditioning) != built:
            raise ValueError(
                f"incidence_conditioning={incidence_conditioning} but the encoder was built "
                f"with incidence_conditioning={built}; build the encoder to match "
                "(vit_encoder(..., incidence_conditioning=...))"
            )
        self.incidence_conditioning = built
        self._config: dict[str, Any] = {}

    # ---- interface ----------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        """JSON-safe settings (the model card's ``ssl.config``); rebuilds the method."""
        out = {
            **self._config,
            "bands": self.bands,
            "band_stats": None if self.band_stats is None else self.band_stats.to_dict(),
            "incidence_conditioning": self.incidence_conditioning,
        }
        return json.loads(json.dumps(_json_safe(out), allow_nan=False))

    @abc.abstractmethod
    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """``(scalar loss, logs)`` for one batch."""

    @abc.abstractmethod
    def visualize(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Inputs, targets and predictions of one batch for notebooks (no gradient)."""

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called by the trainer after each update; nothing to do for most methods."""

    # ---- helpers for subclasses ---------------------------------------------------------
    def _data_channels(self) -> int:
        """Channels of ``batch["image"]``; the encoder's unless a method feeds it a subset."""
        return self.encoder.in_chans

    def _remember(self, **settings: Any) -> None:
        self._config.update(settings)

    def _require_band_stats(self, why: str) -> BandStats:
        if self.band_stats is None:
            raise ValueError(
                f"SSL method {self.name!r} needs band_stats (the BandStats the chips were "
                f"normalised with, e.g. ChipDataset(...).stats): {why}"
            )
        return self.band_stats

    def _image(self, batch: Mapping[str, Tensor]) -> Tensor:
        if "image" not in batch:
            raise KeyError(f"batch has no 'image' (keys: {sorted(batch)})")
        x = batch["image"]
        want = self._data_channels()
        if x.ndim != 4 or x.shape[1] != want:
            raise ValueError(
                f"{self.name}: batch['image'] must be (B, {want}, H, W), got {tuple(x.shape)}"
            )
        return x

    def _incidence(self, batch: Mapping[str, Tensor]) -> Tensor | None:
        """``batch["incidence"]`` when the encoder is conditioned on it, else None."""
        if not self.incidence_conditioning:
            return None
        if "incidence" not in batch:
            raise KeyError(
                "the encoder is incidence-conditioned but the batch has no 'incidence' "
                "(use ChipDataset(..., with_incidence=True))"
            )
        return batch["incidence"]

    @staticmethod
    def _seeds(batch: Mapping[str, Tensor], salt: int) -> Tensor | None:
        """Per-sample seeds for one random stream (``salt`` keeps streams independent)."""
        seeds = batch.get(SAMPLE_SEED)
        if seeds is None:
            return None
        mixed = mix_seed(seeds.detach().cpu().numpy(), salt)
        return torch.as_tensor(mixed, dtype=torch.int64).reshape(-1)

    def _uniform(
        self, batch: Mapping[str, Tensor], salt: int, *shape: int, device: torch.device
    ) -> Tensor:
        """Uniform ``(B, *shape)`` from the sample seeds, or the global RNG without them."""
        seeds = self._seeds(batch, salt)
        if seeds is None:
            return torch.rand((batch["image"].shape[0], *shape), device=device)
        return sample_rand(seeds, *shape, device=device)

    def _masking(
        self, batch: Mapping[str, Tensor], num_patches: int, mask_ratio: float, salt: int = 1
    ) -> tuple[Tensor, Tensor]:
        """``(keep, masked)`` indices as :func:`~sarlab.models.vit.random_masking`."""
        x = batch["image"]
        if SAMPLE_SEED not in batch:
            return random_masking(x.shape[0], num_patches, mask_ratio, device=x.device)
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        n_keep = max(1, round(num_patches * (1.0 - mask_ratio)))
        order = self._uniform(batch, salt, num_patches, device=x.device).argsort(dim=1)
        return order[:, :n_keep].sort(dim=1).values, order[:, n_keep:].sort(dim=1).values

    @staticmethod
    def _floats(**values: Tensor | float) -> dict[str, float]:
        """Log values as floats with one device sync for all of them."""
        keys = list(values)
        device = next((v.device for v in values.values() if isinstance(v, Tensor)), None)
        parts = [torch.as_tensor(values[k], device=device).detach().float() for k in keys]
        return dict(zip(keys, torch.stack(parts).cpu().tolist(), strict=True))
