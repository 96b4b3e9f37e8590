"""Joint embedding of two views of a chip that differ in their speckle realisation.

Two passes over the same ground give the same reflectivity and different
speckle; an encoder that maps both to one embedding has learned to look
through speckle. Each view is made from the chip (:mod:`sarlab.ssl.sar_augment`):

1. normalised dB -> linear intensity (needs ``band_stats``);
2. despeckle (``despeckle="boxcar"`` or ``"lee"``, window ``despeckle_size``;
   Lee uses the data's ``input_enl``) -> reflectivity estimate;
3. geometry: flips, quarter turns (square chips) and a crop of area fraction
   in ``crop_scale`` resized back, identical for all bands and the incidence
   angle. By default both views share it (``independent_geometry=False``): the
   only difference between them is then the speckle (and the dropped band), the
   pretext this method is about; geometry still varies from sample to sample;
4. re-speckle with unit-mean Gamma(``enl``, 1/``enl``) noise, independently
   per view (``enl`` defaults to 4.4, Sentinel-1 IW GRDH's nominal ENL);
5. back to dB and normalised with the same statistics (so clipping to the
   1st/99th percentiles matches what the dataset does);
6. polarisation dropout: with probability ``pol_dropout`` per view and
   sample, one band (uniformly chosen) is set to 0, its mean; nothing for
   single-band chips.

The views go through the encoder (pooled tokens, ``pool``) and a projector;
the objective is VICReg (default, coefficients 25/25/1) or BYOL with an EMA
target network updated in :meth:`on_step_end`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from sarlab.models.vit import ViTEncoder
from sarlab.preprocess.normalize import BandStats
from sarlab.ssl.base import SSLMethod, full_precision, linear_to_normalized, normalized_to_linear
from sarlab.ssl.joint import byol_loss, ema_momentum, ema_update, gather_batch, mlp, vicreg_loss
from sarlab.ssl.sar_augment import (
    GEOMETRY_DRAWS,
    apply_geometry,
    gamma_speckle,
    geometry_theta,
    polarisation_dropout,
)
from sarlab.ssl.sar_augment import despeckle as despeckle_image

__all__ = ["SpeckleViews"]

_SALT_GEOMETRY, _SALT_DROPOUT, _SALT_SPECKLE = 11, 12, 13


class SpeckleViews(SSLMethod):
    """VICReg/BYOL between re-speckled views (see the module docstring)."""

    name = "speckle_views"

    def __init__(
        self,
        encoder: ViTEncoder,
        *,
        objective: str = "vicreg",
        enl: float = 4.4,
        despeckle: str = "boxcar",
        despeckle_size: int = 5,
        input_enl: float = 4.4,
        flips: bool = True,
        rotations: bool = True,
        crop_scale: Sequence[float] = (0.5, 1.0),
        independent_geometry: bool = False,
        pol_dropout: float = 0.1,
        pool: str = "mean",
        projector_hidden: int = 512,
        projector_dim: int = 512,
        projector_layers: int = 3,
        sim_coeff: float = 25.0,
        std_coeff: float = 25.0,
        cov_coeff: float = 1.0,
        byol_momentum: float = 0.99,
        predictor_hidden: int = 512,
        bands: Sequence[str] | None = None,
        band_stats: BandStats | Mapping[str, Any] | None = None,
        incidence_conditioning: bool | None = None,
    ) -> None:
        super().__init__(
            encoder,
            bands=bands,
            band_stats=band_stats,
            incidence_conditioning=incidence_conditioning,
        )
        self._require_band_stats("views are despeckled and re-speckled in linear intensity")
        if objective not in ("vicreg", "byol"):
            raise ValueError(f"objective must be 'vicreg' or 'byol', got {objective!r}")
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        if not enl > 0 or not input_enl > 0:
            raise ValueError(f"enl and input_enl must be positive, got {enl}, {input_enl}")
        if not 0.0 <= pol_dropout <= 1.0:
            raise ValueError(f"pol_dropout must be in [0, 1], got {pol_dropout}")
        if not 0.0 <= byol_momentum < 1.0:
            raise ValueError(f"byol_momentum must be in [0, 1), got {byol_momentum}")
        crop = (float(crop_scale[0]), float(crop_scale[1]))
        geometry_theta(torch.zeros(1, GEOMETRY_DRAWS), crop_scale=crop)  # validates crop_scale
        despeckle_checked = str(despeckle)
        if despeckle_checked not in ("boxcar", "lee", "none"):
            raise ValueError(f"despeckle must be boxcar, lee or none, got {despeckle!r}")
        self.objective, self.pool = objective, pool
        self.enl, self.input_enl = float(enl), float(input_enl)
        self.despeckle, self.despeckle_size = despeckle_checked, int(despeckle_size)
        self.flips, self.rotations, self.crop_scale = bool(flips), bool(rotations), crop
        self.independent_geometry = bool(independent_geometry)
        self.pol_dropout = float(pol_dropout)
        self.coeffs = {"sim_coeff": sim_coeff, "std_coeff": std_coeff, "cov_coeff": cov_coeff}
        self.byol_momentum = float(byol_momentum)
        self.momentum = self.byol_momentum
        d = encoder.embed_dim
        self.projector = mlp(d, projector_hidden, projector_dim, projector_layers)
        self.predictor: nn.Module | None = None
        self.target_encoder: ViTEncoder | None = None
        self.target_projector: nn.Module | None = None
        if objective == "byol":
            self.predictor = mlp(projector_dim, predictor_hidden, projector_dim, 2)
            self.target_encoder = copy.deepcopy(encoder).requires_grad_(False)
            self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self._remember(
            objective=objective, enl=self.enl, despeckle=self.despeckle,
            despeckle_size=self.despeckle_size, input_enl=self.input_enl, flips=self.flips,
            rotations=self.rotations, crop_scale=list(crop),
            independent_geometry=self.independent_geometry, pol_dropout=self.pol_dropout,
            pool=pool, projector_hidden=projector_hidden, projector_dim=projector_dim,
            projector_layers=projector_layers, **self.coeffs, byol_momentum=self.byol_momentum,
            predictor_hidden=predictor_hidden,
        )  # fmt: skip

    # ---- views --------------------------------------------------------------------------
    def make_views(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor | None]:
        """Two views of ``batch["image"]`` and what they were made from.

        Returns ``view1``/``view2`` (normalised, what the encoder sees),
        ``incidence1``/``incidence2`` (or None), ``reflectivity1``/``reflectivity2``
        (despeckled linear intensity after geometry) and ``intensity1``/``intensity2``
        (re-speckled linear intensity before normalisation).
        """
        x = self._image(batch)
        stats = self.band_stats
        b, _, h, w = x.shape
        out: dict[str, Tensor | None] = {}
        with torch.no_grad(), full_precision(x):
            linear = normalized_to_linear(x, stats)
            reflectivity = despeckle_image(
                linear, self.despeckle, self.despeckle_size, self.input_enl
            )
            incidence = batch.get("incidence")
            if incidence is not None:
                incidence = incidence.float().reshape(b, 1, h, w)
            u_geo = self._uniform(batch, _SALT_GEOMETRY, 2, GEOMETRY_DRAWS, device=x.device)
            if not self.independent_geometry:
                u_geo[:, 1] = u_geo[:, 0]
            u_drop = self._uniform(batch, _SALT_DROPOUT, 2, 2, device=x.device)
            for v in (0, 1):
                theta = geometry_theta(
                    u_geo[:, v], flips=self.flips, rotations=self.rotations and h == w,
                    crop_scale=self.crop_scale,
                )  # fmt: skip
                r_v = apply_geometry(reflectivity, theta)
                seeds = self._seeds(batch, _SALT_SPECKLE + v)
                i_v = r_v * gamma_speckle(tuple(r_v.shape), self.enl, seeds=seeds, device=x.device)
                view = linear_to_normalized(i_v, stats)
                out[f"view{v + 1}"] = polarisation_dropout(view, u_drop[:, v], self.pol_dropout)
                out[f"reflectivity{v + 1}"] = r_v
                out[f"intensity{v + 1}"] = i_v
                out[f"incidence{v + 1}"] = (
                    None if incidence is None else apply_geometry(incidence, theta)[:, 0]
                )
        return out

    # ---- objective ----------------------------------------------------------------------
    def _embed(
        self, x: Tensor, incidence: Tensor | None, encoder: ViTEncoder, projector: nn.Module
    ) -> tuple[Tensor, Tensor]:
        tokens = encoder(x, incidence if self.incidence_conditioning else None)
        pooled = encoder.pool(tokens, self.pool)
        return pooled, projector(pooled)

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        if self.incidence_conditioning:
            self._incidence(batch)  # a clear error when the batch lacks it
        views = self.make_views(batch)
        h1, z1 = self._embed(views["view1"], views["incidence1"], self.encoder, self.projector)
        h2, z2 = self._embed(views["view2"], views["incidence2"], self.encoder, self.projector)
        rep_std = torch.cat([h1, h2]).float().std(dim=0).mean().detach()
        if self.objective == "vicreg":
            loss, parts = vicreg_loss(gather_batch(z1), gather_batch(z2), **self.coeffs)
            return loss, self._floats(**{k: v.detach() for k, v in parts.items()}, rep_std=rep_std)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            _, t1 = self._embed(
                views["view1"], views["incidence1"], self.target_encoder, self.target_projector
            )
            _, t2 = self._embed(
                views["view2"], views["incidence2"], self.target_encoder, self.target_projector
            )
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return loss, self._floats(rep_std=rep_std, momentum=self.momentum)

    def on_step_end(self, step: int, total_steps: int) -> None:
        """BYOL: move the target network towards the online one (cosine momentum)."""
        if self.objective != "byol":
            return
        self.momentum = ema_momentum(step, total_steps, self.byol_momentum)
        ema_update(self.target_encoder, self.encoder, self.momentum)
        ema_update(self.target_projector, self.projector, self.momentum)

    def visualize(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """image, despeckled (normalised), view1, view2 and the views' incidence if any."""
        views = self.make_views(batch)
        x = batch["image"]
        with torch.no_grad(), full_precision(x):
            linear = normalized_to_linear(x, self.band_stats)
            smooth = despeckle_image(linear, self.despeckle, self.despeckle_size, self.input_enl)
            out = {
                "image": x.detach(),
                "despeckled": linear_to_normalized(smooth, self.band_stats),
                "view1": views["view1"],
                "view2": views["view2"],
            }
        for key in ("incidence1", "incidence2"):
            if views[key] is not None:
                out[key] = views[key]
        return out
