"""Self-supervised pretraining methods for SAR, each wrapping any sarlab ViT encoder.

    encoder = vit_encoder("tiny", in_chans=2, patch_size=16, img_size=128)
    method = build_method("gradient", encoder, band_stats=dataset.stats)
    loss, logs = method(batch)          # batch from ChipDataset, collated

Methods (``METHODS``; interface in :mod:`sarlab.ssl.base`):

* ``mae``: masked autoencoder on normalised dB; ``target="pixels"|"hog"|"gradient"``.
* ``hog``: MAE with per-channel HOG targets (:mod:`sarlab.ssl.hog`).
* ``gradient``: MAE with multi-scale ratio-of-averages gradient targets on linear
  intensity (:mod:`sarlab.ssl.gradient`); needs ``band_stats``.
* ``speckle_views``: VICReg or BYOL between two re-speckled views of a chip
  (:mod:`sarlab.ssl.speckle_views`); needs ``band_stats``.
* ``crosspol``: predict the cross-pol band from the masked co-pol band
  (:mod:`sarlab.ssl.crosspol`); needs ``bands`` (or ``band_stats``).

Combinations are configuration: an incidence-conditioned encoder gets
``batch["incidence"]`` in every method (``incidence_conditioning=True`` checks
that the encoder was built that way).
"""

from __future__ import annotations

import inspect
from typing import Any

from sarlab.models.vit import ViTEncoder
from sarlab.ssl.base import SSLMethod
from sarlab.ssl.crosspol import CrossPol
from sarlab.ssl.gradient import GradientMAE, GradientTarget, multiscale_roa, roa_gradient
from sarlab.ssl.hog import HOGMAE, HOGTarget, hog_cells
from sarlab.ssl.joint import byol_loss, vicreg_loss
from sarlab.ssl.mae import MAE, PixelTarget, build_target
from sarlab.ssl.speckle_views import SpeckleViews

__all__ = [
    "HOGMAE",
    "MAE",
    "METHODS",
    "CrossPol",
    "GradientMAE",
    "GradientTarget",
    "HOGTarget",
    "PixelTarget",
    "SSLMethod",
    "SpeckleViews",
    "build_method",
    "build_target",
    "byol_loss",
    "hog_cells",
    "multiscale_roa",
    "roa_gradient",
    "vicreg_loss",
]

METHODS: dict[str, type[SSLMethod]] = {
    cls.name: cls for cls in (MAE, HOGMAE, GradientMAE, SpeckleViews, CrossPol)
}


def build_method(name: str, encoder: ViTEncoder, **config: Any) -> SSLMethod:
    """The SSL method ``name`` around ``encoder``; ``config`` as its ``config_dict()`` gives it."""
    if name not in METHODS:
        raise ValueError(f"unknown SSL method {name!r}; expected one of {sorted(METHODS)}")
    cls = METHODS[name]
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(config) - set(params) - {"self", "encoder"})
    if unknown and not takes_any:
        raise TypeError(
            f"unknown settings {unknown} for SSL method {name!r}; it takes "
            f"{sorted(set(params) - {'self', 'encoder'})}"
        )
    return cls(encoder, **config)
