"""The model card of a pretraining run, assembled before training so a bad card fails early.

A card that :func:`sarlab.models.save_checkpoint` would refuse (no bands, units
mixed up, a method config that is not JSON) should stop the run at step 0, not
after hours of training at its first checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset, Subset

from sarlab.chips import ChipDataset, ChipStore
from sarlab.errors import InputError
from sarlab.models.checkpoint import CARD_VERSION, WEIGHTS_FILE, validate_model_card
from sarlab.models.vit import ViTEncoder
from sarlab.train_data import SeededSamples

__all__ = ["base_card", "check_card", "method_name"]


def method_name(method: nn.Module) -> str:
    """The method's ``name`` attribute, else its class name."""
    return str(getattr(method, "name", None) or type(method).__name__)


def base_card(
    method: nn.Module, dataset: Dataset, card_extra: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Card fields known before training: bands/units/stats of a chip store, SSL method, data.

    ``card_extra`` adds or replaces fields; its ``data`` is merged into the
    card's. The result has been through JSON (tuples become lists).
    """
    card: dict[str, Any] = {
        "ssl": {"method": method_name(method), "config": method.config_dict()},
        "data": {"manifest": None, "checksum": None},
    }
    inner = dataset
    while isinstance(inner, Subset | SeededSamples):
        inner = inner.dataset
    if isinstance(inner, ChipDataset):
        attrs = ChipStore(inner.path).attrs
        card.update(
            bands=list(inner.bands),
            units=attrs["units"],
            quantity=attrs["quantity"],
            normalization=None if inner.stats is None else inner.stats.to_dict(),
        )
        card["data"].update(store=str(inner.path), n_chips=len(dataset))
    extra = dict(card_extra or {})
    card["data"].update(extra.pop("data", {}))
    card.update(extra)
    try:
        return json.loads(json.dumps(card, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"model card fields (method.config_dict(), card_extra) are not plain JSON: {err}"
        ) from err


def check_card(card: Mapping[str, Any], encoder: ViTEncoder, where: Path) -> None:
    """Validate ``card`` as it will be saved (computed fields stubbed); errors name ``where``."""
    probe = {
        **card,
        "architecture": encoder.config.to_dict(),
        "card_version": CARD_VERSION,
        "git": {"sha": None, "dirty": None},
        "created": "",
        "metrics": {},
        "parameter_count": 1,
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": "0" * 64,
        "extra_tensors": None,
    }
    try:
        validate_model_card(probe, where)
    except InputError as err:
        raise InputError(
            where,
            f"{err.problem} (datasets other than ChipDataset need card_extra with "
            "bands, units, quantity and normalization)",
        ) from err
