"""Segmentation models over a sarlab ViT encoder: fine-tuning regimes and layer-wise LR decay.

Regimes (:func:`set_regime`): ``frozen`` (encoder fixed, in eval mode: linear probe
or decoder only), ``partial`` (the last ``n`` blocks and the final norm train) and
``full``. :func:`param_groups` gives AdamW groups with layer-wise learning-rate
decay (BEiT/MAE fine-tuning: the block at depth ``i`` of ``L`` gets
``lr * decay ** (L + 1 - i)``, patch/position embeddings ``lr * decay ** (L + 1)``,
the decoder ``lr``), and no weight decay on biases, norms and embeddings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from sarlab.errors import InputError, UnitsError
from sarlab.finetune.heads import LinearHead, ProgressiveDecoder, UNet
from sarlab.models import ViTEncoder, load_encoder, vit_encoder

__all__ = [
    "REGIMES",
    "TASK_CLASSES",
    "SegmentationModel",
    "build_model",
    "encoder_for_store",
    "param_groups",
    "set_regime",
    "tasks_for_store",
]

REGIMES = ("frozen", "partial", "full")
#: Classes per label variable: AutoICE charts (SIC 0..10 in 10 % steps) and water/not water.
TASK_CLASSES: dict[str, int] = {"SIC": 11, "SOD": 6, "FLOE": 7, "water": 2}


class SegmentationModel(nn.Module):
    """ViT encoder + decoder (``progressive`` or ``linear``) -> ``{task: logits (B,K,H,W)}``.

    ``layers`` are the encoder blocks whose outputs feed the decoder (negatives count
    from the end; the default uses four evenly spaced levels, as UPerNet-on-ViT does).
    """

    def __init__(
        self,
        encoder: ViTEncoder,
        tasks: Mapping[str, int],
        decoder: str = "progressive",
        layers: Sequence[int] | None = None,
        channels: int = 128,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.tasks = dict(tasks)
        depth = len(encoder.blocks)
        if layers is None:
            step = max(depth // 4, 1)
            layers = sorted({depth - 1 - k * step for k in range(4)} & set(range(depth)))
        self.layers = [int(i) for i in layers]
        n = len(self.layers)
        if decoder == "progressive":
            self.decoder = ProgressiveDecoder(
                encoder.embed_dim, tasks, encoder.patch_size, n_levels=n, channels=channels
            )
        elif decoder == "linear":
            self.decoder = LinearHead(encoder.embed_dim, tasks, n_levels=n)
        else:
            raise ValueError(f"unknown decoder {decoder!r}; expected 'progressive' or 'linear'")
        self.decoder_name = decoder
        self.regime = "full"
        self.in_chans = encoder.in_chans

    def forward(self, x: Tensor, incidence: Tensor | None = None) -> dict[str, Tensor]:
        if self.encoder.incidence_embed is None:
            incidence = None
        features = self.encoder.dense_features(x, incidence, layers=self.layers)
        return self.decoder(features, tuple(x.shape[-2:]))

    def train(self, mode: bool = True) -> SegmentationModel:
        super().train(mode)
        if self.regime == "frozen":
            self.encoder.eval()  # a frozen encoder keeps inference behaviour (no drop path)
        return self


def set_regime(model: nn.Module, regime: str, last_n: int = 2) -> nn.Module:
    """Choose which encoder weights train: frozen, partial (last ``last_n`` blocks) or full.

    ``model`` has an ``encoder`` and a ``regime`` attribute its ``train`` reads (a
    :class:`SegmentationModel` or a multi-label classifier); it is returned.
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; expected one of {REGIMES}")
    enc = model.encoder
    depth = len(enc.blocks)
    if regime == "partial" and not 1 <= last_n <= depth:
        raise ValueError(f"last_n must be in 1..{depth}, got {last_n}")
    for name, p in enc.named_parameters():
        if regime == "full":
            p.requires_grad_(True)
        elif regime == "frozen":
            p.requires_grad_(False)
        else:
            block = _block_index(name)
            p.requires_grad_(
                name.startswith("norm.") or (block is not None and block >= depth - last_n)
            )
    model.regime = regime
    model.train(model.training)
    return model


def _block_index(name: str) -> int | None:
    if name.startswith("blocks."):
        return int(name.split(".")[1])
    return None


def _layer_id(name: str, depth: int) -> int:
    """0 for embeddings, i + 1 for block i, depth + 1 for the final norm and the decoder."""
    if not name.startswith("encoder."):
        return depth + 1
    name = name[len("encoder.") :]
    block = _block_index(name)
    if block is not None:
        return block + 1
    if name.startswith("norm."):
        return depth + 1
    return 0  # cls_token, pos_embed, patch_embed, incidence_embed


def param_groups(
    model: nn.Module, lr: float, weight_decay: float = 0.05, layer_decay: float = 0.75
) -> list[dict[str, Any]]:
    """AdamW parameter groups with layer-wise LR decay (trainable parameters only).

    Works for any model whose ``encoder`` is a ViT (decay over encoder depth: a
    :class:`SegmentationModel`, a multi-label classifier) and any other model (one
    depth: every group at ``lr``). Each group carries ``lr_scale`` so a
    schedule can rescale it.
    """
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    encoder = getattr(model, "encoder", None)
    depth = len(encoder.blocks) if isinstance(encoder, ViTEncoder) else 0
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(("pos_embed", "cls_token"))
        lid = _layer_id(name, depth) if depth else 0
        scale = layer_decay ** (depth + 1 - lid) if depth else 1.0
        key = (lid, no_decay)
        if key not in groups:
            groups[key] = {
                "params": [], "names": [], "lr": lr * scale, "lr_scale": scale,
                "weight_decay": 0.0 if no_decay else weight_decay, "layer_id": lid,
            }  # fmt: skip
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def tasks_for_store(
    label_vars: Sequence[str], tasks: Sequence[str] | None = None
) -> dict[str, int]:
    """``{task: n_classes}`` for the label variables a store holds (or the chosen subset)."""
    chosen = list(label_vars) if tasks is None else list(tasks)
    unknown = [t for t in chosen if t not in TASK_CLASSES]
    absent = [t for t in chosen if t not in label_vars]
    if unknown or absent:
        raise ValueError(
            f"tasks {chosen}: unknown {unknown}, not in the store {absent} "
            f"(store labels {list(label_vars)}; known {sorted(TASK_CLASSES)})"
        )
    return {t: TASK_CLASSES[t] for t in chosen}


def encoder_for_store(
    checkpoint: str | os.PathLike[str],
    bands: Sequence[str],
    units: str,
    quantity: str | None = None,
    chip_size: int | None = None,
) -> ViTEncoder:
    """Load a pretrained encoder for task data, refusing one trained on other bands or units.

    Raises :class:`~sarlab.errors.UnitsError` naming the checkpoint when its model
    card's bands (in order), units or quantity differ from the data's, and
    InputError when the chip size does not split into its patches.
    """
    try:
        encoder = load_encoder(
            checkpoint, expect_bands=list(bands), expect_units=units, expect_quantity=quantity
        )
    except UnitsError as err:
        raise UnitsError(f"cannot fine-tune on this data: {err}") from err
    if encoder.model_card is None:
        raise InputError(checkpoint, "has no model card: bands and units cannot be checked")
    if chip_size is not None and chip_size % encoder.patch_size:
        raise InputError(
            checkpoint, f"patch size {encoder.patch_size} does not divide chips of {chip_size} px"
        )
    return encoder


def build_model(
    kind: str,
    tasks: Mapping[str, int],
    in_chans: int,
    chip_size: int,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    bands: Sequence[str] | None = None,
    units: str | None = None,
    quantity: str | None = None,
    preset: str = "tiny",
    patch_size: int = 16,
    decoder: str = "progressive",
    regime: str = "full",
    last_n: int = 2,
    layers: Sequence[int] | None = None,
    encoder_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """A model of ``kind`` ssl (encoder from ``checkpoint``), random (its twin) or unet.

    The random twin copies the checkpoint's architecture when one is given, so the
    two differ only in their weights. ``layers`` picks the encoder blocks the decoder
    reads (default: four levels; ``[-1]``: the last block only, what a kNN probe sees).
    Call under a seeded RNG for reproducible init.
    """
    if kind == "unet":
        return UNet(in_chans, tasks)
    if kind not in ("ssl", "random"):
        raise ValueError(f"unknown model kind {kind!r}; expected 'ssl', 'random' or 'unet'")
    if checkpoint is not None:
        if bands is None or units is None:
            raise ValueError("bands and units of the task data are needed to check the checkpoint")
        encoder = encoder_for_store(checkpoint, bands, units, quantity, chip_size)
        if kind == "random":
            encoder = ViTEncoder(encoder.config)
    elif kind == "ssl":
        raise ValueError("kind='ssl' needs a checkpoint")
    else:
        encoder = vit_encoder(
            preset, in_chans=in_chans, patch_size=patch_size, img_size=chip_size,
            **dict(encoder_kwargs or {}),
        )  # fmt: skip
    model = SegmentationModel(encoder, tasks, decoder=decoder, layers=layers)
    return set_regime(model, regime, last_n=last_n)
