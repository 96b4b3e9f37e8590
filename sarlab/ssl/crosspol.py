"""Cross-polarisation prediction: infer the cross-pol band from the co-pol one under masking.

Co-pol (HH, VV) backscatter is dominated by surface scattering, cross-pol
(HV, VH) by volume and multiple scattering: vegetation, deformed or
multi-year ice, ice ridges. Predicting one from the other forces the encoder to
recognise what kind of surface it looks at, which is what the labels of
downstream SAR tasks are about.

* Input: the co-pol band only, with ``mask_ratio`` of its patches hidden
  (MAE-style: they never enter the encoder). An encoder built for all the
  chip's bands gets every other band set to 0 (its mean in normalised units),
  so the same encoder can later be fine-tuned on all bands; an encoder built
  with one input channel gets the co-pol band alone.
* Target: the cross-pol band in normalised dB, per patch (optionally
  standardised per patch, ``norm_pix_loss``).
* Loss (``loss_on``): ``"all"`` patches (default; visible patches are a
  pixel-aligned translation task, hidden ones add inpainting) or ``"masked"``
  patches only (MAE's choice).

The band order comes from ``bands`` (or ``band_stats``); the co-pol band is
``co_pol`` or the first co-pol band whose cross-pol partner (HH-HV, VV-VH) is
present (``cross_pol``, if given, must be that partner). Chips with fewer
than two bands are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from sarlab.models.vit import ViTEncoder
from sarlab.preprocess.normalize import BandStats
from sarlab.ssl.base import SSLMethod, patchify_map, unpatchify_map
from sarlab.ssl.decoder import MaskedDecoder
from sarlab.ssl.mae import masked_mse, patch_target_stats

__all__ = ["CROSS_POL", "CrossPol"]

CROSS_POL = {"HH": "HV", "VV": "VH"}


class CrossPol(SSLMethod):
    """Masked co-pol -> cross-pol prediction (see the module docstring)."""

    name = "crosspol"

    def __init__(
        self,
        encoder: ViTEncoder,
        *,
        bands: Sequence[str] | None = None,
        band_stats: BandStats | Mapping[str, Any] | None = None,
        co_pol: str | None = None,
        cross_pol: str | None = None,
        mask_ratio: float = 0.5,
        loss_on: str = "all",
        norm_pix_loss: bool = False,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        incidence_conditioning: bool | None = None,
    ) -> None:
        super().__init__(
            encoder,
            bands=bands,
            band_stats=band_stats,
            incidence_conditioning=incidence_conditioning,
        )
        if self.bands is None:
            raise ValueError(
                "crosspol needs the band order: pass bands=[...] (e.g. ['HH', 'HV']) or band_stats"
            )
        if len(self.bands) < 2:
            raise ValueError(f"crosspol needs a co-pol and a cross-pol band, got {self.bands}")
        upper = [b.upper() for b in self.bands]
        if co_pol is None:
            co_pol = next((b for b in upper if CROSS_POL.get(b) in upper), None)
            if co_pol is None:
                raise ValueError(f"bands {self.bands} hold no co-/cross-pol pair (HH+HV or VV+VH)")
        co_pol = str(co_pol).upper()
        if co_pol not in CROSS_POL or co_pol not in upper or CROSS_POL[co_pol] not in upper:
            raise ValueError(
                f"co_pol {co_pol!r} and its cross-pol partner must both be in bands {self.bands}"
            )
        if cross_pol is not None and str(cross_pol).upper() != CROSS_POL[co_pol]:
            raise ValueError(
                f"the cross-pol partner of {co_pol} is {CROSS_POL[co_pol]}, not {cross_pol!r}"
            )
        if encoder.in_chans not in (1, len(self.bands)):
            raise ValueError(
                f"the encoder takes {encoder.in_chans} channels; crosspol feeds it either "
                f"all {len(self.bands)} bands (others zeroed) or the co-pol band alone (1)"
            )
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if loss_on not in ("all", "masked"):
            raise ValueError(f"loss_on must be 'all' or 'masked', got {loss_on!r}")
        if loss_on == "masked" and mask_ratio == 0.0:
            raise ValueError("loss_on='masked' needs mask_ratio > 0")
        self.co_index = upper.index(co_pol)
        self.cross_index = upper.index(CROSS_POL[co_pol])
        self.mask_ratio, self.loss_on = float(mask_ratio), loss_on
        self.norm_pix_loss = bool(norm_pix_loss)
        self.decoder = MaskedDecoder(
            encoder.embed_dim,
            encoder.patch_size**2,
            dim=decoder_dim,
            depth=decoder_depth,
            num_heads=decoder_heads,
        )
        self._remember(
            co_pol=self.bands[self.co_index], cross_pol=self.bands[self.cross_index],
            mask_ratio=self.mask_ratio, loss_on=loss_on, norm_pix_loss=self.norm_pix_loss,
            decoder_dim=decoder_dim, decoder_depth=decoder_depth, decoder_heads=decoder_heads,
        )  # fmt: skip

    def _data_channels(self) -> int:
        return len(self.bands) if self.bands is not None else self.encoder.in_chans

    def encoder_input(self, x: Tensor) -> Tensor:
        """The co-pol band alone, or all bands with every other band set to 0."""
        co = x[:, self.co_index : self.co_index + 1]
        if self.encoder.in_chans == 1:
            return co
        keep = torch.zeros(1, x.shape[1], 1, 1, dtype=x.dtype, device=x.device)
        keep[:, self.co_index] = 1.0
        return x * keep

    def _run(self, batch: Mapping[str, Tensor]) -> dict[str, Any]:
        x = self._image(batch)
        grid = self.encoder.grid_size(tuple(x.shape[-2:]))
        keep, masked = self._masking(batch, grid[0] * grid[1], self.mask_ratio)
        inp = self.encoder_input(x)
        tokens = self.encoder.forward_features(inp, self._incidence(batch), keep)
        pred = self.decoder(tokens, keep, grid)
        target = patchify_map(x[:, self.cross_index : self.cross_index + 1].float(), grid)
        mean, scale = patch_target_stats(target, self.norm_pix_loss)
        return {
            "x": x, "inp": inp, "grid": grid, "keep": keep, "masked": masked,
            "pred": pred, "target": target, "mean": mean, "scale": scale,
        }  # fmt: skip

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        r = self._run(batch)
        target = (r["target"] - r["mean"]) / r["scale"]
        if self.loss_on == "masked":
            loss = masked_mse(r["pred"], target, r["masked"])
        else:
            loss = (r["pred"].float() - target).pow(2).mean()
        n = r["keep"].shape[1] + r["masked"].shape[1]
        return loss, self._floats(
            mask_ratio=r["masked"].shape[1] / n, target_std=target.std().detach()
        )

    def visualize(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """co_pol (masked input, hidden patches 0), mask (1 = hidden), target, prediction."""
        with torch.no_grad():
            r = self._run(batch)
            grid, masked, x = r["grid"], r["masked"], r["x"]
            hidden = torch.zeros(masked.shape[0], grid[0] * grid[1], device=x.device)
            hidden.scatter_(1, masked, 1.0)
            p2 = self.encoder.patch_size**2
            mask = unpatchify_map(hidden.unsqueeze(-1).expand(-1, -1, p2), grid, 1)
            pred = r["pred"].float() * r["scale"] + r["mean"]
            co = x[:, self.co_index : self.co_index + 1]
            return {
                "co_pol": co.detach() * (1.0 - mask),
                "mask": mask,
                "target": unpatchify_map(r["target"], grid, 1),
                "prediction": unpatchify_map(pred, grid, 1),
            }
