"""Masked autoencoding (He et al. 2022) on normalised dB, with pluggable targets.

The encoder sees a random ``1 - mask_ratio`` of the patches; a light decoder
(:class:`~sarlab.ssl.decoder.MaskedDecoder`) predicts a target for every patch
and the loss is the mean squared error over the *masked* patches only.

The target is configuration (``target=``):

* ``"pixels"`` (default, the baseline): the normalised dB values themselves.
  dB makes multiplicative speckle additive and the chips are already
  normalised per band, so plain pixels are a sensible target;
  ``norm_pix_loss=True`` additionally standardises each target patch (MAE's
  option; it discards the patch's mean backscatter level, which in SAR carries
  the surface type, so it is off by default).
* ``"hog"``: histograms of oriented gradients per cell (:mod:`sarlab.ssl.hog`),
  the FG-MAE idea: edges and texture instead of speckle-dominated pixels.
* ``"gradient"``: multi-scale ratio-of-averages edge strength on linear
  intensity (:mod:`sarlab.ssl.gradient`), the SAR-JEPA idea; needs ``band_stats``.

Targets are computed without gradient and in float32 (autocast off), as
``(B, K, gh*q, gw*q)`` maps (q map pixels per patch side) cut into patches in
the encoder's patch layout.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from sarlab.models.vit import ViTEncoder
from sarlab.preprocess.normalize import BandStats
from sarlab.ssl.base import SSLMethod, full_precision, patchify_map, unpatchify_map
from sarlab.ssl.decoder import MaskedDecoder

__all__ = ["MAE", "PixelTarget", "Target", "build_target", "masked_mse"]

_NORM_EPS = 1e-6  # MAE's epsilon for per-patch target standardisation


class Target(abc.ABC):
    """A reconstruction target: ``(B, C, H, W)`` normalised image -> ``(B, K, h, w)`` map."""

    name: ClassVar[str] = ""
    needs_band_stats: ClassVar[bool] = False

    @abc.abstractmethod
    def channels(self, in_chans: int) -> int:
        """K, the channels of the target map for a C-channel image."""

    def cells_per_patch(self, patch_size: int) -> int:
        """q, the target map's pixels per patch side."""
        return patch_size

    def config(self) -> dict[str, Any]:
        """The target's settings, merged into the method's config."""
        return {}

    @abc.abstractmethod
    def __call__(self, image: Tensor, stats: BandStats | None) -> Tensor:
        """The target map of a normalised image batch (called without gradient, in float32)."""


class PixelTarget(Target):
    """The normalised dB image itself."""

    name = "pixels"

    def channels(self, in_chans: int) -> int:
        return in_chans

    def __call__(self, image: Tensor, stats: BandStats | None) -> Tensor:
        return image


def build_target(name: str, **options: Any) -> Target:
    """``"pixels"``, ``"hog"`` or ``"gradient"`` with that target's options."""
    from sarlab.ssl.gradient import GradientTarget
    from sarlab.ssl.hog import HOGTarget

    targets: dict[str, type[Target]] = {t.name: t for t in (PixelTarget, HOGTarget, GradientTarget)}
    if name not in targets:
        raise ValueError(f"unknown MAE target {name!r}; expected one of {sorted(targets)}")
    try:
        return targets[name](**options)
    except TypeError as err:
        raise TypeError(f"bad options {sorted(options)} for target {name!r}: {err}") from err


def masked_mse(pred: Tensor, target: Tensor, masked: Tensor) -> Tensor:
    """Mean squared error over the patches listed in ``masked`` (B, M) only."""
    index = masked.long().unsqueeze(-1).expand(-1, -1, pred.shape[-1])
    diff = torch.gather(pred.float(), 1, index) - torch.gather(target.float(), 1, index)
    return diff.pow(2).mean()


def patch_target_stats(target: Tensor, norm_pix_loss: bool) -> tuple[Tensor, Tensor]:
    """Per-patch (mean, scale) that standardise ``target`` (B, N, K); (0, 1) without norm_pix."""
    if not norm_pix_loss:
        mean = torch.zeros_like(target[..., :1])
        return mean, torch.ones_like(mean)
    mean = target.mean(dim=-1, keepdim=True)
    return mean, (target.var(dim=-1, keepdim=True) + _NORM_EPS).sqrt()


class MAE(SSLMethod):
    """Masked autoencoder around any :class:`~sarlab.models.ViTEncoder` (see the module doc)."""

    name = "mae"
    default_target: ClassVar[str] = "pixels"

    def __init__(
        self,
        encoder: ViTEncoder,
        *,
        target: str | None = None,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = False,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        bands: Sequence[str] | None = None,
        band_stats: BandStats | Mapping[str, Any] | None = None,
        incidence_conditioning: bool | None = None,
        **target_options: Any,
    ) -> None:
        super().__init__(
            encoder,
            bands=bands,
            band_stats=band_stats,
            incidence_conditioning=incidence_conditioning,
        )
        target = self.default_target if target is None else str(target)
        if type(self) is not MAE and target != self.default_target:
            raise ValueError(
                f"method {self.name!r} predicts {self.default_target!r}, not {target!r}"
            )
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.target = build_target(target, **target_options)
        if self.target.needs_band_stats:
            self._require_band_stats(f"{target!r} targets are computed on linear intensity")
        self.mask_ratio = float(mask_ratio)
        self.norm_pix_loss = bool(norm_pix_loss)
        self.target_channels = self.target.channels(encoder.in_chans)
        q = self.target.cells_per_patch(encoder.patch_size)
        self.decoder = MaskedDecoder(
            encoder.embed_dim,
            q * q * self.target_channels,
            dim=decoder_dim,
            depth=decoder_depth,
            num_heads=decoder_heads,
        )
        self._remember(
            target=target,
            mask_ratio=self.mask_ratio,
            norm_pix_loss=self.norm_pix_loss,
            decoder_dim=decoder_dim,
            decoder_depth=decoder_depth,
            decoder_heads=decoder_heads,
            **self.target.config(),
        )

    def target_map(self, image: Tensor) -> Tensor:
        """The full-image target map ``(B, K, h, w)`` (float32, no gradient)."""
        with torch.no_grad(), full_precision(image):
            return self.target(image.float(), self.band_stats)

    def _run(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        x = self._image(batch)
        grid = self.encoder.grid_size(tuple(x.shape[-2:]))
        keep, masked = self._masking(batch, grid[0] * grid[1], self.mask_ratio)
        tokens = self.encoder.forward_features(x, self._incidence(batch), keep)
        pred = self.decoder(tokens, keep, grid)
        target_map = self.target_map(x)
        target = patchify_map(target_map, grid)
        mean, scale = patch_target_stats(target, self.norm_pix_loss)
        return {
            "x": x, "grid": grid, "keep": keep, "masked": masked, "pred": pred,
            "target_map": target_map, "target": target, "mean": mean, "scale": scale,
        }  # fmt: skip

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        r = self._run(batch)
        target = (r["target"] - r["mean"]) / r["scale"]
        loss = masked_mse(r["pred"], target, r["masked"])
        n = r["keep"].shape[1] + r["masked"].shape[1]
        return loss, self._floats(
            mask_ratio=r["masked"].shape[1] / n, target_std=target.std().detach()
        )

    def visualize(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """image, masked_input, mask (1 = hidden), target, prediction, reconstruction.

        ``target``/``prediction`` are target maps ``(B, K, h, w)``; ``reconstruction``
        is the target with the hidden patches replaced by the prediction (MAE's figure).
        """
        with torch.no_grad():
            r = self._run(batch)
            x, grid, masked = r["x"], r["grid"], r["masked"]
            pred = r["pred"].float() * r["scale"] + r["mean"]
            hidden = torch.zeros(masked.shape[0], grid[0] * grid[1], device=x.device)
            hidden.scatter_(1, masked, 1.0)
            recon = torch.where(hidden.bool().unsqueeze(-1), pred, r["target"])
            k = self.target_channels
            p2 = self.encoder.patch_size**2
            mask = unpatchify_map(hidden.unsqueeze(-1).expand(-1, -1, p2), grid, 1)
            return {
                "image": x.detach(),
                "masked_input": x.detach() * (1.0 - mask),
                "mask": mask,
                "target": r["target_map"],
                "prediction": unpatchify_map(pred, grid, k),
                "reconstruction": unpatchify_map(recon, grid, k),
            }
